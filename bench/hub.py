"""The hub's resource figures (grader/README.md, "Limits"): memory of N Labs that sit idle
with notebook 2 open (its kernel started), and the seconds from pressing "Sign in" to that
kernel being idle. Run as root, by hand, not by `make bench` (it creates N accounts):

    .venv/bin/python -m bench.hub --students 4

It starts the course's hub on a free port of 127.0.0.1 with its own state and exchange in a
temporary folder, logs each student in with Debian's chromium (Playwright), one after the
other, and reads each Lab's memory from its cgroup (the Lab and its kernel together). The
accounts and folders are removed at the end."""

from __future__ import annotations

import argparse
import os
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


def end_processes_of(name: str) -> None:
    """SIGKILL every process of the account ``name`` (one the bench created)."""
    import pwd

    try:
        uid = pwd.getpwnam(name).pw_uid
    except KeyError:
        return
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                os.kill(int(entry.name), signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            continue


def measure(students: int) -> dict:
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
        )
        base = f"http://127.0.0.1:{port}"
        while not up(f"{base}/hub/api"):
            time.sleep(0.5)
        seconds = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=FLAGS
            )
            for name in names:
                page = browser.new_context().new_page()
                page.goto(f"{base}/hub/login")
                page.fill("#username_input", name)
                page.fill("#password_input", passwords[name])
                start = time.perf_counter()
                page.click("#login_submit")
                page.wait_for_url(f"**/user/{name}/lab**", timeout=300_000)
                page.get_by_text("Nbgrader", exact=True).wait_for(timeout=300_000)
                # The student opens notebook 2 from the released copy (as after Fetch).
                shutil.copytree(
                    root / "exchange" / ASSIGNMENT / "outbound" / ASSIGNMENT, Path("/home", name, ASSIGNMENT)
                )
                subprocess.run(["chown", "-R", f"{name}:{name}", f"/home/{name}/{ASSIGNMENT}"], check=True)
                page.goto(f"{base}/user/{name}/lab/tree/{ASSIGNMENT}/{NB2}.ipynb")
                page.get_by_text("| Idle").first.wait_for(timeout=300_000)
                seconds.append(time.perf_counter() - start)
            time.sleep(10)  # let every Lab settle after its start
            memory = [
                memory_used([Path(f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{name}")]) or 0 for name in names
            ]
            browser.close()
        return {
            "students": students,
            "login_to_idle_kernel_s": [round(s, 1) for s in seconds],
            "median_login_to_idle_kernel_s": round(statistics.median(seconds), 1),
            "lab_memory_mib": [round(m / 2**20) for m in memory],
            "total_memory_mib": round(sum(memory) / 2**20),
        }
    finally:
        if process is not None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=180)
        for name in names:
            end_processes_of(name)
            subprocess.run(["userdel", "--remove", name], capture_output=True)
            for cgroup in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{name}"):
                cgroup.rmdir()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=4)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the bench creates accounts")
    print(measure(args.students))


if __name__ == "__main__":
    main()
