"""The hub's resource figures (grader/README.md, "Limits"): the memory of N Labs that sit idle
with notebook 2 open (its kernel started), and the seconds from pressing "Sign in" to that
kernel being idle. Run as root, by hand, not by `make bench` (it creates N accounts):

    .venv/bin/python -m bench.hub --students 30 --checkpoints 10,30 --out bench/hub_results.json

It starts the course's hub on a free port of 127.0.0.1 with its own state and exchange in a
temporary folder and logs the students in with Debian's chromium (Playwright), one after the
other; each student's browser is closed once their kernel is idle (the Lab and its kernel keep
running, as when a student closes the tab). At each checkpoint (after 10, then 30 Labs) it
lets the Labs settle and measures their memory three ways:

* ``cgroup``: each Lab's cgroup (the Lab and its kernel) as the kernel charges it — page cache
  included, and a page shared by several Labs (the venv's libraries) charged to the first;
* ``pss``: the proportional set size of every process of the students' accounts (a shared
  page split between its users): what the Labs cost the machine, without the page cache;
* ``available``: how much the machine's MemAvailable fell since the hub was up with no Lab.

The accounts, their cgroups and the folders are removed at the end, also on failure or
Ctrl-C."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from backprop_ninja.course import ASSIGNMENT, REPO_ROOT
from backprop_ninja.hub.labs import CGROUP_PARENT, memory_used

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
NB2 = "2_fused_cross_entropy"
MIB = 2**20
SETTLE_SECONDS = 20  # after the last Lab of a checkpoint started, before its memory is read


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def pids_of(uids: set[int]) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid in uids:
                found.append(int(entry.name))
        except FileNotFoundError:
            continue
    return found


def end_processes_of(name: str) -> None:
    """SIGKILL every process of the account ``name`` (one the bench created)."""
    uid = uid_of(name)
    for pid in pids_of({uid} if uid is not None else set()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue


def pss_bytes(pids: list[int]) -> int:
    """The summed proportional set size of ``pids`` (smaps_rollup's Pss, in kB)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        found = re.search(r"^Pss:\s+(\d+) kB", text, flags=re.M)
        total += int(found.group(1)) * 1024 if found else 0
    return total


def mem_available() -> int:
    found = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), flags=re.M)
    return int(found.group(1)) * 1024 if found else 0


def cgroup_bytes(name: str) -> int:
    v1 = sorted(Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{name}"))
    folders = [*v1, Path("/sys/fs/cgroup", CGROUP_PARENT, name)]  # cgroup v1's, or v2's
    return memory_used([f for f in folders if f.is_dir()]) or 0


def snapshot(names: list[str], baseline: int) -> dict:
    """The memory of the Labs of ``names``, three ways (see the module's docstring)."""
    uids = {uid for uid in map(uid_of, names) if uid is not None}
    per_lab = [cgroup_bytes(name) for name in names]
    pss = pss_bytes(pids_of(uids))
    return {
        "labs": len(names),
        "cgroup_mib_per_lab": [round(b / MIB) for b in per_lab],
        "cgroup_total_mib": round(sum(per_lab) / MIB),
        "pss_total_mib": round(pss / MIB),
        "pss_mib_per_lab": round(pss / MIB / len(names), 1),
        "available_drop_mib": round((baseline - mem_available()) / MIB),
        "load": round(os.getloadavg()[0], 2),
    }


def measure(students: int, checkpoints: list[int]) -> dict:
    from playwright.sync_api import sync_playwright

    prefix = f"bnbench{secrets.token_hex(2)}"
    names = [f"{prefix}{i}" for i in range(students)]
    root = Path(tempfile.mkdtemp(prefix="bn-hub-bench-"))
    root.chmod(0o755)
    hub = [sys.executable, "-m", "backprop_ninja.hub", "--exchange", str(root / "exchange")]
    hub += ["--class-dir", str(root / "class")]
    process = None
    try:
        (root / "roster.csv").write_text("username\n" + "\n".join(names) + "\n")
        created = subprocess.run(
            [*hub, "users", str(root / "roster.csv")], capture_output=True, text=True, check=True
        )
        passwords = dict(re.findall(rf"^({prefix}\d+),\w+,(\S+)$", created.stdout, flags=re.M))
        subprocess.run([*hub, "release"], capture_output=True, check=True, cwd=REPO_ROOT)
        port = free_port()
        process = subprocess.Popen(
            [*hub, "serve", "--port", str(port), "--state", str(root / "state")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while not up(f"{base}/hub/api"):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the hub did not start")
            time.sleep(0.5)
        time.sleep(SETTLE_SECONDS)
        baseline = mem_available()
        seconds: list[float] = []
        snapshots = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=FLAGS
            )
            for count, name in enumerate(names, start=1):
                # The student's notebooks, as after Fetch in the Assignment List.
                home = Path(pwd.getpwnam(name).pw_dir)
                shutil.copytree(root / "exchange" / ASSIGNMENT / "outbound" / ASSIGNMENT, home / ASSIGNMENT)
                subprocess.run(["chown", "-R", f"{name}:{name}", str(home / ASSIGNMENT)], check=True)
                context = browser.new_context()
                page = context.new_page()
                page.goto(f"{base}/hub/login")
                page.fill("#username_input", name)
                page.fill("#password_input", passwords[name])
                start = time.perf_counter()
                page.click("#login_submit")
                page.wait_for_url(f"**/user/{name}/lab**", timeout=300_000)
                page.get_by_text("Nbgrader", exact=True).wait_for(timeout=300_000)
                page.goto(f"{base}/user/{name}/lab/tree/{ASSIGNMENT}/{NB2}.ipynb")
                page.get_by_text("| Idle").first.wait_for(timeout=300_000)
                seconds.append(time.perf_counter() - start)
                context.close()  # the tab closed; the Lab and its kernel run on
                print(f"{count}/{students}: {seconds[-1]:.1f} s to an idle kernel", flush=True)
                if count in checkpoints:
                    time.sleep(SETTLE_SECONDS)
                    snapshots.append(snapshot(names[:count], baseline))
                    print(snapshots[-1], flush=True)
            browser.close()
        return {
            "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "-m", "bench.hub", *sys.argv[1:]]),
            "machine": {
                "cores": os.cpu_count(),
                "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            },
            "students": students,
            "login_to_idle_kernel_s": [round(s, 1) for s in seconds],
            "median_login_to_idle_kernel_s": round(statistics.median(seconds), 1),
            "max_login_to_idle_kernel_s": round(max(seconds), 1),
            "memory": snapshots,
        }
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=180)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        for name in names:
            end_processes_of(name)
            subprocess.run(["userdel", "--remove", name], capture_output=True)
            for cgroup in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{name}"):
                for _ in range(60):  # its processes were just killed: bounded wait for it to empty
                    if not (cgroup / "cgroup.procs").read_text().strip():
                        break
                    time.sleep(0.5)
                cgroup.rmdir()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    parser.add_argument(
        "--checkpoints",
        default="",
        help="measure the memory after these many Labs (e.g. 10,30); always at the end",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the bench creates accounts")
    checkpoints = sorted({int(c) for c in args.checkpoints.split(",") if c.strip()} | {args.students})
    figures = measure(args.students, [c for c in checkpoints if c <= args.students])
    text = json.dumps(figures, indent=2) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
