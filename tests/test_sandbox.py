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

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from backprop_ninja.course import REPO_ROOT, SANDBOX_ENVIRONMENT, SANDBOX_FORKSERVER_VARIABLE
from backprop_ninja.sandbox import build as sandbox
from backprop_ninja.sandbox import cgroups

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
    assert "apt-get install bubblewrap" in message and "--no-sandbox" in message and "macOS" in message


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
    assert SECRET not in process.out and "ghp_secret_token" not in process.out
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
        """,
        staging=staging,
    )
    # Inside, a route may "succeed" into the sandbox's own tmpfs (the parents of the staging
    # folder are made there); what matters is that the real file and folder are untouched.
    assert outside.read_text() == "original", process.out
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert (staging / "allowed.txt").read_text() == "fine"  # the staging folder itself is writable


def test_no_process_outlives_its_sandbox(staging):
    heartbeat = staging / "heartbeat"
    process = run(
        f"""
        import os, time
        if os.fork() == 0:
            os.setsid()  # a new session, and a second fork: the classic daemon escape
            if os.fork() == 0:
                while True:
                    with open({str(heartbeat)!r}, "a") as f:
                        f.write(".")
                    time.sleep(0.05)
            os._exit(0)
        time.sleep(0.5)
        """,
        staging=staging,
    )
    assert process.returncode == 0
    size = heartbeat.stat().st_size
    assert size > 0  # it did run while the sandbox was alive
    time.sleep(0.5)
    assert heartbeat.stat().st_size == size  # and nothing writes once the sandbox is closed
    assert not any(folder.exists() for folder in process.cgroup.folders)


def test_an_empty_cgroup_left_behind_is_removed_later_and_a_busy_one_never():
    left = cgroups.Cgroup()  # made and never removed: what a job killed outright leaves
    busy = cgroups.Cgroup()
    sleeper = subprocess.Popen(busy.wrap(["sleep", "60"]))
    try:
        assert left.usable and busy.usable
        for _ in range(100):  # the shell joins the cgroup, then becomes sleep
            if all((folder / "cgroup.procs").read_text().strip() for folder in busy.folders):
                break
            time.sleep(0.05)
        cgroups.remove_stale_cgroups()  # both younger than a minute: a sandbox may be joining
        assert all(folder.exists() for folder in [*left.folders, *busy.folders])
        removed = cgroups.remove_stale_cgroups(now=time.time() + 2 * cgroups.STALE_CGROUP_SECONDS)
        assert removed >= len(left.folders)
        assert not any(folder.exists() for folder in left.folders)
        assert all(folder.exists() for folder in busy.folders) and sleeper.poll() is None
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
    assert process.returncode == 0 and "CONNECTED" not in process.out, process.out


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
    with open(os.devnull, "rb") as null:
        with pytest.raises(OSError, match="confined children only"):
            forkserver._request(str(fork_server.path), request, [null.fileno()] * 3)
    time.sleep(0.5)  # a child, had one been forked, would have written by now
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
    assert reached and max(reached) <= 512


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
    assert (staging / "big.bin").stat().st_size <= 2 * 2**20 and in_staging <= 2 * 2**20


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
    assert "UNMOUNTED" not in process.out and "MOUNTED" not in process.out
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
    assert mounts and mounts[0][:2] == ["/", "ro,nosuid,nodev,relatime"], process.out + process.err
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
                from backprop_ninja.sandbox import cgroups
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
    time.sleep(1)
    size = heartbeat.stat().st_size
    assert size > 0
    time.sleep(0.5)
    assert heartbeat.stat().st_size == size  # nothing beats once its starter is gone
    cgroups.remove_stale_cgroups(now=time.time() + 2 * cgroups.STALE_CGROUP_SECONDS)


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
    assert classmate.name not in first["tmp"] and len(own) == 1  # only its own folder
    assert notebook.cells[1].outputs[-1].get("ename") == "KeyboardInterrupt"
    time.sleep(0.5)
    survivors = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout
    assert survivors == ""


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
