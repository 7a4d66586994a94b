"""The kernel manager nbgrader uses while grading: sandboxed kernels, or kernels forked by
the fork server.

When grading sandboxes (``grading.sandbox.enabled()``, the default of ``autograde``), every
kernel runs in a bubblewrap sandbox of its own: it talks to nbclient over unix sockets (ZeroMQ's
``ipc`` transport) in a private folder that holds its connection file — no TCP port another
kernel could reach, no connection file in the shared $TMPDIR — and that folder is all it may
write besides its own tmpfs. It is interrupted by a message (a signal from outside cannot
cross into its PID namespace), and everything it started ends when it is shut down.

nbgrader's ``Execute`` (nbclient) starts one kernel per notebook with a
``kernel_manager_class``; this one launches it through ``forkserver.spawn``, so that the
kernel starts with torch, matplotlib and the course's package already imported (~0.1 s
instead of ~2.5 s). Without a running fork server it is jupyter_client's own manager.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from typing import IO

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner
from traitlets import Type, default

from ..course import FORKSERVER_VARIABLE, MAX_MESSAGE_BYTES
from ..forkserver import python_module, spawn
from ..sandbox import build as sandbox
from ..text import printable

# The kernels this process runs now: a notebook over its time limit has its kernel killed.
_LIVE: set[LocalProvisioner] = set()
# How many messages a grading client's sockets queue before the kernel's side drops them
# (ZeroMQ's RCVHWM; its default, 1,000, is gigabytes of a kernel's flood in the grader's memory).
RECEIVE_QUEUE_MESSAGES = 16
# How much of what a sandboxed kernel printed to its own stdout and stderr reaches the log.
CONSOLE_TAIL_BYTES = 4000


# A unix socket's path holds at most 107 bytes: the kernel's sockets ("<folder>/kernel-NNNNN")
# need a folder with a short path, whatever $TMPDIR is.
SOCKET_BASE_BYTES = 64


def socket_folder() -> str:
    """Where a kernel's private folder (its sockets) goes: $TMPDIR, or /tmp when $TMPDIR's
    path is too long for a unix socket's address."""
    base = tempfile.gettempdir()
    return base if len(os.fsencode(base)) <= SOCKET_BASE_BYTES else "/tmp"


class KernelStartError(RuntimeError):
    """A kernel could not be launched (its sandbox, or its process): the grader's failure,
    before any of the student's code ran (reasons.GRADER_PATTERNS names it so)."""


class Watchdog:
    """Kills this process's kernels once ``seconds`` have passed; ``fired`` tells whether it did."""

    def __init__(self, seconds: float):
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def _fire(self) -> None:
        self.fired = True
        for provisioner in list(_LIVE):
            _kill(provisioner)


@contextlib.contextmanager
def killed_after(seconds: float) -> Iterator[Watchdog]:
    """Within the block, a kernel still running after ``seconds`` is killed: nbclient then
    reports a dead kernel and the block's caller reads ``watchdog.fired``."""
    watchdog = Watchdog(seconds)
    watchdog._timer.start()
    try:
        yield watchdog
    finally:
        watchdog._timer.cancel()


def _kill(provisioner: LocalProvisioner) -> None:
    sandboxed = getattr(provisioner, "sandboxed", None)
    if sandboxed is not None:
        sandboxed.close()  # bubblewrap and everything in its cgroup
        return
    if provisioner.pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(provisioner.pgid, signal.SIGKILL)


class ForkedKernelProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernel process comes from the fork server when it can."""

    async def launch_kernel(self, cmd: list[str], **kwargs):
        server = os.environ.get(FORKSERVER_VARIABLE)
        if not server or python_module(cmd) is None:
            info = await super().launch_kernel(cmd, **kwargs)
            _LIVE.add(self)
            return info
        env = dict(kwargs.get("env") or os.environ)
        env.pop(FORKSERVER_VARIABLE, None)  # the student's code has no business with the server
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's own launcher sets it
        try:
            self.process = spawn(
                cmd,
                cwd=kwargs.get("cwd"),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=kwargs.get("stdout"),
                stderr=kwargs.get("stderr"),
                server_path=server,
            )
        except Exception as error:
            raise KernelStartError(
                f"the fork server could not start it: {type(error).__name__}: {error}"
            ) from error
        self.pid = self.pgid = self.process.pid  # a session of its own: signals go to its group
        self.cwd = kwargs.get("cwd", pathlib.Path.cwd())
        _LIVE.add(self)
        return self.connection_info

    async def cleanup(self, restart: bool = False) -> None:
        _LIVE.discard(self)
        await super().cleanup(restart)


class SandboxedKernelProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernel runs in a bubblewrap sandbox (``grading.sandbox``)."""

    runtime_dir: str | None = None
    sandboxed: sandbox.SandboxedProcess | None = None  # kept: LocalProvisioner forgets its process
    console: IO[bytes] | None = None  # the kernel's own stdout and stderr

    async def launch_kernel(self, cmd: list[str], **kwargs):
        assert self.runtime_dir is not None, "the kernel manager sets the runtime folder first"
        # No JPY_PARENT_PID: the grader's pid means nothing inside the kernel's PID namespace
        # (the kernel would think it was orphaned); --die-with-parent does that job.
        env = dict(kwargs.get("env") or os.environ)
        # The kernel's own descriptors 1 and 2 (not its cells' outputs, which travel over
        # ZeroMQ and are capped in bytes) go to a file of the grader's, deleted with the
        # kernel, never to the worker's streams (a pipe or a cluster's log): a kernel writing
        # to them in a loop fills at most the sandbox's file size limit, and costs only itself.
        self.console = tempfile.TemporaryFile(prefix="kernel-console-")  # noqa: SIM115 (closed with the kernel)
        try:
            self.sandboxed = sandbox.SandboxedProcess(
                cmd,
                writable=[pathlib.Path(self.runtime_dir)],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=kwargs.get("stdout") or self.console,
                stderr=kwargs.get("stderr") or self.console,
            )
        except Exception as error:
            raise KernelStartError(
                f"its sandbox could not be built: {type(error).__name__}: {error}"
            ) from error
        self.process = self.sandboxed  # type: ignore[assignment]  # Popen's interface, as used here
        self.pid = self.pgid = self.sandboxed.pid
        self.cwd = sandbox.SANDBOX_HOME
        _LIVE.add(self)
        return self.connection_info

    async def cleanup(self, restart: bool = False) -> None:
        _LIVE.discard(self)
        if self.sandboxed is not None:
            self.sandboxed.close()
        if self.console is not None:
            _echo_tail(self.console)
            self.console.close()
            self.console = None
        if self.runtime_dir is not None and not restart:
            shutil.rmtree(self.runtime_dir, ignore_errors=True)
        await super().cleanup(restart)


def _echo_tail(console: IO[bytes], limit: int = CONSOLE_TAIL_BYTES) -> None:
    """The last ``limit`` bytes a kernel wrote to its own stdout and stderr, on this process's
    stderr (the student's grading log): enough to see why a kernel died."""
    console.seek(max(0, console.seek(0, os.SEEK_END) - limit))
    tail = console.read().decode("utf-8", "replace")
    if tail.strip():
        print(printable(tail), file=sys.stderr)


def run_kernel(argv: list[str]) -> None:
    """``python -m ipykernel_launcher ARGV`` in a process forked by the fork server."""
    from ipykernel import kernelapp

    # The app reads JPY_PARENT_PID when it is imported, which happened in the server.
    parent = os.environ.get("JPY_PARENT_PID")
    app = kernelapp.IPKernelApp.instance(**({"parent_handle": int(parent)} if parent else {}))
    app.initialize(argv)
    app.start()


class CappedKernelClient(AsyncKernelClient):
    """jupyter_client's client whose sockets refuse any message over ``MAX_MESSAGE_BYTES``:
    ZeroMQ drops the connection instead of handing the grader a message of gigabytes (the
    notebook then fails to run to its end, which costs only that notebook)."""

    @default("context")
    def _context_default(self) -> zmq.asyncio.Context:
        self._created_context = True  # so that the client terminates it
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)  # for every socket it makes
        context.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE_MESSAGES)
        return context


class ForkedKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` for the kernelspec's own argv: sandboxed when grading sandboxes,
    else through ``ForkedKernelProvisioner``. Its clients cap messages (``CappedKernelClient``)."""

    client_factory = Type(CappedKernelClient, klass=AsyncKernelClient)

    async def _async_pre_start_kernel(self, **kw):
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            if sandbox.enabled():
                self.provisioner = self._sandboxed_provisioner()
            else:
                self.provisioner = ForkedKernelProvisioner(
                    kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
                )
        return await super()._async_pre_start_kernel(**kw)

    def _sandboxed_provisioner(self) -> SandboxedKernelProvisioner:
        """Unix sockets and the connection file in a private folder the sandbox may write."""
        runtime = tempfile.mkdtemp(prefix="kernel-", dir=socket_folder())
        self.transport = "ipc"
        self.ip = os.path.join(runtime, "kernel")
        self.connection_file = os.path.join(runtime, "kernel.json")
        self.cache_ports = False
        assert self.kernel_spec is not None, "nbclient names the kernel before starting it"
        self.kernel_spec.interrupt_mode = "message"  # no signal reaches into its PID namespace
        provisioner = SandboxedKernelProvisioner(
            kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
        )
        provisioner.runtime_dir = runtime
        return provisioner
