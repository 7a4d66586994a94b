"""The student Lab in a real browser: Playwright driving Debian's chromium (no browser
download) through notebook 1 on 127.0.0.1 — the setup cell, a wrong answer and its ❌, the
fixed answer and its ✅, then Validate (its summary: the count of passing tests, the points,
one line per failing test). Screenshots go to build/student_lab/ for a human."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import free_port, status

from backprop_ninja.course import REPO_ROOT

pytestmark = [pytest.mark.browser, pytest.mark.notebooks]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = REPO_ROOT / "build" / "student_lab"
COMMAND = Path(sys.executable).parent / "backprop-ninja"  # the console script of this venv

WRONG = (
    "def grad_logprobs(logprobs, Yb):\n"
    "    n = logprobs.shape[0]\n"
    "    dlogprobs = torch.zeros_like(logprobs)\n"
    "    dlogprobs[torch.arange(n), Yb] = 1.0 / n\n"
    "    return dlogprobs\n"
)
RIGHT = WRONG.replace("= 1.0 / n", "= -1.0 / n")


@pytest.fixture(scope="module")
def student_lab(tmp_path_factory):
    """`backprop-ninja lab` on a fresh folder, on a free port of 127.0.0.1 with a token; its
    Jupyter config and runtime folders are the test's own."""
    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make system-packages`"
    root = tmp_path_factory.mktemp("student_lab")
    work, port, token = root / "work", free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_DATA_DIR": str(root / "data"),
    }
    log = open(root / "lab.log", "w")  # noqa: SIM115 (closed at teardown)
    command = [str(COMMAND), "lab", str(work), f"--port={port}", f"--IdentityProvider.token={token}"]
    command += ["--ServerApp.ip=127.0.0.1", "--no-browser", "--ServerApp.port_retries=0"]
    lab = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while status(f"{base}/api/status?token={token}") != 200:
        assert lab.poll() is None, (root / "lab.log").read_text()
        assert time.monotonic() < deadline, (root / "lab.log").read_text()
        time.sleep(1)
    yield {"base": base, "token": token, "work": work, "env": env, "log": root / "lab.log"}
    os.killpg(lab.pid, signal.SIGTERM)
    try:
        lab.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(lab.pid, signal.SIGKILL)
        lab.wait()
    log.close()


def test_the_lab_serves_validate_and_none_of_the_instructors_tools(student_lab):
    base, token = student_lab["base"], student_lab["token"]
    assert status(f"{base}/nbgrader_version?version=0.9.6&token={token}") == 200  # Validate's
    for instructor_only in ("formgrader", "courses", "assignments"):
        assert status(f"{base}/{instructor_only}?token={token}") == 404, instructor_only
    log = student_lab["log"].read_text()
    assert sorted(p.name for p in student_lab["work"].iterdir())[0] == "1_atomic_backprop.ipynb"
    if os.geteuid() == 0:
        assert "running as root (a container or a cloud VM?): starting JupyterLab with --allow-root" in log


def test_a_second_lab_on_the_same_folder_prints_the_running_ones_url(student_lab):
    again = subprocess.run(
        [str(COMMAND), "lab", str(student_lab["work"])],
        env=student_lab["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    running = f"{student_lab['base']}/lab/tree/?token={student_lab['token']}"
    assert again.stdout.strip().endswith(
        f"a Jupyter server already runs on {student_lab['work']}: open {running}"
    )


def test_a_student_fixes_an_answer_and_validates_in_chromium(student_lab):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    url = f"{student_lab['base']}/lab/tree/1_atomic_backprop.ipynb?token={student_lab['token']}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(url)
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=180_000)
            # Only the student's tools: Validate on the toolbar; no nbgrader menu or panels.
            assert page.get_by_role("button", name="Validate").is_visible()
            menus = page.locator(".lm-MenuBar").first.inner_text()
            assert "Nbgrader" not in menus
            assert "nbgrader" not in menus.lower()
            for instructor_only in ("Formgrader", "Course List", "Create Assignment", "Assignment List"):
                assert page.get_by_text(instructor_only, exact=True).count() == 0, instructor_only
            page.screenshot(path=str(SHOTS / "1_opened.png"))

            setup = page.locator(".jp-CodeCell", has_text="Setup: the data")
            setup.locator(".jp-InputArea-editor").click()
            page.keyboard.press("Shift+Enter")
            setup.locator(".jp-InputPrompt", has_text=re.compile(r"\[\d+\]")).wait_for(timeout=180_000)
            assert "training examples" in setup.locator(".jp-OutputArea").inner_text()

            answer = page.locator(".jp-CodeCell", has_text="def grad_logprobs")
            test = page.locator(".jp-CodeCell", has_text="Test: dlogprobs on this batch")

            def answer_and_test(code: str, mark: str) -> str:
                answer.locator(".cm-content").click()
                page.keyboard.press("Control+a")
                page.keyboard.insert_text(code)
                page.keyboard.press("Shift+Enter")
                test.locator(".jp-InputArea-editor").click()
                page.keyboard.press("Shift+Enter")
                output = test.locator(".jp-OutputArea", has_text=mark)
                output.wait_for(timeout=120_000)
                return output.inner_text()

            wrong = answer_and_test(WRONG, "❌")
            assert "dlogprobs on this notebook's batch: the sign is flipped" in wrong
            assert "Traceback" not in wrong
            page.screenshot(path=str(SHOTS / "2_wrong_answer.png"))
            right = answer_and_test(RIGHT, "✅")
            assert "✅ dlogprobs" in right
            assert "exact: True" in right
            page.screenshot(path=str(SHOTS / "3_fixed_answer.png"))

            page.get_by_role("button", name="Validate").click()
            dialog = page.locator(".jp-Dialog", has_text="Validation Results")
            dialog.wait_for(timeout=600_000)
            page.screenshot(path=str(SHOTS / "4_validate.png"))
            result = dialog.inner_text()
            # Validate runs the saved notebook: the fixed answer passes, the 25 others are to do.
            # It reads like `check`: the count and the points first, then one line per failure.
            lines = [line.strip() for line in result.splitlines() if line.strip()]
            assert lines[0] == "Validation Results"
            assert lines[1] == "1_atomic_backprop.ipynb: 1/26 points — 1/26 tests pass", lines
            failing = [line for line in lines if line.startswith("❌ ")]
            assert len(failing) == 25, lines
            assert failing[0].startswith("❌ test_dprobs (0/1): ")
            assert "grad_probs is not implemented yet" in failing[0]
            assert "dlogprobs on this notebook's batch" not in result
            # Not nbgrader's blocks of each failing test cell's source.
            assert "The following cell failed" not in result
            assert "Test: dprobs" not in result
            assert "Traceback" not in result
        finally:
            browser.close()
