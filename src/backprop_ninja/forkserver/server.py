"""The fork server itself: imports what its caller asked for, then forks children on request."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import selectors
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from . import confine

ENTRY_POINTS: dict[str, str] = {}


def _entry_point(module: str):
    """The function behind a served module (imported by the server before it forks)."""
    where, _, name = ENTRY_POINTS[module].partition(":")
    return getattr(importlib.import_module(where), name)


def run_code(args: list[str]) -> None:
    """``python -c CODE ARGS`` (served as the module "-c" when the caller asks for it)."""
    code, *rest = args
    sys.argv = ["-c", *rest]
    exec(compile(code, "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})


# ------------------------------------------------------------------------------ the server
class Server:
    """Listens on ``path``; forks children on request and keeps their exit codes."""

    def __init__(self, path: Path, *, confined_only: bool = False):
        self.path = Path(path)
        self.confined_only = confined_only  # every child in a sandbox, or none is started
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
        if "sandbox" in request and not confine.supported():
            raise ValueError("cannot confine a child on this system")
        if self.confined_only and "sandbox" not in request:
            raise ValueError("this server starts confined children only")
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
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # Nothing of the server's may reach the child (its epoll, whatever a preloaded module
        # opened; in a sandbox, a descriptor of a host folder would be a way out of it).
        os.closerange(3, watched)
        os.closerange(max(3, watched + 1), 1 << 20)
        if "sandbox" in request:  # while this process has one thread (unshare needs that)
            confine.enter(request["sandbox"], watched)  # returns inside the sandbox only
        else:
            import threading

            threading.Thread(
                target=_die_with, args=(watched,), daemon=True, name="die-with-requester"
            ).start()
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
    sys.stdin = sys.__stdin__ = open(0, encoding=encoding, closefd=False)  # type: ignore[misc]  # noqa: SIM115 (the child's own streams)
    sys.stdout = sys.__stdout__ = open(  # type: ignore[misc]  # noqa: SIM115 (the child's own streams)
        1, "w", encoding=encoding, errors="backslashreplace", buffering=1, closefd=False
    )
    sys.stderr = sys.__stderr__ = open(  # type: ignore[misc]  # noqa: SIM115 (the child's own streams)
        2, "w", encoding=encoding, errors="backslashreplace", buffering=1, closefd=False
    )


def serve(
    path: Path,
    parent: int,
    entry_points: dict[str, str],
    preload: Sequence[str],
    *,
    confined_only: bool = False,
) -> None:
    """Import what the children need, then listen (the entry point of ``start``)."""
    ENTRY_POINTS.update(entry_points)
    for module in [*preload, *(target.partition(":")[0] for target in entry_points.values())]:
        with contextlib.suppress(Exception):  # a missing extra costs time, not correctness
            __import__(module)
    server = Server(path, confined_only=confined_only)
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
