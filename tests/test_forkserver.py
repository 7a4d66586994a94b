"""The fork server: its children behave like the ``python -m`` commands they stand for.

The server under test is forked from this test process (``multiprocessing``'s fork context)
with one more entry point, ``probe``, which reports what the child sees — so these tests need
no torch-importing server and take a fraction of a second each.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backprop_ninja import forkserver
from backprop_ninja.course import FORKSERVER_VARIABLE
from backprop_ninja.grading.classdir import FORK_ENTRY_POINTS, FORK_PRELOAD


def probe(argv: list[str]) -> None:
    """A test entry point: print what the child sees, then do what argv[0] says."""
    print(
        json.dumps(
            {
                "argv": sys.argv,
                "cwd": os.getcwd(),
                "env": os.environ.get("PROBE"),
                "pid": os.getpid(),
                "ppid": os.getppid(),
                "sid": os.getsid(0),
            }
        ),
        flush=True,
    )
    action = argv[0] if argv else "exit0"
    if action == "exit3":
        sys.exit(3)
    if action == "raise":
        raise RuntimeError("the probe failed on purpose")
    if action == "sleep":
        time.sleep(60)


PROBE = f"{__name__}:probe"  # how a caller names an entry point: "module:function"


def _serve(path: str, parent: int) -> None:
    forkserver.ENTRY_POINTS["probe"] = PROBE
    forkserver.Server(Path(path)).serve(parent)


@pytest.fixture
def server(tmp_path):
    path = tmp_path / "socket"
    process = multiprocessing.get_context("fork").Process(target=_serve, args=(str(path), os.getpid()))
    process.start()
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "the test server did not start"
        time.sleep(0.01)
    yield str(path)
    process.terminate()
    process.join(10)


def run_probe(server: str, tmp_path: Path, *args: str, env: dict | None = None):
    out = tmp_path / "out.txt"
    with open(out, "wb") as handle:
        process = forkserver.spawn(
            [sys.executable, "-m", "probe", *args],
            cwd=tmp_path,
            env=env or {"PROBE": "seen"},
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            server_path=server,
        )
    return process, out


def _patch_entry_point(monkeypatch):
    monkeypatch.setitem(forkserver.ENTRY_POINTS, "probe", PROBE)


def test_a_child_gets_the_arguments_directory_environment_and_streams_asked_for(
    server, tmp_path, monkeypatch
):
    _patch_entry_point(monkeypatch)
    process, out = run_probe(server, tmp_path, "exit0", "--flag")
    assert isinstance(process, forkserver.ForkedProcess)
    assert process.wait(timeout=10) == 0
    seen = json.loads(out.read_text().splitlines()[0])
    assert seen["argv"] == ["probe", "exit0", "--flag"]
    assert Path(seen["cwd"]) == tmp_path
    assert seen["env"] == "seen"
    assert seen["sid"] == seen["pid"] == process.pid  # a session of its own, like start_new_session
    assert seen["ppid"] != os.getpid()  # forked by the server, not by us


@pytest.mark.parametrize(("action", "code"), [("exit3", 3), ("raise", 1)])
def test_the_exit_code_is_the_commands(server, tmp_path, monkeypatch, action, code):
    _patch_entry_point(monkeypatch)
    process, out = run_probe(server, tmp_path, action)
    assert process.wait(timeout=10) == code
    if action == "raise":
        assert "the probe failed on purpose" in out.read_text()  # the traceback, on stderr


def test_wait_times_out_and_kill_stops_the_child(server, tmp_path, monkeypatch):
    _patch_entry_point(monkeypatch)
    process, _ = run_probe(server, tmp_path, "sleep")
    with pytest.raises(subprocess.TimeoutExpired):
        process.wait(timeout=0.3)
    assert process.poll() is None
    os.killpg(process.pid, signal.SIGKILL)  # what the pipeline does to a worker that overruns
    assert process.wait(timeout=10) == -signal.SIGKILL


def test_a_child_dies_with_the_process_that_asked_for_it(server, tmp_path, monkeypatch):
    """A kernel is the fork server's child, not its worker's: it must still end with it."""
    _patch_entry_point(monkeypatch)
    pid_file = tmp_path / "child.pid"
    requester = multiprocessing.get_context("fork").Process(
        target=_spawn_and_linger, args=(server, str(tmp_path), str(pid_file))
    )
    requester.start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.01)
    child = int(pid_file.read_text())
    assert _alive(child)
    requester.kill()
    requester.join()
    deadline = time.monotonic() + 10
    while _alive(child):
        assert time.monotonic() < deadline, "the child outlived the process that asked for it"
        time.sleep(0.05)


def _spawn_and_linger(server: str, directory: str, pid_file: str) -> None:
    forkserver.ENTRY_POINTS["probe"] = PROBE
    process = forkserver.spawn(
        [sys.executable, "-m", "probe", "sleep"],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        server_path=server,
    )
    Path(pid_file).write_text(str(process.pid))
    time.sleep(60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0): the server reaps it within its next poll.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_without_a_server_spawn_is_an_ordinary_subprocess(tmp_path, monkeypatch):
    process = forkserver.spawn(
        [sys.executable, "-c", "import os; print(os.getcwd())"], cwd=tmp_path, stdout=subprocess.PIPE
    )
    assert isinstance(process, subprocess.Popen)
    out, _ = process.communicate(timeout=30)
    assert Path(out.decode().strip()) == tmp_path


def test_only_this_pythons_modules_are_asked_of_the_server():
    python = sys.executable
    assert forkserver.python_module([python, "-s", "-m", "backprop_ninja.verify", "--child", "d"]) == (
        "backprop_ninja.verify",
        ["--child", "d"],
    )
    assert forkserver.python_module([python, "-m", "ipykernel_launcher", "-f", "c.json"]) == (
        "ipykernel_launcher",
        ["-f", "c.json"],
    )
    assert forkserver.python_module([python, "-m", "http.server"]) == (
        "http.server",
        [],
    )  # the server refuses it
    assert forkserver.python_module([python, "-c", "print(1)", "x"]) == ("-c", ["print(1)", "x"])
    assert forkserver.python_module([python, "-c"]) is None  # no code: not a request at all
    assert forkserver.python_module(["/bin/sh", "-m", "backprop_ninja.verify"]) is None


def test_a_request_for_another_module_is_refused_and_spawn_falls_back(server, tmp_path):
    with pytest.raises(OSError, match="cannot run"):
        forkserver.send_request(
            server, {"op": "spawn", "module": "os", "args": [], "cwd": "/", "env": {}}, [0, 1, 2]
        )
    with pytest.raises(OSError, match="cannot run"):  # code only where the server was told to run it
        forkserver.send_request(
            server, {"op": "spawn", "module": "-c", "args": ["1"], "cwd": "/", "env": {}}, [0, 1, 2]
        )


@pytest.mark.notebooks
def test_a_kernel_started_through_the_server_runs_cells_and_cannot_see_the_server(tmp_path, monkeypatch):
    """The real server (torch imported) and nbclient with the grading kernel manager."""
    import nbformat
    from nbclient import NotebookClient

    server = forkserver.start(FORK_ENTRY_POINTS, FORK_PRELOAD)
    assert server is not None, "the fork server did not start"
    try:
        monkeypatch.setenv(FORKSERVER_VARIABLE, str(server.path))
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_code_cell(
                f"import os, sys\nprint(os.getppid(), {FORKSERVER_VARIABLE!r} in os.environ, "
                "'torch' in sys.modules)"
            )
        ]
        NotebookClient(
            nb,
            timeout=60,
            resources={"metadata": {"path": str(tmp_path)}},
            kernel_manager_class="backprop_ninja.grading.kernels.ForkedKernelManager",
        ).execute()
        ppid, sees_server, torch_loaded = nb.cells[0].outputs[0]["text"].split()
        assert int(ppid) == server.process.pid  # forked by the server
        assert sees_server == "False"
        assert torch_loaded == "True"
    finally:
        server.stop()


def test_a_client_that_says_nothing_does_not_stall_the_server(server, tmp_path, monkeypatch):
    """A student's kernel could find the socket and hold a connection open: others still
    get their children (after the server's few seconds of patience)."""
    import socket

    _patch_entry_point(monkeypatch)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.connect(server)
        process, _ = run_probe(server, tmp_path, "exit0")
        assert process.wait(timeout=20) == 0


def test_a_server_whose_pipeline_is_killed_exits_and_leaves_nothing_behind():
    """SIGKILL gives the pipeline no chance to stop its server: the server notices alone."""
    code = (
        "from backprop_ninja import forkserver; import time; server = forkserver.start({}); "
        "print(server.directory, server.process.pid, flush=True); time.sleep(120)"
    )
    pipeline = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    directory, pid = pipeline.stdout.readline().decode().split()
    assert Path(directory, "socket").exists()
    assert _alive(int(pid))
    pipeline.kill()
    pipeline.wait()
    pipeline.stdout.close()
    deadline = time.monotonic() + 10
    while _alive(int(pid)) or Path(directory).exists():
        assert time.monotonic() < deadline, "the orphaned server or its directory is still there"
        time.sleep(0.05)
