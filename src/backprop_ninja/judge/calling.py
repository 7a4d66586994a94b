"""Calling a student's function on a trial: private copies, no autograd, a time limit, the
result picked out.

Also what the tests need to say about the call: which arguments the function changed in
place, and why a dict of gradients cannot be graded (a missing or misnamed key).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Protocol

import torch

from ..model import PARAM_NAMES


class Trial(Protocol):
    """What a call needs of ``exercises.Trial`` (named here: exercises imports this module)."""

    @property
    def function(self) -> str: ...
    @property
    def args(self) -> tuple: ...
    @property
    def pick(self) -> str | None: ...


class ResultError(Exception):
    """The student's function returned something that cannot be graded (say, a misnamed key)."""


def call_student(function: Callable, trial: Trial, args: tuple | None = None):
    """Call ``function`` on private copies of the inputs (or ``args``), without autograd."""
    if args is None:
        args = tuple(private_copy(arg) for arg in trial.args)
    with torch.no_grad():
        result = function(*args)
    if trial.pick is not None:
        return pick_result(result, trial)
    return result


def pick_result(result, trial: Trial):
    """The gradient ``trial.pick`` from a dict of gradients, or a ``ResultError`` saying what is wrong."""
    if not isinstance(result, dict):
        raise ResultError(
            f"{trial.function} must return a dict of gradients keyed by parameter name, "
            f"got {type(result).__name__}"
        )
    if trial.pick in result:
        return result[trial.pick]
    keys = [str(k) for k in result]
    pick = str(trial.pick)
    near = [k for k in keys if k.lower().removeprefix("d").removeprefix("_") == pick.lower()]
    if near:
        raise ResultError(
            f"the dict has the key {near[0]!r} but no {trial.pick!r}: key the gradients like params "
            f"({', '.join(repr(p) for p in PARAM_NAMES)}) — misnamed key"
        )
    raise ResultError(
        f"the dict has no key {trial.pick!r} (it has {', '.join(map(repr, keys[:8])) or 'no keys'}): "
        f"return every gradient, keyed like params — missing key"
    )


def modified_arguments(before: tuple, after: tuple, names: tuple[str, ...]) -> list[str]:
    """The arguments (or dict entries) the student's function changed in place."""
    changed = []
    for index, (old, new) in enumerate(zip(before, after)):
        name = names[index] if index < len(names) else f"argument {index + 1}"
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            if old.shape != new.shape or not torch.equal(old, new):
                changed.append(name)
        elif isinstance(old, dict) and isinstance(new, dict):
            changed += [
                f"{name}[{key!r}]"
                for key, value in old.items()
                if isinstance(value, torch.Tensor)
                and not (
                    isinstance(new.get(key), torch.Tensor)
                    and new[key].shape == value.shape
                    and torch.equal(new[key], value)
                )
            ]
    return changed


def private_copy(value):
    """A copy the student's function may modify freely, with no autograd history."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: private_copy(v) for k, v in value.items()}
    return value


# A test gives the student's function this long per call. In JupyterLab nothing else would
# stop an endless loop; under nbgrader it costs seconds instead of the cell timeout.
STUDENT_CALL_SECONDS = 10.0


class StudentTimeout(BaseException):
    """Raised into a student function that runs too long (BaseException: a bare
    ``except Exception`` in the student's code must not swallow it)."""


@contextmanager
def time_limit(seconds: float):
    """Interrupt the body after ``seconds`` (main thread only: elsewhere, no limit)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise StudentTimeout()

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def warnings_to_stdout():
    """Send what the student's code writes to stderr (warnings, too) to stdout instead.

    nbgrader scores a test cell 0 if it wrote anything to stderr, so a harmless warning from
    a correct answer (say, ``F.softmax`` without ``dim``) would otherwise cost its points.
    """
    return contextlib.redirect_stderr(sys.stdout)
