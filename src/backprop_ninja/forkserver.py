"""A fork server: Python processes that start in milliseconds, with heavy modules imported.

Plumbing only: this module imports nothing but the standard library and knows nothing of
what it serves. Its caller (``start``) names the modules to import once (``preload``) and
the entry points to serve (``python -m M`` → "package.module:function"); asked to run
``python -m M ARGS``, the server forks a child that behaves as that command would: a session
of its own (so that killing its group kills what it started), the requested working
directory, environment and standard streams, ``sys.argv``, and its exit code.

For a module it does not serve, or when no server is given (``server_path=None``), ``spawn``
falls back to ``subprocess.Popen`` with the same arguments. Children are as isolated from each other as
separate processes are: a fork copies the server's memory, and nothing a child does reaches
the server or the other children. The server never runs a tensor operation, so no thread
pool exists when it forks.

A child also watches the process that asked for it (a kernel its worker, a worker the
pipeline): when that process ends, however it ends, the child kills its own process group.
So stopping a worker still stops its kernel, although the kernel is not the worker's child.

Protocol: a Unix socket in a private directory (mode 0700), one JSON request per connection;
``spawn`` passes the child's stdin, stdout and stderr along as file descriptors. Requests
are taken from the server's own user only; a student's kernel (same user, environment
without the socket's path) could find it, but could only start what it can start anyway.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import importlib
import json
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

STARTUP_TIMEOUT = 120  # seconds for the server to import everything and listen

# ``python -m`` module -> "package.module:function" that runs it with its arguments; set by
# ``serve`` from what the caller of ``start`` asked for.
ENTRY_POINTS: dict[str, str] = {}


def _entry_point(module: str):
    """The function behind a served module (imported by the server before it forks)."""
    where, _, name = ENTRY_POINTS[module].partition(":")
    return getattr(importlib.import_module(where), name)


def python_module(command: list[str]) -> tuple[str, list[str]] | None:
    """(module, arguments) if ``command`` is ``[this python, (-s), -m, module, …]``; None
    otherwise. (Whether the server runs that module is the server's answer.)"""
    if not command or not _same_file(command[0], sys.executable):
        return None
    rest = list(command[1:])
    while rest and rest[0] == "-s":  # no user site-packages: the server has none either
        rest.pop(0)
    if len(rest) < 2 or rest[0] != "-m":
        return None
    return rest[1], rest[2:]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# ------------------------------------------------------------------------------ the server
class Server:
    """Listens on ``path``; forks children on request and keeps their exit codes."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(64)
        self.children: dict[int, int] = {}  # spawn number -> pid
        self.exit_codes: dict[int, int] = {}  # spawn number -> returncode (Popen's convention)
        self.count = 0

    def serve(self, parent: int) -> None:
        """Until the parent process is gone (or SIGTERM): answer requests, reap children."""
        selector = selectors.DefaultSelector()
        selector.register(self.listener, selectors.EVENT_READ)
        while os.getppid() == parent:
            for _ in selector.select(timeout=0.2):
                connection, _ = self.listener.accept()
                with connection:
                    connection.settimeout(5)  # a client that connects and says nothing
                    self._answer(connection)  # must not stall everybody else's grading
            self._reap()

    def _reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            number = next((n for n, p in self.children.items() if p == pid), None)
            if number is not None:
                del self.children[number]
                self.exit_codes[number] = (
                    -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                )

    def _answer(self, connection: socket.socket) -> None:
        try:
            message, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
            peer, uid, _ = struct.unpack(
                "3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
            )
        except OSError:
            return
        try:
            request = json.loads(message)
            if uid != os.getuid():
                raise PermissionError("requests are taken from this user only")
            if request["op"] == "spawn":
                number, pid = self._spawn(request, fds, peer, connection)
                reply: dict[str, object] = {"number": number, "pid": pid}
            elif request["op"] == "status":
                self._reap()
                number = request["number"]
                reply = {
                    "returncode": self.exit_codes.get(number),
                    "known": number in self.exit_codes or number in self.children,
                }
            else:
                reply = {"error": f"unknown op {request['op']!r}"}
        except Exception as error:  # a bad request gets an answer, never stops the server
            reply = {"error": f"{type(error).__name__}: {error}"}
        finally:
            for fd in fds:
                os.close(fd)
        with contextlib.suppress(OSError):
            connection.sendall(json.dumps(reply).encode())

    def _spawn(
        self, request: dict, fds: list[int], requester: int, connection: socket.socket
    ) -> tuple[int, int]:
        if request["module"] not in ENTRY_POINTS or len(fds) != 3:
            raise ValueError(f"cannot run {request['module']!r}")
        # A handle on the requesting process itself (not its pid, which could be reused).
        watched = os.pidfd_open(requester)
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
            if pid == 0:  # the child: never returns
                self.listener.close()
                connection.close()  # the requester reads its answer until the server closes it
                _become(request, fds, watched)
        finally:
            os.close(watched)
        self.count += 1
        self.children[self.count] = pid
        return self.count, pid


def _die_with(pidfd: int) -> None:
    """Kill this process group once the process behind ``pidfd`` has ended."""
    select.select([pidfd], [], [])  # a pidfd becomes readable when its process exits
    os.killpg(0, signal.SIGKILL)


def _become(request: dict, fds: list[int], watched: int) -> None:
    """In the forked child: turn into ``python -m module args`` and exit with its code."""
    code = 1
    try:
        os.setsid()
        import threading

        threading.Thread(target=_die_with, args=(watched,), daemon=True, name="die-with-requester").start()
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        _reopen_standard_streams()
        sys.argv = [request["module"], *request["args"]]
        sys.path[0] = os.getcwd()  # as ``python -m`` sets it
        import random

        random.seed()  # not the server's state: every child draws its own
        returned = _entry_point(request["module"])(list(request["args"]))
        code = returned if isinstance(returned, int) else 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            import atexit

            atexit._run_exitfuncs()  # what a normal interpreter exit would run
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reopen_standard_streams() -> None:
    """sys.stdin/stdout/stderr on descriptors 0/1/2, as a new interpreter would open them
    (the server's own may be anything: a pipe, or a test runner's capture)."""
    encoding = os.environ.get("PYTHONIOENCODING", "utf-8").split(":")[0] or "utf-8"
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = open(  # type: ignore[misc]
        1, "w", encoding=encoding, errors="backslashreplace", buffering=1, closefd=False
    )
    sys.stderr = sys.__stderr__ = open(  # type: ignore[misc]
        2, "w", encoding=encoding, errors="backslashreplace", buffering=1, closefd=False
    )


def serve(path: Path, parent: int, entry_points: dict[str, str], preload: Sequence[str]) -> None:
    """Import what the children need, then listen (the entry point of ``start``)."""
    ENTRY_POINTS.update(entry_points)
    for module in [*preload, *(target.partition(":")[0] for target in entry_points.values())]:
        with contextlib.suppress(Exception):  # a missing extra costs time, not correctness
            __import__(module)
    server = Server(path)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    # Nobody reads that pipe any more: whatever else is printed must not fill it and block.
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        server.serve(parent)
    finally:  # also when the pipeline was killed outright and never called stop()
        with contextlib.suppress(OSError):
            server.path.unlink()
            server.path.parent.rmdir()  # start()'s private directory, now empty


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
    entry_points: dict[str, str], preload: Sequence[str] = (), env: dict | None = None
) -> ForkServer | None:
    """Start a fork server with ``env``: it imports ``preload`` and serves ``python -m M``
    for every module M of ``entry_points`` (M -> "package.module:function", called with the
    arguments). None if it cannot start: then ``spawn`` runs ordinary subprocesses, only slower."""
    directory = tempfile.mkdtemp(prefix="forkserver-")  # mode 0700: ours alone
    command = [
        sys.executable,
        "-s",
        "-m",
        __name__,
        str(Path(directory, "socket")),
        str(os.getpid()),
        json.dumps({"entry_points": entry_points, "preload": list(preload)}),
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


def _request(path: str, request: dict, fds: Sequence[int] = ()) -> dict:
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
                answer = _request(self.path, {"op": "status", "number": self.number})
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
    **popen_options,
):
    """``subprocess.Popen(command, …, start_new_session=True)``, through the fork server
    listening on ``server_path`` when there is one and it serves ``command``'s module."""
    path = server_path
    target = python_module(command)
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
            answer = _request(path, request, [fd_in, fd_out, fd_err])
            return ForkedProcess(path, answer["number"], answer["pid"], command)
        except OSError:
            pass  # no server after all: an ordinary process below
        finally:
            for fd in opened:
                os.close(fd)
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The grading fork server (started by the pipeline).")
    parser.add_argument("socket", type=Path)
    parser.add_argument("parent", type=int, help="serve until this process is gone")
    parser.add_argument("served", type=json.loads, help='{"entry_points": {...}, "preload": [...]}')
    args = parser.parse_args(argv)
    serve(args.socket, args.parent, args.served["entry_points"], args.served["preload"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
