"""Trusted verification of a submission's answers, outside the student's kernel.

Modules: ``plan`` (the calls and their verdicts), ``parent`` (trusted: runs the child and
judges), ``child`` (untrusted, minimal: runs the answers in the sandbox), ``__main__`` (the
command line, and the child's entry point).

Public API (stable — the grading pipeline relies on it)::

    verify_notebook(submitted_path, notebook_name, *, seed=None, timeout=60,
                    source_path=None, memory_mb=2048) -> dict[str, Verdict]
        # test grade_id → Verdict, for every graded test of the notebook

    Verdict(ok: bool,            # the answer is right on every fresh trial
            message: str,        # one line for the student (the first failure)
            problem: Problem | None) # None if ok, else one of PROBLEMS
    Verdict.flagged -> bool      # problem == "autograd": show it as an integrity flag

    PROBLEMS = ("wrong", "not_implemented", "error", "missing", "autograd", "timeout",
                "crash", "bad_output", "invalid")
    # judge.problems.Problem: a str enum, equal to these strings

How it works. This process (the *parent*) draws fresh cases from secret seeds
(``secrets``, or ``seed`` in tests) with the hidden tests' shapes
(``cases.fresh_specs``), computes the true gradients and keeps them in memory. It
saves only the inputs of each call (function name + arguments) to a private temporary
directory and starts a *child*, ``python -m backprop_ninja.verify --child DIR``: no stdin,
a clean environment, that directory as working directory, its own process group, and
limits on memory, CPU time and file size that it sets on itself before any student code
runs (not in a ``preexec_fn``: Python documents that as unsafe in a process with threads,
and torch starts threads). The child deletes its input files once loaded, turns autograd off (grad mode off;
``torch.autograd.grad``, ``backward``, ``torch.func`` transforms and ``enable_grad`` raise),
runs ``cells.ANSWER_PRELUDE`` and then the submission's answer cells — statement by
statement, so that a stray debugging line does not keep a function from being defined —
calls each function on private copies of its inputs and saves what came back. The parent
loads that with ``torch.load(weights_only=True)`` (no code can run while loading) and
judges it with ``Trial.verdict``, the very check the notebooks' tests use: student code never
runs in the process that decides.

Every trial of a test must pass. A tensor returned with ``requires_grad`` or a
``grad_fn``, or a call of the disabled autograd, fails as ``autograd``. A timeout, a crash
or unreadable output fails every test of the notebook with the reason; nothing the child
does can raise an exception in the parent. The submitted file is only ever opened for
reading.

Notebook 4's ``test_training`` has no gradient of its own: its verdict follows the seven
gradient verdicts (ok only if all pass; otherwise the first failure's message). Training
with correct gradients is then a matter of arithmetic the course's code does, and the
kernel's own training test can only take points away, never grant them. That visible test
checks all seven gradients first, on public fresh inputs of the same kinds and with the same
check (``Trial.verdict``), so its ✅ means these points too.

Where the child runs: when grading sandboxes (the default of ``autograde``), in a bubblewrap
sandbox of its own (``grading.sandbox``) that may write only its working directory; with
``--no-sandbox``, as the grader's user (the limits then stop runaway memory, CPU and output,
not file access). Answers may use only their arguments, torch, F, math, what the answer cells
define and what they import: a helper defined in a cell the student added is not run here,
so the call fails with NameError (and says so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plan import PROBLEMS, Verdict, build_plan, secret_seeds

if TYPE_CHECKING:
    from .parent import verify_notebook, verify_submission

__all__ = ["PROBLEMS", "Verdict", "build_plan", "secret_seeds", "verify_notebook", "verify_submission"]

_PARENT_NAMES = ("verify_notebook", "verify_submission")


def __getattr__(name: str) -> Any:
    """The parent's functions, imported on first use: the untrusted child's process
    (``python -m backprop_ninja.verify --child``) imports this package, and must not load the
    trusted side (the parent, the integrity scan, the fork server, the sandbox)."""
    if name in _PARENT_NAMES:
        from . import parent

        return getattr(parent, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
