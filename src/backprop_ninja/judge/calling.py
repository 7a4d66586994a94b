"""Calling a student's function on a trial, in one trip: private copies of the inputs, no
autograd, a time limit, stderr to stdout; what came back, or why nothing did, as a typed
``Outcome`` (which arguments it changed in place, too).

``Trial.verdict`` (``exercises``) judges an ``Outcome``: the notebooks' tests call here, in
the student's kernel; the verifier makes the same ``Outcome`` from what its sandboxed child
saw, so that both judge it with the same code.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from . import messages
from .errors import explain_exception
from .problems import Problem
from .sizes import input_shapes

# A test gives the student's function this long per call. In JupyterLab nothing else would
# stop an endless loop; under nbgrader it costs seconds instead of the cell timeout.
STUDENT_CALL_SECONDS = 10.0


class Trial(Protocol):
    """What a call needs of ``exercises.Trial`` (named here: exercises imports this module)."""

    @property
    def function(self) -> str: ...
    @property
    def args(self) -> tuple: ...
    @property
    def arg_names(self) -> tuple[str, ...]: ...
    @property
    def sizes(self) -> dict[str, int]: ...


@dataclass(frozen=True)
class Outcome:
    """What came of one call: ``returned`` (when ``problem`` is None), or the ``problem`` and
    the one line that says it; ``changed`` names the arguments changed in place;
    ``local_values`` the tensors among the function's local variables when it returned (only
    for a trial that asks for them: notebook 4's, to find the first wrong step)."""

    returned: Any = None
    problem: Problem | None = None
    message: str = ""
    changed: tuple[str, ...] = ()
    local_values: dict[str, torch.Tensor] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def answered(
        cls, returned: Any, changed: tuple[str, ...] = (), local_values: dict[str, torch.Tensor] | None = None
    ) -> Outcome:
        return cls(returned, None, "", changed, local_values or {})

    @classmethod
    def failed(cls, problem: Problem, message: str) -> Outcome:
        return cls(None, problem, message)

    @property
    def ok(self) -> bool:
        """The function returned (its answer may still be wrong)."""
        return self.problem is None


def call(function: Callable, trial: Trial, *, seconds: float | None = None) -> Outcome:
    """Call ``function`` on private copies of ``trial.args``, without autograd, for at most
    ``seconds`` (``STUDENT_CALL_SECONDS``); never raises for what the student's code does."""
    seconds = STUDENT_CALL_SECONDS if seconds is None else seconds
    args = tuple(private_copy(arg) for arg in trial.args)
    local_values: dict[str, torch.Tensor] = {}
    watch = getattr(trial, "wants_local_values", False)
    try:
        watching = locals_at_return(function, local_values) if watch else contextlib.nullcontext()
        with time_limit(seconds), warnings_to_stdout(), torch.no_grad(), watching:
            returned = function(*args)
    except StudentTimeout:
        return Outcome.failed(Problem.TIMEOUT, messages.ran_too_long(trial.function, seconds))
    except NotImplementedError:
        return Outcome.failed(Problem.NOT_IMPLEMENTED, messages.not_implemented(trial.function))
    except Exception as error:  # the student's code raised: report it as the answer's problem
        # the inputs' shapes, and the function's own tensors' if it was watched (notebook 4)
        inputs = input_shapes(trial.args, trial.arg_names) | input_shapes(
            tuple(local_values.values()), tuple(local_values)
        )
        why = explain_exception(error, function, trial.sizes, trial.function, inputs)
        return Outcome.failed(Problem.ERROR, why)
    changed = tuple(modified_arguments(trial.args, args, trial.arg_names))
    return Outcome.answered(returned, changed, local_values)


@contextmanager
def locals_at_return(function: Callable, into: dict[str, torch.Tensor]) -> Iterator[None]:
    """Put into ``into`` the tensors among ``function``'s local variables as it returns.

    A profile hook (``sys.setprofile``) sees the return of the function's own frame; the hook
    in place before is put back after. A function that sets its own hook, or is not a plain
    Python function, leaves ``into`` empty: the caller then knows less, never something wrong.
    """
    code = getattr(function, "__code__", None)
    previous = sys.getprofile()

    def profile(frame, event, arg):
        if event == "return" and frame.f_code is code:
            into.clear()
            into.update((k, v) for k, v in frame.f_locals.items() if isinstance(v, torch.Tensor))

    if code is not None:
        sys.setprofile(profile)
    try:
        yield
    finally:
        sys.setprofile(previous)


def modified_arguments(before: tuple, after: tuple, names: tuple[str, ...]) -> list[str]:
    """The arguments (or dict entries) the student's function changed in place."""
    changed = []
    for index, (old, new) in enumerate(zip(before, after)):
        name = names[index] if index < len(names) else f"argument {index + 1}"
        if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor):
            if not _same(old, new):
                changed.append(name)
        elif isinstance(old, dict) and isinstance(new, dict):
            changed += [
                f"{name}[{key!r}]"
                for key, value in old.items()
                if isinstance(value, torch.Tensor) and not _same(value, new.get(key))
            ]
    return changed


def _same(old: torch.Tensor, new: Any) -> bool:
    return isinstance(new, torch.Tensor) and new.shape == old.shape and torch.equal(new, old)


def private_copy(value):
    """A copy the student's function may modify freely, with no autograd history."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: private_copy(v) for k, v in value.items()}
    return value


class StudentTimeout(BaseException):
    """Raised into a student function that runs too long (BaseException: a bare
    ``except Exception`` in the student's code must not swallow it)."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
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
