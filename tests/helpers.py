"""Plain helpers shared by the grading tests (fixtures live in conftest.py; no test module
imports another test module)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from backprop_ninja.course import ASSIGNMENT, REPO_ROOT
from backprop_ninja.grading.classdir import Course

WORKERS = 2
# The verifier draws its fresh inputs from this seed instead of secret ones: a test must give
# the same result every time. (Real grading uses secret seeds, new on every run.)
VERIFY_SEED = 1


def make_course_root(base: Path) -> Path:
    """A course root under ``base`` with the repository's solutions and released notebooks."""
    root = base / "course"
    root.mkdir()
    for folder in ("solutions", "notebooks"):
        (root / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    return root


def make_commands(*arguments: str) -> list[str]:
    """The commands ``make ARGUMENTS`` would run in this checkout, one per line (``make -n``:
    nothing runs, but what make decides to run is what it would do)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", *arguments],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.splitlines()


def load_demo_module():
    """grader/make_demo_class.py (a script, not a package module)."""
    if "make_demo_class" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "make_demo_class", REPO_ROOT / "grader" / "make_demo_class.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_demo_class"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["make_demo_class"]


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def grade_cells(course: Course, student: str) -> dict[tuple[str, str], float]:
    """Every grade cell's score of a student, from the gradebook."""
    with course.gradebook() as gb:
        submission = gb.find_submission(ASSIGNMENT, student)
        return {(nb.name, g.name): g.score for nb in submission.notebooks for g in nb.grades}


def git_status() -> str:
    """``git status`` of the repository, untracked files listed one by one."""
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def csv_rows(text: str, students=None) -> list[dict]:
    """A CSV's rows (of ``students`` only, when given), in order."""
    rows = list(csv.DictReader(io.StringIO(text)))
    return [row for row in rows if students is None or row["student_id"] in students]


def build_wheel(source: Path, dist: Path) -> Path:
    """The course's wheel built from ``source`` (a checkout) into ``dist``, as `make wheel` does."""
    command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run([*command, "--wheel-dir", str(dist), str(source)], check=True, cwd=dist.parent)
    (built,) = dist.glob("backprop_ninja-*.whl")
    return built


def stop_like_ctrl_c(process: subprocess.Popen, *, timeout: float = 120) -> None:
    """Stop a server started in its own process group as Ctrl-C would (SIGINT, then its whole
    group killed if it has not ended within ``timeout`` seconds)."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    """A TCP port on loopback that nothing listens on (a server the test starts takes it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_json(url: str, process: subprocess.Popen, log: Path, seconds: float = 120):
    """The JSON at ``url`` once the server answers (polled, bounded), or fail with its log."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.load(response)
        except OSError:
            time.sleep(1)
    raise AssertionError(log.read_text()[-3000:])


# ------------------------------------------------------------------ the hub's tests (run as root)
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the hub runs as root: run the tests as root")


def run(*args: str, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1800)
    assert not check or done.returncode == 0, done.stdout + done.stderr
    return done


def status(url: str) -> int:
    """The HTTP status ``url`` answers with; 0 while nothing listens there yet."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def wait_for(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out: {what}"
        time.sleep(0.5)


def processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
            except FileNotFoundError:
                continue
    return found
