"""The bubblewrap sandbox (grading/sandbox.py), attacked for real: each test runs a hostile
Python script in a real sandbox and checks, from outside, that nothing got through.

The classes of attack are those of issue 12: reading what is not the student's (solutions,
the gradebook, a classmate, the grader's $TMPDIR and environment), writing outside the
staging folder by any route, outliving the sandbox, reaching other processes over the
network or a socket, and exhausting memory, processes, disk or output.

Every attack runs against both ways of building the sandbox (``way``): a bubblewrap process,
and a child of the sandbox fork server that confines itself (forkserver/confine.py).
"""

from __future__ import annotations

import ctypes
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from backprop_ninja.course import (
    REPO_ROOT,
    SANDBOX_CGROUPS_VARIABLE,
    SANDBOX_ENVIRONMENT,
    SANDBOX_FORKSERVER_VARIABLE,
)
from backprop_ninja.sandbox import build as sandbox
from backprop_ninja.sandbox import cgroups, quota
from backprop_ninja.sandbox.enforced import limits_in_force

pytestmark = pytest.mark.sandbox

SECRET = "postgresql://grader:s3cret-password@db.example.org/gradebook"


@pytest.fixture(scope="module")
def fork_server():
    """A sandbox fork server, started as the pipeline starts it — while the grader's
    environment holds a secret, which its children must never see."""
    from backprop_ninja.grading.classdir import SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD

    env = {**os.environ, "BACKPROP_NINJA_DB_URL": SECRET}
    server = sandbox.start_fork_server(SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, env)
    assert server is not None, "the sandbox fork server did not start, or its children cannot confine"
    yield server
    server.stop()


@pytest.fixture(params=["bwrap", "forked"])
def way(request, monkeypatch) -> str:
    """How sandboxes are built in this test: by bubblewrap, or forked from the fork server."""
    if request.param == "forked":
        monkeypatch.setenv(SANDBOX_FORKSERVER_VARIABLE, str(request.getfixturevalue("fork_server").path))
    else:
        monkeypatch.delenv(SANDBOX_FORKSERVER_VARIABLE, raising=False)
    return request.param


def run(script: str, *, staging: Path, limits=sandbox.DEFAULT_LIMITS, env=None, timeout=120):
    """Run ``script`` with the venv's Python in a sandbox whose only writable folder is
    ``staging``, built the test's ``way``; returns the finished process (stdout, stderr as text)."""
    with (
        open(staging / "stdout.txt", "w+b") as out,
        open(staging / "stderr.txt", "w+b") as err,
    ):
        process = sandbox.SandboxedProcess(
            [sys.executable, "-c", textwrap.dedent(script)],
            writable=[staging],
            cwd=str(staging),
            env=env,
            limits=limits,
            stdout=out,
            stderr=err,
        )
        assert process.forked == bool(os.environ.get(SANDBOX_FORKSERVER_VARIABLE))
        try:
            process.wait(timeout=timeout)
        finally:
            process.close()
        out.seek(0)
        err.seek(0)
        process.out, process.err = out.read().decode(), err.read().decode()  # type: ignore[attr-defined]
    return process


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]


def as_nobody(*command: str, **options) -> subprocess.CompletedProcess[str]:
    """``command`` run as the throwaway unprivileged user 65534 (no groups), output captured."""
    return subprocess.run([*AS_NOBODY, *command], capture_output=True, text=True, **options)


@pytest.fixture
def others_may_enter() -> None:
    """The way to this checkout's venv and package open to other users (o+x on each folder
    above them that is closed), as `make hub` opens it: a clone in ``mktemp -d`` (0700) is
    otherwise out of an unprivileged instructor's reach. Left open, as `make hub` leaves it
    (a hub test on another worker may be running the venv's Python as its students)."""
    from backprop_ninja.hub.__main__ import open_the_way

    open_the_way(Path(sys.executable))
    open_the_way(REPO_ROOT / "src" / "backprop_ninja" / "__init__.py")


@pytest.fixture
def staging(tmp_path: Path, way: str) -> Path:
    folder = tmp_path / "staging"
    folder.mkdir()
    return folder


def test_the_sandbox_works_on_this_machine():
    assert sandbox.problem() is None


def test_without_bwrap_the_error_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no bwrap on it
    sandbox.problem.cache_clear()
    try:
        message = sandbox.unavailable_message()
    finally:
        sandbox.problem.cache_clear()
    assert message is not None
    assert "bubblewrap (bwrap) is not installed" in message
    assert "apt-get install bubblewrap" in message
    assert "--no-sandbox" in message
    assert "macOS" in message


def test_nothing_of_the_grader_can_be_read(staging, tmp_path, monkeypatch):
    gradebook = tmp_path / "grader" / "gradebook.db"
    classmate = tmp_path / "submitted" / "bob" / "1_atomic_backprop.ipynb"
    for path in (gradebook, classmate):
        path.parent.mkdir(parents=True)
        path.write_text("private")
    grader_tmp = Path(tempfile.mkdtemp(prefix="grader-private-"))
    (grader_tmp / "kernel-1234.json").write_text('{"key": "hmac"}')
    solution = next((REPO_ROOT / "solutions").rglob("*.ipynb"))
    targets = [str(p) for p in (gradebook, classmate, grader_tmp / "kernel-1234.json", solution)]
    targets += ["/etc/shadow", str(REPO_ROOT / "grader" / "nbgrader_config.py")]
    monkeypatch.setenv("BACKPROP_NINJA_DB_URL", SECRET)
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_secret_token")
    process = run(
        f"""
        import json, os
        readable = []
        for path in {targets!r}:
            try:
                open(path, "rb").read()
                readable.append(path)
            except OSError:
                pass
        images = []  # the environment each process image started with, PID 1's too
        for path in ("/proc/self/environ", "/proc/1/environ"):
            try:
                images.append(open(path, "rb").read().decode(errors="replace"))
            except OSError:
                pass
        print(json.dumps({{"readable": readable, "environment": dict(os.environ), "images": images}}))
        """,
        staging=staging,
    )
    report = json.loads(process.out)
    assert report["readable"] == []
    assert report["images"]  # read: and they hold no secret either
    assert SECRET not in process.out
    assert "ghp_secret_token" not in process.out
    assert "BACKPROP_NINJA_DB_URL" not in report["environment"]
    assert solution.read_text()  # the files are there: it is the sandbox that hides them


def test_writes_outside_the_staging_folder_fail_by_every_route(staging, tmp_path):
    outside = tmp_path / "gradebook.db"
    outside.write_text("original")
    before = sorted(p.name for p in tmp_path.iterdir())
    process = run(
        f"""
        import codecs, io, os, pathlib, shutil
        import numpy, torch
        target = {str(outside)!r}
        routes = {{
            "open": lambda: open(target, "w").write("x"),
            "io.open": lambda: io.open(target, "w").write("x"),
            "Path.open": lambda: pathlib.Path(target).open("w").write("x"),
            "Path.write_text": lambda: pathlib.Path(target).write_text("x"),
            "codecs.open": lambda: codecs.open(target, "w").write("x"),
            "torch.save": lambda: torch.save(torch.zeros(1), target),
            "numpy.savetxt": lambda: numpy.savetxt(target, numpy.zeros(1)),
            "os.open": lambda: os.write(os.open(target, os.O_WRONLY | os.O_TRUNC), b"x"),
            "Path.rename": lambda: (pathlib.Path("mine.txt").write_text("x"),
                                    pathlib.Path("mine.txt").rename(target)),
            "shutil.copy": lambda: shutil.copy("mine.txt", target),
            "new file beside it": lambda: open(target + ".new", "w").write("x"),
            "os.remove": lambda: os.remove(target),
        }}
        for name, route in routes.items():
            try:
                route()
                print("WROTE via", name)
            except Exception:
                pass
        open("allowed.txt", "w").write("fine")
        print("allowed:", open("allowed.txt").read())
        """,
        staging=staging,
    )
    # Inside, a route may "succeed" into the sandbox's own tmpfs (the parents of the staging
    # folder are made there); what matters is that the real file and folder are untouched.
    assert outside.read_text() == "original", process.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert "allowed: fine" in process.out  # the staging folder itself is writable


def test_no_process_outlives_its_sandbox(staging):
    marker = f"outlives-{os.getpid()}-{time.monotonic_ns()}"  # in every process's command line
    process = run(
        f"""
        # {marker}
        import os, time
        if os.fork() == 0:
            os.setsid()  # a new session, and a second fork: the classic daemon escape
            if os.fork() == 0:
                while True:
                    with open("heartbeat", "a") as f:
                        f.write(".")
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.5)
        print(os.path.getsize("heartbeat"))
        """,
        staging=staging,
    )
    assert process.returncode == 0
    assert int(process.out) > 0
    assert _gone(marker)  # and nothing runs once the sandbox is closed
    assert not any(folder.exists() for folder in process.cgroup.folders)


def _gone(marker: str, bound: float = 10.0) -> bool:
    """Whether no process has ``marker`` in its command line (polled: a killed process takes
    a moment to disappear)."""
    deadline = time.monotonic() + bound
    while subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _age(folders) -> None:
    """Make cgroup folders look older than a stale cgroup (kernfs keeps the times set)."""
    long_ago = time.time() - 2 * cgroups.STALE_CGROUP_SECONDS
    for folder in folders:
        os.utime(folder, (long_ago, long_ago))


def test_an_empty_cgroup_left_behind_is_removed_later_and_a_busy_one_never():
    left = cgroups.Cgroup()  # made and never removed: what a job killed outright leaves
    busy = cgroups.Cgroup()
    sleeper = subprocess.Popen(busy.wrap(["sleep", "60"]))
    try:
        assert left.usable
        assert busy.usable
        for _ in range(100):  # the shell joins the cgroup, then becomes sleep
            if all((folder / "cgroup.procs").read_text().strip() for folder in busy.folders):
                break
            time.sleep(0.05)
        cgroups.remove_stale_cgroups()  # both younger than a minute: a sandbox may be joining
        assert all(folder.exists() for folder in [*left.folders, *busy.folders])
        # Both made long ago (their own clocks turned back, not the grader's: a sandbox of
        # another grading run on this machine, just made and not yet joined, stays young).
        _age([*left.folders, *busy.folders])
        removed = cgroups.remove_stale_cgroups()
        assert removed >= len(left.folders)
        assert not any(folder.exists() for folder in left.folders)
        assert all(folder.exists() for folder in busy.folders)
        assert sleeper.poll() is None
    finally:
        busy.remove()
        sleeper.wait()
    assert not any(folder.exists() for folder in busy.folders)


def test_no_network_and_no_foreign_socket(staging, tmp_path, fork_server):
    server_socket = str(fork_server.path)  # the sandbox fork server's: not for its children
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    unix_path = tmp_path / "forkserver.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    unix.listen()
    try:
        process = run(
            f"""
            import socket
            for family, address in [(socket.AF_INET, ("127.0.0.1", {port})),
                                    (socket.AF_UNIX, {str(unix_path)!r}),
                                    (socket.AF_UNIX, {server_socket!r})]:
                try:
                    socket.socket(family).connect(address)
                    print("CONNECTED to", address)
                except OSError:
                    pass
            """,
            staging=staging,
        )
    finally:
        server.close()
        unix.close()
    assert process.returncode == 0, process.out
    assert "CONNECTED" not in process.out, process.out


def test_the_sandbox_fork_server_starts_nothing_unconfined(fork_server, tmp_path):
    """The server runs outside every sandbox, as the grader: a request without a sandbox spec
    (whoever could reach its socket) is refused, not run with the grader's permissions."""
    from backprop_ninja import forkserver

    marker = tmp_path / "ran-unconfined"
    request = {
        "op": "spawn",
        "module": "-c",
        "args": [f"open({str(marker)!r}, 'w').close()"],
        "cwd": str(tmp_path),
        "env": {},
    }
    with open(os.devnull, "rb") as null, pytest.raises(OSError, match="confined children only"):
        forkserver.send_request(str(fork_server.path), request, [null.fileno()] * 3)
    # The server forks before it answers: a child, had one been made, would be its child now.
    pid = fork_server.process.pid
    assert Path(f"/proc/{pid}/task/{pid}/children").read_text().split() == []
    assert not marker.exists()


def test_a_memory_bomb_is_killed_and_costs_only_itself(staging):
    limits = sandbox.Limits(memory_bytes=512 * 2**20)
    process = run(
        """
        chunks = []
        while True:
            chunks.append(bytearray(64 * 2**20))
            print(len(chunks) * 64, "MiB", flush=True)
        """,
        staging=staging,
        limits=limits,
    )
    assert process.returncode != 0
    reached = [int(line.split()[0]) for line in process.out.split("\n") if line.endswith("MiB")]
    assert reached
    assert max(reached) <= 512


def test_a_fork_bomb_is_contained(staging):
    limits = sandbox.Limits(processes=32)
    process = run(
        """
        import os, time
        children = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(30)
                    os._exit(0)
                children += 1
        except OSError:
            print("stopped after", children)
        """,
        staging=staging,
        limits=limits,
    )
    assert "stopped after" in process.out
    assert int(process.out.split()[-1]) < 32


def test_disk_and_file_size_are_capped(staging):
    limits = sandbox.Limits(file_bytes=2 * 2**20, tmp_bytes=8 * 2**20)
    process = run(
        """
        import os
        def fill(path):
            written = 0
            try:
                with open(path, "wb") as f:
                    while written < 2**30:
                        f.write(b"x" * 2**20)
                        f.flush()
                        written += 2**20
            except OSError:
                pass
            return written
        in_tmp = sum(fill(f"/tmp/fill-{i}") for i in range(8))
        print(in_tmp, fill("big.bin"))
        """,
        staging=staging,
        limits=limits,
    )
    in_tmp, in_staging = (int(word) for word in process.out.split())
    assert in_tmp <= 8 * 2**20
    assert 0 < in_staging <= 2 * 2**20


def test_two_gib_written_fail_within_the_caps_and_leave_nothing(staging, tmp_path):
    """Issue 26.3: every folder a sandbox may write is capped in total, the host folder it
    shares with the grader included (a size-capped tmpfs for the sandbox's life when the
    grader is root); what it wrote there is gone once it is closed."""
    if not quota.in_force():
        pytest.skip("only a grader running as root caps its sandboxes' host folders")
    limits = sandbox.Limits(file_bytes=32 * 2**20, tmp_bytes=16 * 2**20, folder_bytes=16 * 2**20)
    (staging / "inputs.json").write_text("from the grader")  # what the folder held is kept
    process = run(
        """
        import os
        def fill(folder):
            written = 0
            for i in range(64):  # 64 files of 32 MiB: 2 GiB
                try:
                    with open(os.path.join(folder, f"fill-{i}"), "wb") as f:
                        while True:
                            f.write(b"x" * 2**20)
                            f.flush()
                            written += 2**20
                except OSError:
                    if written >= 2**31:
                        break
            return written
        print(open("inputs.json").read())
        print(*(fill(folder) for folder in (".", "/tmp", os.environ["HOME"], "/dev/shm")))
        """,
        staging=staging,
        limits=limits,
        timeout=300,
    )
    lines = process.out.splitlines()
    assert lines[0] == "from the grader", process.out + process.err
    in_staging, in_tmp, in_home, in_shm = (int(word) for word in lines[1].split())
    assert in_staging <= 16 * 2**20
    assert in_tmp <= 16 * 2**20
    assert in_home <= 16 * 2**20
    assert in_shm <= 16 * 2**20
    assert not any(staging.iterdir())  # the host folder holds nothing of the sandbox's
    assert str(staging) not in Path("/proc/self/mountinfo").read_text()  # its tmpfs is gone


def test_the_environment_is_an_allowlist(staging, monkeypatch):
    monkeypatch.setenv("BACKPROP_NINJA_STEPS", "100")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "abc")
    process = run("import os, json; print(json.dumps(sorted(os.environ)))", staging=staging)
    names = set(json.loads(process.out))
    assert "BACKPROP_NINJA_STEPS" in names
    assert "AWS_SECRET_ACCESS_KEY" not in names
    assert names <= {*sandbox.sandbox_environment({}), *SANDBOX_ENVIRONMENT, "PWD"}


def test_the_sandbox_cannot_be_undone_from_inside(staging, tmp_path):
    """No capability is left to unmount the private folders that hide the machine, and a new
    user namespace (which a student may make) gets them only as locked mounts."""
    (tmp_path / "grader-secret.txt").write_text("hidden")
    process = run(
        f"""
        import ctypes, os, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        status = dict(line.split(":", 1) for line in open("/proc/self/status"))
        print("capabilities", status["CapEff"].strip(), status["CapBnd"].strip())
        for target in ("/tmp", "/home/student", "/proc", "/"):
            if libc.umount2(target.encode(), 2) == 0:
                print("UNMOUNTED", target)
        if libc.mount(b"none", b"/usr", b"tmpfs", 0, None) == 0:
            print("MOUNTED over /usr")
        nested = subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
             "umount -l /tmp; umount -l /; ls {tmp_path}"],
            capture_output=True, text=True,
        )
        print("nested:", nested.stdout)
        """,
        staging=staging,
    )
    assert "capabilities 0000000000000000 0000000000000000" in process.out, process.out + process.err
    assert "UNMOUNTED" not in process.out
    assert "MOUNTED" not in process.out
    assert "grader-secret.txt" not in process.out


def test_no_descriptor_of_the_grader_reaches_the_sandbox(staging, tmp_path):
    """Only stdin, stdout and stderr are open: an inherited descriptor of a host folder (or the
    fork server's own) would lead out of the sandbox, whatever its mounts hide."""
    with open(tmp_path / "grader-file.txt", "w") as held:  # open in the grader as it starts the sandbox
        held.write("hidden")
        held.flush()
        process = run(
            """
            import os
            found = {}
            for name in os.listdir("/proc/self/fd"):
                try:
                    found[int(name)] = os.readlink(f"/proc/self/fd/{name}")
                except FileNotFoundError:  # the one listdir opened, closed since
                    pass
            print(sorted(found), found)
            """,
            staging=staging,
        )
    assert process.out.startswith("[0, 1, 2] "), process.out + process.err
    assert "grader-file" not in process.out


def test_every_mount_is_nosuid_and_the_machine_is_read_only(staging):
    """What the sandbox sees of the machine (system, Python, venv, package, data) is read-only;
    no mount honours set-uid bits, and only the staging folder is writable on the host."""
    process = run(
        """
        for line in open("/proc/self/mountinfo"):
            fields = line.split()
            print(fields[4], fields[5], fields[fields.index("-") + 1])
        """,
        staging=staging,
    )
    mounts = [line.split() for line in process.out.splitlines()]
    assert mounts, process.out + process.err
    assert mounts[0][:2] == ["/", "ro,nosuid,nodev,relatime"], process.out + process.err
    for point, options, fstype in mounts:
        assert "nosuid" in options.split(","), (point, options)
        if fstype not in ("tmpfs", "proc", "devtmpfs", "devpts") and point != str(staging):
            assert options.startswith("ro,"), (point, options)  # a folder of the host's
    assert [point for point, options, _ in mounts if point == str(staging) and options.startswith("rw,")]


def test_the_sandbox_ends_when_the_process_that_started_it_is_killed(staging, tmp_path):
    """A grading job killed outright (SIGKILL: no cleanup runs) takes its sandboxes along."""
    heartbeat = staging / "heartbeat"
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from pathlib import Path
                from backprop_ninja.sandbox import build as sandbox
                from backprop_ninja.sandbox import cgroups, quota
                beat = "import time\\nwhile True:\\n    open({str(heartbeat)!r}, 'a').write('.')\\n    time.sleep(0.05)"
                process = sandbox.SandboxedProcess([sys.executable, "-c", beat], writable=[Path({str(staging)!r})])
                print(process.forked, flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert starter.stdout is not None
    forked = starter.stdout.readline().strip()
    assert forked == str(bool(os.environ.get(SANDBOX_FORKSERVER_VARIABLE)))
    for _ in range(200):  # until the sandbox has started beating
        if heartbeat.exists() and heartbeat.stat().st_size:
            break
        time.sleep(0.05)
    starter.kill()
    starter.wait()
    assert heartbeat.stat().st_size > 0
    assert _gone(str(heartbeat))  # nothing beats once its starter is gone
    cgroups.remove_stale_cgroups()  # its cgroup only once a minute old; its capped folder at once
    assert str(staging) not in Path("/proc/self/mountinfo").read_text()


def test_a_sandboxed_kernel_talks_over_private_unix_sockets(monkeypatch, way):
    """A grading kernel: ipc transport, its connection file in its own folder (not $TMPDIR),
    interrupted by a message, and everything it started gone after shutdown."""
    import nbformat
    from nbclient import NotebookClient

    from backprop_ninja.grading.kernels import ForkedKernelManager

    monkeypatch.setenv(sandbox.SANDBOX_VARIABLE, "1")
    marker = f"sandbox-test-{os.getpid()}"
    cells = [
        "import json, os\nprint(json.dumps({'uid': os.getuid(), 'tmp': os.listdir('/tmp')}))",
        "import time\nwhile True: time.sleep(0.1)",  # interrupted by the cell timeout
        f"import subprocess\nsubprocess.Popen(['sh', '-c', 'sleep 600; :', '{marker}'], start_new_session=True)",
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    client = NotebookClient(
        notebook,
        kernel_manager_class=ForkedKernelManager,
        timeout=5,
        interrupt_on_timeout=True,
        allow_errors=True,
        shutdown_kernel="immediate",
    )
    classmate = Path(tempfile.mkdtemp(prefix="kernel-"))  # another kernel's folder, say
    (classmate / "kernel.json").write_text('{"key": "its hmac key"}')
    client.execute()
    first = json.loads(notebook.cells[0].outputs[0]["text"])
    assert first["uid"] == sandbox.SANDBOX_UID
    own = [name for name in first["tmp"] if name.startswith("kernel-")]
    assert classmate.name not in first["tmp"]
    assert len(own) == 1
    assert notebook.cells[1].outputs[-1].get("ename") == "KeyboardInterrupt"
    assert _gone(marker)  # the detached process died with its kernel's sandbox


KERNEL_FROM_A_COPY = """
import json, os, sys
import nbformat
from nbclient import NotebookClient
from backprop_ninja.course import SANDBOX_FORKSERVER_VARIABLE, SANDBOX_VARIABLE
from backprop_ninja.grading.classdir import SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD
from backprop_ninja.grading.kernels import ForkedKernelManager
from backprop_ninja.sandbox import build as sandbox

os.environ[SANDBOX_VARIABLE] = "1"
server = None
if sys.argv[1] == "forked":
    server = sandbox.start_fork_server(SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, os.environ)
    assert server is not None, "the sandbox fork server's trial failed"
    os.environ[SANDBOX_FORKSERVER_VARIABLE] = str(server.path)
else:
    sandbox.problem.cache_clear()
    assert sandbox.problem() is None, sandbox.problem()
code = "import json, sys, backprop_ninja.testing\\nprint(json.dumps([sys.executable, backprop_ninja.testing.__file__]))"
notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
NotebookClient(notebook, kernel_manager_class=ForkedKernelManager, timeout=120).execute()
print(notebook.cells[0].outputs[0]["text"])
if server is not None:
    server.stop()
"""


@pytest.mark.parametrize("where", ["course", "a course copy"])
def test_a_sandboxed_kernel_runs_from_a_course_under_tmp(tmp_path, way, where):
    """Issue 25: a course cloned under /tmp (the sandbox's private /tmp must not hide it), also
    under a path with a space. The copy has its own package and data; its venv is the
    checkout's under the copy's path (a link), as a clone's own venv would be."""
    copy = tmp_path / where
    shutil.copytree(REPO_ROOT / "src", copy / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO_ROOT / "data", copy / "data", ignore=shutil.ignore_patterns(".cache"))
    (copy / ".venv").symlink_to(Path(sys.prefix).resolve())
    python = copy / ".venv" / "bin" / "python"
    env = {key: value for key, value in os.environ.items() if key != SANDBOX_FORKSERVER_VARIABLE}
    env["PYTHONPATH"] = str(copy / "src")
    result = subprocess.run(
        [str(python), "-c", KERNEL_FROM_A_COPY, way], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    executable, module = json.loads(result.stdout.strip().splitlines()[-1])
    assert executable == str(python)
    assert module == str(copy / "src" / "backprop_ninja" / "testing.py")


DOORS = """
import ctypes, errno, json, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
buffer = (ctypes.c_char * 256)()
outcome = {}
def call(name, number, *args):
    result = libc.syscall(number, *args)
    outcome[name] = "succeeded" if result >= 0 else errno.errorcode[ctypes.get_errno()]
call("unshare(CLONE_NEWUSER)", 272, 0x10000000)
call("unshare(CLONE_NEWNS)", 272, 0x00020000)
call("unshare(CLONE_NEWCGROUP)", 272, 0x02000000)
call("clone(CLONE_NEWUSER)", 56, 0x10000000 | 17, 0, 0, 0, 0)
call("setns", 308, 0, 0)
call("mount cgroup2", 165, b"cgroup2", b"/tmp", b"cgroup2", 0, None)
call("mount pids", 165, b"cgroup", b"/tmp", b"cgroup", 0, b"pids")
call("mount tmpfs", 165, b"none", b"/tmp", b"tmpfs", 0, None)
call("umount2", 166, b"/tmp", 2)
call("pivot_root", 155, b"/tmp", b"/tmp")
call("ptrace(PTRACE_ATTACH, 1)", 101, 16, 1, 0, 0)
call("ptrace(PTRACE_TRACEME)", 101, 0, 0, 0, 0)
call("keyctl", 250, 0, ctypes.c_int(-3), 1)
call("add_key", 248, b"user", b"left-for-a-classmate", b"x", 1, ctypes.c_int(-4))
call("request_key", 249, b"user", b"grader", None, ctypes.c_int(-4))
call("io_uring_setup", 425, 4, buffer)
call("perf_event_open", 298, buffer, 0, -1, -1, 0)
call("bpf", 321, 0, buffer, 0)
call("userfaultfd", 323, 0)
call("kexec_load", 246, 0, 0, 0, 0)
call("finit_module", 313, 0, b"", 0)
call("personality(ADDR_NO_RANDOMIZE)", 135, 0x0040000)
call("personality(READ_IMPLIES_EXEC)", 135, 0x0400000)
allowed = {}
call("clone3", 435, buffer, 64)  # ENOSYS: the C library falls back to clone, which is checked
thread = threading.Thread(target=lambda: allowed.update(thread=True))
thread.start(); thread.join()
allowed["fork"] = subprocess.run(["true"]).returncode == 0
nested = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
outcome["unshare --user (command)"] = "succeeded" if nested.returncode == 0 else "failed"
print(json.dumps({"outcome": outcome, "allowed": allowed}))
"""


def test_no_new_door_opens(staging):
    """Issue 26.2: nested user namespaces, new namespaces of any kind, mounting (a cgroup
    file system included: no cgroup file is reachable), ptrace, the keyring, io_uring and the
    rest of the seccomp filter's list all fail, while threads and processes still start."""
    assert platform.machine() == "x86_64", "the system call numbers below are x86_64's"
    process = run(DOORS, staging=staging)
    report = json.loads(process.out)
    denied = {name: why for name, why in report["outcome"].items() if name != "clone3"}
    assert set(denied.values()) <= {"EPERM", "failed"}, denied
    assert report["outcome"]["clone3"] == "ENOSYS"
    assert report["allowed"] == {"thread": True, "fork": True}


def test_proc_sys_and_the_kernels_secrets_in_proc_are_out_of_reach(staging):
    """Issue 26.2: no /proc/sys entry is writable (not even those of the sandbox's own
    namespaces), nor /proc/sysrq-trigger; the keys, timers and memory of the kernel are hidden."""
    process = run(
        """
        import json, os
        sysctls = ["kernel/hostname", "kernel/shmmax", "fs/mqueue/msg_max", "net/ipv4/ip_forward",
                   "user/max_user_namespaces", "kernel/ns_last_pid", "vm/drop_caches"]
        written, readable = [], []
        for name in sysctls:
            try:
                path = "/proc/sys/" + name
                value = open(path).read() if name != "vm/drop_caches" else "0"
                with open(path, "w") as f:
                    f.write(value)
                written.append(name)
            except OSError:
                pass
        for name in ("keys", "key-users", "timer_list", "sched_debug", "kcore"):
            try:
                if open("/proc/" + name, "rb").read(1):
                    readable.append(name)
            except OSError:
                pass
        writable = [p for p in ("/proc/sysrq-trigger", "/proc/sys/kernel/hostname") if os.access(p, os.W_OK)]
        print(json.dumps([written, readable, writable]))
        """,
        staging=staging,
    )
    assert json.loads(process.out) == [[], [], []], process.out + process.err


def _add_key(description: str, payload: bytes, keyring: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    key = libc.syscall(248, b"user", description.encode(), payload, len(payload), ctypes.c_int(keyring))
    assert key > 0, os.strerror(ctypes.get_errno())
    return key


def test_no_key_of_the_grader_is_in_reach(staging):
    """Issue 26.2: a key in the grader's user and session keyrings (which every process of
    its uid shares) is neither listed nor read, and a sandbox cannot leave a key behind."""
    description = f"bpn-grader-key-{os.getpid()}"
    keys = [_add_key(description, b"s3cret-payload", keyring) for keyring in (-4, -3)]  # user, session
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        process = run(
            f"""
            import ctypes, errno
            libc = ctypes.CDLL(None, use_errno=True)
            try:
                print(open("/proc/keys").read())
            except OSError as error:
                print("keys:", error.strerror)
            buffer = ctypes.create_string_buffer(256)
            for key in {keys!r}:
                if libc.syscall(250, 11, key, buffer, 256) >= 0:  # KEYCTL_READ
                    print("READ", buffer.raw)
            if libc.syscall(248, b"user", b"left-behind", b"x", 1, ctypes.c_int(-4)) >= 0:
                print("ADDED a key")
            """,
            staging=staging,
        )
    finally:
        for key in keys:
            libc.syscall(250, 3, key)  # KEYCTL_REVOKE
    assert process.returncode == 0, process.err
    assert description not in process.out
    assert "s3cret" not in process.out
    assert "ADDED" not in process.out
    found = libc.syscall(250, 10, ctypes.c_int(-4), b"user", b"left-behind", 0)  # KEYCTL_SEARCH
    assert found < 0


def test_the_process_that_watches_a_sandbox_keeps_no_capability(staging):
    """Issue 26.6: what stays outside the sandbox's PID namespace to watch it (bubblewrap's
    monitor, or the forked path's supervisor) has no capability and the seccomp filter."""
    ready = staging / "ready"
    with open(os.devnull, "wb") as null:
        process = _sandbox_that_makes(ready, staging, null)
        try:
            assert ready.exists()
            watchers = _descendants(process.pid) if not process.forked else [process.pid]
            assert watchers
            for pid in watchers:
                status = dict(
                    line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                )
                if process.forked or "bwrap" in Path(f"/proc/{pid}/comm").read_text():
                    assert int(status["CapEff"], 16) == 0, (pid, status)
                    assert int(status["CapPrm"], 16) == 0, (pid, status)
            if process.forked:
                own = Path(f"/proc/{process.pid}/status").read_text()
                assert "NoNewPrivs:\t1" in own
                assert "Seccomp:\t2" in own
        finally:
            process.close()


def _sandbox_that_makes(path: Path, staging: Path, output) -> sandbox.SandboxedProcess:
    """A sandbox whose process makes the file ``path`` and then waits: returned once the file is
    there (or the process ended), still running, for the test to look at from outside."""
    code = f"import time\nopen({str(path)!r}, 'w').close()\ntime.sleep(600)"
    process = sandbox.SandboxedProcess(
        [sys.executable, "-c", code], writable=[staging], cwd=str(staging), stdout=output, stderr=output
    )
    for _ in range(600):
        if path.exists() or process.poll() is not None:
            break
        time.sleep(0.1)
    return process


def _descendants(pid: int) -> list[int]:
    """``pid`` and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(current := todo.pop())
        todo += children.get(current, [])
    return found


def test_a_nested_cgroup_with_a_process_in_it_is_removed_with_its_sandbox(staging):
    """Issue 26.3: had a sandbox made a cgroup inside its own (the seccomp filter and the
    read-only, unmounted cgroup file system forbid it) and moved a process there, closing the
    sandbox still ends that process and removes both cgroups."""
    with open(os.devnull, "wb") as null:
        process = sandbox.SandboxedProcess(
            [sys.executable, "-c", "import time\ntime.sleep(600)"],
            writable=[staging],
            cwd=str(staging),
            stdout=null,
            stderr=null,
        )
    planted = []
    hidden = subprocess.Popen(["sleep", "600"])  # planted as the sandbox's (from outside)
    try:
        assert process.cgroup.usable
        for folder in process.cgroup.folders:
            nested = folder / "planted" / "deeper"
            nested.mkdir(parents=True)
            (nested / "cgroup.procs").write_text(str(hidden.pid))
            planted.append(nested)
        process.close()
        assert hidden.wait(timeout=30) == -9
        assert not any(folder.exists() for folder in [*planted, *process.cgroup.folders])
    finally:
        hidden.kill()
        hidden.wait()
        process.close()


FORK_BOMB = """
import os, sys, time
children = 0
try:
    while children < 400:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError:
    pass
print("stopped after", children, flush=True)
"""
AS_AN_INSTRUCTOR = """
import json, os, sys, tempfile, textwrap
from pathlib import Path
from backprop_ninja.grading.classdir import SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD
from backprop_ninja.sandbox import build as sandbox

way, script = sys.argv[1], sys.argv[2]
server = None
if way == "forked":
    server = sandbox.start_fork_server(SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, os.environ)
    assert server is not None, "the sandbox fork server did not start for an unprivileged user"
staging = Path(tempfile.mkdtemp())
with open(staging / "out", "w+b") as out, open(staging / "err", "w+b") as err:
    process = sandbox.SandboxedProcess(
        [sys.executable, "-c", script], writable=[staging], cwd=str(staging), stdout=out, stderr=err,
        fork_server=str(server.path) if server else None, limits=sandbox.Limits(processes=32),
    )
    process.wait(timeout=120)
    process.close()
    out.seek(0), err.seek(0)
    print(json.dumps({"forked": process.forked, "cgroup": process.cgroup.usable,
                      "out": out.read().decode(), "err": err.read().decode()[-2000:]}))
if server is not None:
    server.stop()
"""


@pytest.mark.usefixtures("others_may_enter")
def test_an_unprivileged_instructor_gets_the_same_closed_doors(tmp_path, way):
    """Issue 26.7: the grader run by an ordinary user (here ``nobody``, a throwaway identity):
    the sandbox still builds both ways, and the same doors stay shut; no cgroup of its own is
    possible there, and rlimits hold instead (a fork bomb stops at the process limit)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to become a throwaway unprivileged user")
    home = Path(tempfile.mkdtemp(prefix="instructor-"))
    os.chown(home, 65534, 65534)
    probe = as_nobody("unshare", "--user", "true")
    if probe.returncode != 0:
        pytest.skip("unprivileged user namespaces are disabled on this machine")
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "TMPDIR": str(home), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        result = as_nobody(
            sys.executable,
            "-c",
            AS_AN_INSTRUCTOR,
            way,
            textwrap.dedent(DOORS) + FORK_BOMB,
            env=env,
            timeout=600,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["forked"] == (way == "forked")
    assert not report["cgroup"]
    doors_line, bomb_line = report["out"].splitlines()[:2]
    doors = json.loads(doors_line)
    assert bomb_line.startswith("stopped after"), bomb_line
    assert int(bomb_line.split()[2]) < 32, bomb_line
    denied = {name: why for name, why in doors["outcome"].items() if name != "clone3"}
    assert set(denied.values()) <= {"EPERM", "failed"}, denied
    assert doors["allowed"] == {"thread": True, "fork": True}


def test_the_sandbox_is_nobody_outside_too(staging, way):
    """Issue 26.1: what a sandbox does, it does as a uid and gid that own nothing of the host
    (``nobody``), not as the grader — seen from outside, on a file it made and on every
    process it runs (bubblewrap's monitor and the forked path's supervisor included), with no
    supplementary group and no capability; its staging folder lies in folders only root may
    enter (pytest's 0700 $TMPDIR), and it still gets there."""
    if os.geteuid() != 0:
        pytest.skip("an unprivileged grader can only map the sandbox's user to itself")
    made = staging / "made-inside"
    blocked = [parent for parent in staging.parents if not parent.stat().st_mode & 0o001]
    assert blocked, "the staging folder should lie below a folder nobody may not enter"
    with open(os.devnull, "wb") as null:
        process = _sandbox_that_makes(made, staging, null)
        try:
            info = made.stat()
            identities = {}
            for pid in _descendants(process.pid):
                status = dict(
                    line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                )
                identities[pid] = (status["Uid"].split(), status["Gid"].split(), status["Groups"].split())
                assert int(status["CapEff"], 16) == int(status["CapPrm"], 16) == 0, (pid, status)
        finally:
            process.close()
    assert (info.st_uid, info.st_gid) == (65534, 65534)
    assert identities
    assert set(map(str, identities.values())) == {str((["65534"] * 4, ["65534"] * 4, []))}, identities


def _hold_processes_as_nobody(count: int) -> subprocess.Popen:
    """``count`` sleeping processes of uid 65534 outside any sandbox (what other sandboxes or a
    daemon running as nobody would be), in a process group of their own; kill it when done."""
    loop = f"for i in $(seq {count}); do sleep 600 & done; wait"
    holder = subprocess.Popen([*AS_NOBODY, "sh", "-c", loop], start_new_session=True)
    deadline = time.monotonic() + 30
    while len(_descendants(holder.pid)) < count + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return holder


LIMITS_READER = """
import json
limits = {}
for line in open("/proc/self/limits").read().splitlines()[1:]:
    name, soft = line[:26].strip(), line[26:47].strip()
    limits[name] = soft
print(json.dumps(limits))
"""


def test_without_cgroups_rlimits_hold_and_count_the_sandbox_alone(staging, monkeypatch):
    """Issue 26.1: where no cgroup can be made (forced here as on such a machine), each
    sandboxed process has memory and process limits of its own (RLIMIT_AS, RLIMIT_NPROC), and
    the process count is the sandbox's alone: 40 processes of uid 65534 running outside (other
    sandboxes, a daemon running as nobody) do not take a fork bomb's share."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run processes as nobody outside")
    monkeypatch.setenv(SANDBOX_CGROUPS_VARIABLE, "no")
    limits = sandbox.Limits(processes=32, memory_bytes=512 * 2**20)
    holder = _hold_processes_as_nobody(40)
    try:
        assert len(_descendants(holder.pid)) > 40
        bomb = run(FORK_BOMB, staging=staging, limits=limits)
        seen = run(LIMITS_READER, staging=staging, limits=limits)
    finally:
        os.killpg(holder.pid, 9)
        holder.wait()
    assert not bomb.cgroup.usable
    children = int(bomb.out.split()[2])
    assert 20 <= children < 32, bomb.out + bomb.err
    rlimits = json.loads(seen.out)
    assert rlimits["Max processes"] == "32"
    assert int(rlimits["Max address space"]) >= 512 * 2**20
    assert int(rlimits["Max file size"]) == sandbox.DEFAULT_LIMITS.file_bytes


@pytest.mark.usefixtures("others_may_enter")
def test_the_grader_says_which_limits_hold(monkeypatch):
    """Issue 26.1, 26.3: one line names each limit and what enforces it — a cgroup where one
    can be made, rlimits where none can (and why not), and whether the folders shared with the
    grader are capped in total (a root grader's tmpfs) or only per file (an unprivileged one)."""
    limits = sandbox.DEFAULT_LIMITS
    assert cgroups.Cgroup().usable, "this test expects a machine where the grader makes cgroups"
    with_cgroups = limits_in_force()
    assert with_cgroups.startswith("sandbox limits: memory 4 GiB (cgroup v"), with_cgroups
    assert f"{limits.processes} processes and threads (cgroup pids.max)" in with_cgroups
    assert "RLIMIT_AS" not in with_cgroups
    assert "RLIMIT_NPROC" not in with_cgroups
    monkeypatch.setenv(SANDBOX_CGROUPS_VARIABLE, "no")
    without = limits_in_force()
    assert without.startswith(f"sandbox limits (no cgroup: {SANDBOX_CGROUPS_VARIABLE}=no): "), without
    assert "(RLIMIT_AS)" in without
    assert f"{limits.processes} processes and threads (RLIMIT_NPROC" in without
    for text in (with_cgroups, without):
        assert "CPU 900 s per process (RLIMIT_CPU)" in text
        assert "64 MiB per file (RLIMIT_FSIZE)" in text
        assert "/tmp, $HOME and /dev/shm 256 MiB each" in text
        assert text.count("\n") == 0
    if os.geteuid() != 0:
        return
    assert "the folders shared with the grader 256 MiB each (tmpfs size)" in with_cgroups
    monkeypatch.delenv(SANDBOX_CGROUPS_VARIABLE)  # the instructor's machine has cgroups: not theirs
    as_instructor = as_nobody(
        sys.executable,
        "-c",
        "from backprop_ninja.sandbox.enforced import limits_in_force; print(limits_in_force())",
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert as_instructor.returncode == 0, as_instructor.stderr
    line = as_instructor.stdout.strip()
    assert line.startswith("sandbox limits (no cgroup: Permission denied: /sys/fs/cgroup/"), line
    assert "(RLIMIT_NPROC" in line
    assert "the folders shared with the grader per file only (not root: no tmpfs over them)" in line


OUTSIDE_PROBE = """
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
session = libc.syscall(250, 0, ctypes.c_int(-3), 0)  # KEYCTL_GET_KEYRING_ID of the session keyring
buffer = ctypes.create_string_buffer(256)
read = libc.syscall(250, 11, int(sys.argv[1]), buffer, 256)  # KEYCTL_READ the grader's key
print(json.dumps({
    "ids": [status[name].split() for name in ("Uid", "Gid", "Groups")],
    "caps": [status[name].strip() for name in ("CapEff", "CapPrm", "CapBnd", "CapAmb")],
    "no_new_privs": status["NoNewPrivs"].strip(),
    "session": session,
    "read": buffer.raw[: max(read, 0)].decode(errors="replace"),
    "aliased": sorted(os.listdir("/tmp/0")),
}))
"""


def test_what_starts_bubblewrap_for_a_root_grader_is_nobody_with_a_keyring_of_its_own(tmp_path):
    """Issue 26.1, 26.2: what a root grader runs bubblewrap with (sandbox/outside.py) is uid and
    gid 65534 with no group and no capability, in a new session keyring (the grader's key, in
    the grader's session keyring, out of reach without any filter's help), and finds a folder
    only root may reach at its alias."""
    if os.geteuid() != 0:
        pytest.skip("only a root grader starts bubblewrap through outside.py")
    from backprop_ninja.sandbox import outside

    private = tmp_path / "root-only" / "staging"  # pytest's tmp_path: below a 0700 folder
    private.mkdir(parents=True)
    (private / "inputs.json").write_text("{}")
    key = _add_key(f"bpn-outside-{os.getpid()}", b"s3cret-session", -3)
    libc = ctypes.CDLL(None, use_errno=True)
    own_session = libc.syscall(250, 0, ctypes.c_int(-3), 0)
    try:
        # The venv's interpreter may live under /tmp (a course cloned there), which the aliases'
        # tmpfs covers: the probe (standard library only) runs on the base interpreter.
        python = str(Path(sys.base_prefix, "bin", "python3"))
        command = outside.wrap([python, "-I", "-c", OUTSIDE_PROBE, str(key)], [str(private)], (65534, 65534))
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        libc.syscall(250, 3, key)  # KEYCTL_REVOKE
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["ids"] == [["65534"] * 4, ["65534"] * 4, []]
    assert seen["caps"] == ["0000000000000000"] * 4
    assert seen["no_new_privs"] == "1"
    assert seen["session"] > 0
    assert seen["session"] != own_session
    assert seen["read"] == ""
    assert seen["aliased"] == ["inputs.json"]
    assert "/tmp/0" not in Path("/proc/self/mountinfo").read_text()  # the alias stayed private
