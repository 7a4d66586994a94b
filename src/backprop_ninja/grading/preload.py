"""The fork servers a grading run uses: one for grading jobs (and, with --no-sandbox, kernels
and verifier children), one whose children confine themselves (sandboxed kernels and verifier
children). Started once per process and thread setting, reused by its later runs."""

from __future__ import annotations

import atexit

from .. import forkserver
from ..sandbox import build as sandbox
from .classdir import (
    FORK_ENTRY_POINTS,
    FORK_PRELOAD,
    SANDBOX_ENTRY_POINTS,
    SANDBOX_PRELOAD,
    grading_environment,
)

# One fork server per torch thread setting (and one more where sandboxes are forked), kept for
# the process's later runs (the tests and the bench grade many times) and stopped when the
# process exits (or dies: it watches us).
_FORKSERVERS: dict[tuple[int | None, bool], forkserver.ForkServer] = {}


def forkserver_for(threads: int | None, *, sandboxed: bool = False) -> forkserver.ForkServer | None:
    """The grading fork server (grading jobs, and kernels with --no-sandbox), or with
    ``sandboxed`` the sandbox fork server (kernels and verifier children, confined)."""
    server = _FORKSERVERS.get((threads, sandboxed))
    if server is not None and server.process.poll() is None:
        return server
    # What ipykernel would set before a kernel imports matplotlib: plots inline.
    env = {**grading_environment(threads=threads), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if sandboxed:
        server = sandbox.start_fork_server(SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, env)
    else:
        server = forkserver.start(FORK_ENTRY_POINTS, FORK_PRELOAD, env)
    if server is not None:
        if not _FORKSERVERS:
            atexit.register(stop_forkservers)
        _FORKSERVERS[(threads, sandboxed)] = server
    return server


def stop_forkservers() -> None:
    for server in _FORKSERVERS.values():
        server.stop()
