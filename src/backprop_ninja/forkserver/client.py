"""Starting a fork server, and asking it for children (``spawn``), with ``subprocess.Popen``
as the fallback."""

from __future__ import annotations

import array
import contextlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT = 120  # seconds for the server to import everything and listen

# ``python -m`` module -> "package.module:function" that runs it with its arguments; set by
# ``serve`` from what the caller of ``start`` asked for.


def python_module(command: list[str]) -> tuple[str, list[str]] | None:
    """(module, arguments) if ``command`` is ``[this python, (-s), -m, module, …]``; None
    otherwise. (Whether the server runs that module is the server's answer.)"""
    if not command or not _same_file(command[0], sys.executable):
        return None
    rest = list(command[1:])
    while rest and rest[0] == "-s":  # no user site-packages: the server has none either
        rest.pop(0)
    if len(rest) >= 2 and rest[0] == "-c":  # served as "-c" where the caller asked for it
        return "-c", rest[1:]
    if len(rest) < 2 or rest[0] != "-m":
        return None
    return rest[1], rest[2:]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ------------------------------------------------------------------------------ the clients
class ForkServer:
    """A running fork server, started by ``start`` and stopped by ``stop`` (or its parent's
    exit: it watches its parent)."""

    def __init__(self, process: subprocess.Popen, directory: str):
        self.process, self.directory = process, directory
        self.path = Path(directory, "socket")

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
            os.rmdir(self.directory)


def start(
    entry_points: dict[str, str],
    preload: Sequence[str] = (),
    env: dict | None = None,
    *,
    confined_only: bool = False,
) -> ForkServer | None:
    """Start a fork server with ``env``: it imports ``preload`` and serves ``python -m M``
    for every module M of ``entry_points`` (M -> "package.module:function", called with the
    arguments); with ``confined_only``, only to requests that carry a sandbox. None if it
    cannot start: then ``spawn`` runs ordinary subprocesses, only slower."""
    directory = tempfile.mkdtemp(prefix="forkserver-")  # mode 0700: ours alone
    command = [
        sys.executable,
        "-s",
        "-m",
        __package__,  # python -m backprop_ninja.forkserver: the server (__main__.py)
        str(Path(directory, "socket")),
        str(os.getpid()),
        json.dumps({"entry_points": entry_points, "preload": list(preload), "confined_only": confined_only}),
    ]
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, env=env, start_new_session=True
    )
    server = ForkServer(process, directory)
    selector = selectors.DefaultSelector()
    assert process.stdout is not None  # stdout=PIPE
    selector.register(process.stdout, selectors.EVENT_READ)
    if selector.select(timeout=STARTUP_TIMEOUT) and process.stdout.readline().strip() == b"ready":
        return server
    server.stop()
    return None


def send_request(path: str, request: dict, fds: Sequence[int] = ()) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(path)
        message = json.dumps(request).encode()
        if fds:
            connection.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
        else:
            connection.sendall(message)
        connection.shutdown(socket.SHUT_WR)
        reply = b"".join(iter(lambda: connection.recv(65536), b""))
    answer = json.loads(reply)
    if "error" in answer:
        raise OSError(f"fork server: {answer['error']}")
    return answer


class ForkedProcess:
    """A child of the fork server, with the part of ``subprocess.Popen``'s interface that
    the grading code uses (pid, returncode, poll, wait, send_signal, terminate, kill)."""

    def __init__(self, path: str, number: int, pid: int, args: list[str]):
        self.path, self.number, self.pid, self.args = path, number, pid, args
        self.returncode: int | None = None
        self.stdin = self.stdout = self.stderr = None  # streams were passed as descriptors

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                answer = send_request(self.path, {"op": "status", "number": self.number})
                if answer["returncode"] is not None or not answer["known"]:
                    self.returncode = answer["returncode"] if answer["known"] else -signal.SIGKILL
            except OSError:  # the server is gone: its orphans went to init, which reaps them
                if not _alive(self.pid):
                    self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while self.poll() is None:
            if timeout is not None and deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(self.args, timeout)
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
        assert self.returncode is not None  # poll() saw it exit
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fd(stream, default: int, mode: int) -> tuple[int, bool]:
    """A file descriptor for a Popen-style stream argument; (fd, whether we opened it)."""
    if stream is None:
        return default, False
    if stream == subprocess.DEVNULL:
        return os.open(os.devnull, mode), True
    if stream == subprocess.STDOUT:
        raise ValueError("STDOUT is resolved by the caller")
    if isinstance(stream, int):
        return stream, False
    return stream.fileno(), False


def spawn(
    command: list[str],
    *,
    cwd=None,
    env: dict | None = None,
    stdin=None,
    stdout=None,
    stderr=None,
    server_path: str | None = None,
    sandbox: dict | None = None,
    **popen_options,
):
    """``subprocess.Popen(command, …, start_new_session=True)``, through the fork server
    listening on ``server_path`` when there is one and it serves ``command``'s module.

    ``sandbox``: the child confines itself per this spec (``confine.enter``) before it runs;
    such a child comes from the server or not at all (``OSError``), never from a plain Popen."""
    path = server_path
    target = python_module(command)
    if sandbox is not None and (path is None or target is None):
        raise OSError("a confined child needs a fork server that serves its command")
    if (
        path
        and target is not None
        and stdin not in (subprocess.PIPE,)
        and subprocess.PIPE not in (stdout, stderr)
    ):
        opened = []
        try:
            fd_in, mine = _fd(stdin, 0, os.O_RDONLY)
            opened += [fd_in] if mine else []
            fd_out, mine = _fd(stdout, 1, os.O_WRONLY)
            opened += [fd_out] if mine else []
            fd_err, mine = (fd_out, False) if stderr == subprocess.STDOUT else _fd(stderr, 2, os.O_WRONLY)
            opened += [fd_err] if mine else []
            module, args = target
            request = {
                "op": "spawn",
                "module": module,
                "args": args,
                "cwd": str(cwd if cwd is not None else os.getcwd()),
                "env": dict(os.environ if env is None else env),
            }
            if sandbox is not None:
                request["sandbox"] = sandbox
            answer = send_request(path, request, [fd_in, fd_out, fd_err])
            return ForkedProcess(path, answer["number"], answer["pid"], command)
        except OSError:
            if sandbox is not None:
                raise
            # no server after all: an ordinary process below
        finally:
            for fd in opened:
                os.close(fd)
    if sandbox is not None:
        raise OSError("a confined child's streams are files or descriptors, not pipes")
    return subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
        **popen_options,
    )
