"""Idle Labs are stopped by jupyterhub-idle-culler (issue 27.4), observed: the course's hub on
127.0.0.1 with a 20-second idle timeout (``BACKPROP_NINJA_HUB_IDLE_TIMEOUT``, an hour in
class), one student account made by the test, who logs in through the hub's login form and
starts a Lab through the hub's REST API (no browser), then leaves it idle; the test polls,
bounded, until the Lab is gone — stopped by the culler's request, its processes ended. The
account and its cgroup are removed at the end, also on failure. Runs as root."""

from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import needs_root, processes_of, run, status, stop_like_ctrl_c, wait_for

from backprop_ninja.course import REPO_ROOT
from backprop_ninja.hub.labs import CGROUP_PARENT

pytestmark = [pytest.mark.hub, pytest.mark.pipeline]

IDLE_SECONDS = 20  # the culler sweeps every IDLE_SECONDS / 2


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # a 302 is an answer here, not a page to go to


class HubClient:
    """A person's session with the hub: its cookies and the XSRF token JupyterHub asks of
    every request that changes something."""

    def __init__(self, base: str):
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect()
        )

    def request(self, method: str, path: str, form: dict | None = None) -> tuple[int, bytes]:
        xsrf = next((c.value or "" for c in self.cookies if c.name == "_xsrf"), "")
        data = urllib.parse.urlencode({**form, "_xsrf": xsrf}).encode() if form is not None else None
        request = urllib.request.Request(
            f"{self.base}{path}", data=data, method=method, headers={"X-XSRFToken": xsrf}
        )
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def log_in(self, name: str, password: str) -> None:
        """The login form, as a browser fills it (GET sets the XSRF cookie, POST signs in)."""
        assert self.request("GET", "/hub/login")[0] == 200
        code, body = self.request("POST", "/hub/login", {"username": name, "password": password})
        assert code == 302, body[:500]

    def servers(self, name: str) -> dict:
        code, body = self.request("GET", f"/hub/api/users/{name}")
        assert code == 200, body[:500]
        return json.loads(body)["servers"]


def lab_processes(uid: int) -> list[int]:
    return [
        pid
        for pid in processes_of(uid)
        if b"jupyterhub-singleuser" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    ]


@needs_root
def test_an_idle_lab_is_stopped_by_the_idle_culler():
    name = f"bn{secrets.token_hex(3)}c"
    root = Path(tempfile.mkdtemp(prefix="bn-hub-cull-"))
    root.chmod(0o755)
    hub = [sys.executable, "-m", "backprop_ninja.hub", "--exchange", str(root / "exchange")]
    hub += ["--class-dir", str(root / "class")]
    process = None
    try:
        (root / "roster.csv").write_text(f"username,role\n{name},student\n")
        created = run(*hub, "users", str(root / "roster.csv")).stdout
        (password,) = re.findall(rf"^{name},student,(\S+)$", created, flags=re.M)
        from helpers import free_port

        port = free_port()
        log = root / "hub.log"
        with open(log, "w") as output:
            process = subprocess.Popen(
                [*hub, "serve", "--port", str(port), "--state", str(root / "state")],
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env={**os.environ, "BACKPROP_NINJA_HUB_IDLE_TIMEOUT": str(IDLE_SECONDS)},
                start_new_session=True,
            )
        base = f"http://127.0.0.1:{port}"

        def hub_is_up() -> bool:
            assert process.poll() is None, log.read_text()  # it stopped: why
            return status(f"{base}/hub/api") == 200

        wait_for(hub_is_up, 180, "the hub")
        student = HubClient(base)
        student.log_in(name, password)
        code, body = student.request("POST", f"/hub/api/users/{name}/server")
        assert code in (201, 202), body[:500]
        wait_for(lambda: student.servers(name).get("", {}).get("ready"), 180, "the Lab to start")
        uid = pwd.getpwnam(name).pw_uid
        assert lab_processes(uid), "the Lab does not run as its student"

        # Nobody uses it: within the timeout and two sweeps (and the hub's slack), it is gone.
        wait_for(lambda: student.servers(name) == {}, IDLE_SECONDS + 120, "the idle culler to stop the Lab")
        stopped_by = re.compile(rf"DELETE /hub/api/users/{name}/server\S* \(idle-culler@127\.0\.0\.1\)")
        assert stopped_by.search(log.read_text()), log.read_text()[-3000:]
        wait_for(lambda: not lab_processes(uid), 30, "the Lab's processes to end")
    finally:
        if process is not None:
            stop_like_ctrl_c(process)
        if name in {p.pw_name for p in pwd.getpwall()}:
            for pid in processes_of(pwd.getpwnam(name).pw_uid):
                os.kill(pid, signal.SIGKILL)
        run("userdel", "--remove", name, check=False)
        for cgroup in Path("/sys/fs/cgroup").glob(f"*/{CGROUP_PARENT}/{name}"):
            wait_for(
                lambda cgroup=cgroup: not (cgroup / "cgroup.procs").read_text().strip(), 30, "an empty cgroup"
            )
            cgroup.rmdir()
        shutil.rmtree(root, ignore_errors=True)
