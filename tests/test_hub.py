"""A whole class on a real JupyterHub (make test-hub): the hub of grader/hub/ on 127.0.0.1 with
two students and an instructor made by the test as real Unix accounts (removed at the end),
driven through Debian's chromium with Playwright.

Student A submits a right answer to notebook 2, student B first a right one and then a wrong
one (the last counts), B plants a folder under A's name; the instructor collects (the planted
folder is refused, naming B), grades in the sandbox and releases feedback; both students
fetch it and see 5/5 and 0/5 with B's reason, and how late they were (the due date is in the
past). B cannot reach A's files or the instructor's.
Screenshots go to build/hub/. Runs as root (accounts, each Lab as its user)."""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from helpers import needs_root, processes_of, run, status, stop_like_ctrl_c, wait_for

from backprop_ninja.course import ASSIGNMENT, EXCHANGE_VARIABLE, REPO_ROOT

pytestmark = [pytest.mark.hub, pytest.mark.browser, pytest.mark.pipeline]

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = REPO_ROOT / "build" / "hub"
NB2 = "2_fused_cross_entropy"
LOST_LINE = "    dlogits /= n  # the loss is a mean over the n rows\n"
PYTHON = sys.executable
DUE = "2026-01-01 00:00:00 UTC"


class Phases:
    """Seconds per step of the test, printed at the end (``-s`` or ``-rP`` shows them): where
    its minutes go."""

    def __init__(self) -> None:
        self.began = self.last = time.monotonic()
        self.seconds: list[tuple[str, float]] = []

    def done(self, step: str) -> None:
        now = time.monotonic()
        self.seconds.append((step, now - self.last))
        self.last = now

    def __str__(self) -> str:
        steps = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in self.seconds)
        return f"{time.monotonic() - self.began:.0f} s: {steps}"


def answer_source(wrong: bool) -> str:
    import nbformat

    nb = nbformat.read(REPO_ROOT / "solutions" / ASSIGNMENT / f"{NB2}.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
    assert LOST_LINE in source
    return source.replace(LOST_LINE, "") if wrong else source


@pytest.fixture(scope="module")
def hub():
    """The course's hub on a free port, with its own state, exchange and class folders; the
    notebooks released into the exchange. Stopped with SIGINT (Ctrl-C) at the end, then the
    accounts are removed — also when the test failed."""
    from helpers import free_port

    assert CHROMIUM.exists(), "Debian's chromium is missing: run `make system-packages`"
    prefix = f"bn{secrets.token_hex(3)}"
    people = {"a": f"{prefix}a", "b": f"{prefix}b", "t": f"{prefix}t"}
    root = Path(tempfile.mkdtemp(prefix="bn-hub-"))
    root.chmod(0o755)  # the students reach the exchange in it
    exchange, state, classdir = root / "exchange", root / "state", root / "class"
    classdir.mkdir(mode=0o700)
    hub_process = None
    try:
        roster = root / "roster.csv"
        roster.write_text(
            "username,first_name,last_name,role\n"
            f"{people['a']},Ada,A,student\n{people['b']},Bo,B,student\n{people['t']},Tia,T,instructor\n"
        )
        hub_command = [
            PYTHON,
            "-m",
            "backprop_ninja.hub",
            "--exchange",
            str(exchange),
            "--class-dir",
            str(classdir),
        ]
        phases = Phases()
        created = run(*hub_command, "users", str(roster)).stdout
        passwords = dict(re.findall(rf"^({prefix}\w),\w+,(\S+)$", created, flags=re.M))
        assert set(passwords) == set(people.values()), created
        phases.done("accounts")
        port = free_port()
        log = open(root / "hub.log", "w")  # noqa: SIM115 (closed at teardown)
        hub_process = subprocess.Popen(
            [*hub_command, "serve", "--port", str(port), "--state", str(state)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        # While the hub starts (nothing is fetched before it is up); due before the test began,
        # so every submission is late and its feedback says by how much.
        run(*hub_command, "release", "--duedate", DUE)
        phases.done("release")
        base = f"http://127.0.0.1:{port}"

        def hub_is_up() -> bool:
            assert hub_process.poll() is None, (root / "hub.log").read_text()  # it stopped: why
            return status(f"{base}/hub/api") == 200

        wait_for(hub_is_up, 180, "the hub")
        phases.done("hub up")
        yield {
            "base": base,
            "people": people,
            "passwords": passwords,
            "exchange": exchange,
            "classdir": classdir,
            "hub": hub_command,
            "log": root / "hub.log",
            "phases": phases,
        }
    finally:
        if hub_process is not None:
            stop_like_ctrl_c(hub_process)
        left_running = []  # Ctrl-C stops every Lab: nothing of the accounts may outlive the hub
        for name in people.values():
            uid = pwd.getpwnam(name).pw_uid if name in {p.pw_name for p in pwd.getpwall()} else None
            if uid is not None:
                # A stopped Lab's kernels end a moment after the hub has (bounded: 30 s).
                deadline = time.monotonic() + 30
                while processes_of(uid) and time.monotonic() < deadline:
                    time.sleep(0.2)
                left_running += [(name, pid) for pid in processes_of(uid)]
                for pid in processes_of(uid):
                    os.kill(pid, signal.SIGKILL)
            run("userdel", "--remove", name, check=False)
            for cgroup in Path("/sys/fs/cgroup").glob(f"*/backprop_ninja_hub/{name}"):
                cgroup.rmdir()
        shutil.rmtree(root, ignore_errors=True)
        if hub_process is not None:
            assert left_running == [], f"still running after Ctrl-C: {left_running}"


class Lab:
    """One person's browser session on the hub."""

    def __init__(self, browser, hub: dict, who: str):
        """Signs in; the Lab spawns meanwhile (``ready`` waits for it): several people's Labs
        spawn at once, as in class."""
        self.name = hub["people"][who]
        self.base = hub["base"]
        self.context = browser.new_context(viewport={"width": 1400, "height": 900})
        self.page = self.context.new_page()
        self.page.goto(f"{self.base}/hub/login")
        self.page.fill("#username_input", self.name)
        self.page.fill("#password_input", hub["passwords"][self.name])
        self.page.click("#login_submit")

    def ready(self) -> Lab:
        """Wait for the Lab to be up in the browser, with its Nbgrader menu."""
        self.page.wait_for_url(f"**/user/{self.name}/lab**", timeout=300_000)
        self.page.locator(".lm-MenuBar").first.wait_for(timeout=300_000)
        self.page.get_by_text("Nbgrader", exact=True).wait_for(timeout=120_000)
        return self

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"))

    def menu(self, shot: str | None = None) -> str:
        """The Nbgrader menu's items (screenshot ``shot`` while it is open)."""
        self.page.get_by_text("Nbgrader", exact=True).click()
        menu = self.page.locator(".lm-Menu").last
        menu.wait_for()
        text = menu.inner_text()
        if shot:
            self.shot(shot)
        self.close_menu(menu)
        return text

    def close_menu(self, menu) -> None:
        """Close an open menu with Escape; the next click on "Nbgrader" opens it again. The
        key reaches the menu only if it has the focus, which a busy Lab may not have moved
        there yet: then the menu is given the focus and the key pressed again."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        for _ in range(3):
            self.page.keyboard.press("Escape")
            try:
                menu.wait_for(state="hidden", timeout=10_000)
                return
            except PlaywrightTimeout:
                menu.focus()
        raise AssertionError("the Nbgrader menu does not close on Escape")

    def assignment_list(self):
        self.page.get_by_text("Nbgrader", exact=True).click()
        menu = self.page.locator(".lm-Menu").last
        menu.wait_for()
        menu.get_by_text("Assignment List").click()
        panel = self.page.locator("#nbgrader-assignment-list")
        panel.get_by_text("Released, downloaded, and submitted assignments").wait_for(timeout=60_000)
        return panel

    def api(self, method: str, path: str, data: dict | None = None):
        xsrf = next(c["value"] for c in self.context.cookies() if c["name"] == "_xsrf")
        url = f"{self.base}/user/{self.name}/api/{path}"
        return self.context.request.fetch(url, method=method, data=data, headers={"X-XSRFToken": xsrf})

    def work_on_notebook_2(self, wrong: bool) -> None:
        """The student's answer, saved as the Lab saves it (the contents API of their server);
        the other three notebooks are deleted, so only notebook 2 is submitted and graded."""
        folder = f"contents/{ASSIGNMENT}"
        for other in ("1_atomic_backprop", "3_fused_batchnorm", "4_full_training"):
            self.api("DELETE", f"{folder}/{other}.ipynb")
        response = self.api("GET", f"{folder}/{NB2}.ipynb")
        assert response.ok, response.text()
        model = response.json()
        for cell in model["content"]["cells"]:
            if cell["metadata"].get("nbgrader", {}).get("solution"):
                cell["source"] = answer_source(wrong)
        saved = self.api("PUT", f"{folder}/{NB2}.ipynb", {"type": "notebook", "content": model["content"]})
        assert saved.ok, saved.text()

    def submit(self) -> None:
        panel = self.assignment_list()
        before = panel.locator("#submitted_assignments_list .list_item").count()
        panel.locator("#fetched_assignments_list").get_by_role("button", name="Submit").click()
        wait_for(
            lambda: panel.locator("#submitted_assignments_list .list_item").count() > before,
            120,
            "a submission",
        )

    def close(self) -> None:
        self.context.close()


@needs_root
def test_a_class_on_the_hub_from_release_to_feedback(hub):
    from playwright.sync_api import sync_playwright

    people = hub["people"]
    phases = hub["phases"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            signed_in = {who: Lab(browser, hub, who) for who in ("a", "b", "t")}  # three Labs spawn
            labs = {who: signed_in[who].ready() for who in ("a", "b")}
            phases.done("students' Labs")
            for who, lab in labs.items():
                # The student Lab: Validate and the Assignment List, none of the instructor's tools.
                assert lab.menu().split() == ["Assignment", "List"], who
                panel = lab.assignment_list()
                lab.shot(f"{who}_1_released")
                panel.locator("#released_assignments_list").get_by_role("button", name="Fetch").click()
                panel.locator("#fetched_assignments_list").get_by_text(ASSIGNMENT).first.wait_for(
                    timeout=60_000
                )
                lab.shot(f"{who}_2_fetched")

            phases.done("fetched")
            a, b = labs["a"], labs["b"]
            a.work_on_notebook_2(wrong=False)
            a.page.goto(f"{a.base}/user/{a.name}/lab/tree/{ASSIGNMENT}/{NB2}.ipynb")
            a.page.get_by_role("button", name="Validate").click()
            validated = a.page.locator(".jp-Dialog", has_text="Validation Results")
            validated.wait_for(timeout=600_000)
            assert "5/5 points — all visible tests pass" in validated.inner_text()  # as `check` says it
            a.shot("a_3_validated")
            phases.done("validated")
            a.page.keyboard.press("Escape")
            a.submit()
            a.shot("a_4_submitted")
            b.work_on_notebook_2(wrong=False)
            b.submit()
            b.work_on_notebook_2(wrong=True)
            b.submit()  # the last submission counts
            b.shot("b_4_submitted_twice")
            phases.done("submitted")

            # B cannot reach A's Lab or files, nor the instructor's, through the hub or the disk.
            assert b.page.request.get(f"{b.base}/user/{people['a']}/api/contents/{ASSIGNMENT}").status in (
                302,
                403,
                404,
            )
            for other in (people["a"], people["t"]):
                peek = run("runuser", "-u", people["b"], "--", "ls", pwd.getpwnam(other).pw_dir, check=False)
                assert peek.returncode != 0
                assert "Permission denied" in peek.stderr
            # … nor the solutions in the course's checkout (whose Python every Lab runs).
            solution = REPO_ROOT / "solutions" / ASSIGNMENT / f"{NB2}.ipynb"
            peek = run("runuser", "-u", people["b"], "--", "cat", str(solution), check=False)
            assert peek.returncode != 0
            assert "Permission denied" in peek.stderr
            inbound = hub["exchange"] / ASSIGNMENT / "inbound"
            listing = run("runuser", "-u", people["b"], "--", "ls", str(inbound), check=False)
            assert listing.returncode != 0
            assert "Permission denied" in listing.stderr
            # B plants a folder under A's name, dated later than A's submission.
            planted = inbound / f"{people['a']}+{ASSIGNMENT}+2099-01-01 00:00:00.000000 UTC"
            source = hub["exchange"] / ASSIGNMENT / "outbound" / ASSIGNMENT / f"{NB2}.ipynb"
            run("runuser", "-u", people["b"], "--", "mkdir", str(planted))
            run("runuser", "-u", people["b"], "--", "cp", str(source), str(planted))

            # The instructor: the Formgrader in the Nbgrader menu (not in the students').
            teacher = signed_in["t"].ready()
            phases.done("checks, instructor's Lab")
            assert "Formgrader" in teacher.menu(shot="t_1_instructor_lab")
            # … on the course's checkout, where the Formgrader finds the course and its gradebook.
            root_listing = {item["name"] for item in teacher.api("GET", "contents").json()["content"]}
            assert {"solutions", "notebooks", "grader"} <= root_listing, root_listing
            assert teacher.page.request.get(f"{teacher.base}/user/{teacher.name}/formgrader").status == 200
            assert a.page.request.get(f"{a.base}/user/{people['a']}/formgrader").status == 404

            # Collect, grade (sandboxed), feedback, release it: the Makefile's steps.
            grading = [PYTHON, "-m", "backprop_ninja.grading"]
            env = {**os.environ, EXCHANGE_VARIABLE: str(hub["exchange"])}
            phases.done("Formgrader")
            collected = run(*grading, "collect", "--class-dir", str(hub["classdir"]), env=env)
            assert (
                f"owned by {people['b']}, not by {people['a']} (planted by {people['b']})" in collected.stderr
            )
            phases.done("collect")
            graded = run(*grading, "autograde", "--class-dir", str(hub["classdir"]), env=env)
            print(graded.stdout)
            phases.done("autograde")
            run(*grading, "feedback", "--class-dir", str(hub["classdir"]), env=env)
            released = run(*hub["hub"], "release-feedback").stdout
            assert "released 8 feedback pages" in released, released
            phases.done("feedback")

            pages = {}
            for who, lab in labs.items():
                panel = lab.assignment_list()
                panel.get_by_role("button", name="Fetch Feedback").first.click()
                wait_for(
                    lambda lab=lab: lab.api("GET", f"contents/{ASSIGNMENT}/feedback").ok,
                    120,
                    "feedback fetched",
                )
                (stamp,) = [
                    f["name"] for f in lab.api("GET", f"contents/{ASSIGNMENT}/feedback").json()["content"]
                ]
                lab.page.goto(f"{lab.base}/user/{lab.name}/files/{ASSIGNMENT}/feedback/{stamp}/{NB2}.html")
                pages[who] = lab.page.locator("body").inner_text()
                lab.shot(f"{who}_5_feedback")
            assert f"{NB2}: 5 / 5 points" in pages["a"], pages["a"]
            assert f"{NB2}: 0 / 5 points" in pages["b"], pages["b"]
            for page in pages.values():  # submitted after the due date: by days
                assert re.search(r"Handed in \d+ d (\d+ h )?late \(after the due date\)", page), page[:500]
            reason = b.page.locator("#lost-points li").first.inner_text()
            assert "divided" in reason or " n" in reason, reason
            print("B's reason:", reason)
            phases.done("fetched feedback")
        finally:
            browser.close()
            print("test_hub's steps:", phases)


@needs_root
def test_each_lab_runs_as_its_user_in_a_cgroup_with_the_limits(hub):
    name = hub["people"]["a"]
    uid = pwd.getpwnam(name).pw_uid
    lab_pids = [
        p for p in processes_of(uid) if b"jupyterhub-singleuser" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert lab_pids, "A's Lab is not running as A"
    memberships = Path(f"/proc/{lab_pids[0]}/cgroup").read_text()
    assert f"backprop_ninja_hub/{name}" in memberships
    memory = Path(f"/sys/fs/cgroup/memory/backprop_ninja_hub/{name}/memory.limit_in_bytes")
    if memory.exists():
        assert int(memory.read_text()) == 2 * 2**30
        quota = Path(f"/sys/fs/cgroup/cpu/backprop_ninja_hub/{name}/cpu.cfs_quota_us").read_text()
        assert int(quota) == 100_000


@needs_root
def test_the_idle_culler_runs_as_a_hub_service_allowed_to_list_the_labs(hub):
    """jupyterhub-idle-culler is started by the hub and its first sweep is authorised (its
    role's scopes); that it stops an idle Lab is test_hub_culling.py's (a short timeout)."""
    sweep = re.compile(r"200 GET /hub/api/users\?\S* \(idle-culler@127\.0\.0\.1\)")
    wait_for(lambda: sweep.search(hub["log"].read_text()) is not None, 120, "the idle culler's first sweep")
