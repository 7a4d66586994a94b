"""Figure 5b: where a sandboxed notebook's extra time goes — what starting one sandbox costs.

Grading starts eight sandboxes per 4-notebook submission (a kernel and a verifier child per
notebook). Each variant below runs one whole sandboxed process — from the request to its exit
code and the removal of its cgroup — that has what a kernel imports and does nothing else:

* ``forked``: a child of the sandbox fork server (torch, matplotlib, ipykernel and the package
  already imported) that builds its own sandbox: how grading starts kernels and verifier
  children;
* ``bubblewrap``: a new interpreter under bubblewrap that imports those modules itself: how
  every sandbox started before the sandbox fork server, and still does with
  ``--no-forkserver`` or where that server cannot run;
* ``bubblewrap, bare``: ``python -c pass`` under bubblewrap: bubblewrap's and the
  interpreter's own start, without the imports.

The variants take turns (``interleaved_seconds``), so a change of load hits all alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from backprop_ninja.course import SANDBOX_FORKSERVER_VARIABLE
from backprop_ninja.grading.classdir import SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, grading_environment
from backprop_ninja.sandbox import build as sandbox

from .report import Row
from .timing import interleaved_seconds, median

MEASURE = "ms to start and end one sandboxed process with a kernel's imports"
KERNEL_IMPORTS = "import torch, matplotlib.pyplot, ipykernel.kernelapp, backprop_ninja.model"
SANDBOXES_PER_SUBMISSION = 8  # a kernel and a verifier child for each of the four notebooks


def sandboxed_run(code: str, folder: Path, fork_server: str | None) -> Callable[[], None]:
    """A function that runs ``python -c code`` in a sandbox to its end: forked from
    ``fork_server``, or (None) by bubblewrap."""

    def run() -> None:
        process = sandbox.SandboxedProcess(
            [sys.executable, "-c", code],
            writable=[folder],
            cwd=str(folder),
            fork_server=fork_server,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            returncode = process.wait(timeout=300)
        finally:
            process.close()
        if process.forked != (fork_server is not None) or returncode != 0:
            raise RuntimeError(
                f"the sandbox did not run as measured (forked {process.forked}, exit {returncode})"
            )

    return run


def sandbox_start(*, repeats: int) -> list[Row]:
    """Figure 5b: milliseconds per sandbox, forked and confined, against bubblewrap."""
    if os.environ.get(SANDBOX_FORKSERVER_VARIABLE):  # "bubblewrap" must mean bubblewrap
        raise RuntimeError(f"unset {SANDBOX_FORKSERVER_VARIABLE} to run the bench")
    env = {**grading_environment(), "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    server = sandbox.start_fork_server(SANDBOX_ENTRY_POINTS, SANDBOX_PRELOAD, env)
    if server is None:
        return [
            Row("5b", MEASURE, None, "ms", detail="not measured: the sandbox fork server cannot run here")
        ]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as folder:
            seconds = interleaved_seconds(
                {
                    "forked": sandboxed_run(KERNEL_IMPORTS, Path(folder), str(server.path)),
                    "bubblewrap": sandboxed_run(KERNEL_IMPORTS, Path(folder), None),
                    "bubblewrap_bare": sandboxed_run("pass", Path(folder), None),
                },
                repeats=repeats,
            )
    finally:
        server.stop()
    ms = {name: 1000 * median(values) for name, values in seconds.items()}
    saved = SANDBOXES_PER_SUBMISSION * (ms["bubblewrap"] - ms["forked"]) / 1000
    detail = (
        f"forked and confined {ms['forked']:.0f} ms vs {ms['bubblewrap']:,.0f} ms for a new "
        f"interpreter under bubblewrap ({ms['bubblewrap_bare']:.0f} ms of it bubblewrap and a bare "
        f"interpreter, the rest the imports); {SANDBOXES_PER_SUBMISSION} sandboxes a submission: "
        f"{saved:.0f} s saved"
    )
    data = {"repeats": repeats, "seconds": seconds, "sandboxes_per_submission": SANDBOXES_PER_SUBMISSION}
    return [Row("5b", MEASURE, ms["forked"], "ms", detail=detail, data=data)]
