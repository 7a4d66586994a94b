"""What the notebooks' test cells call: run a student function, check it, explain a failure.

A visible test runs the student's function on the notebook's own batch and then on the same
kinds of fresh inputs as the hidden tests, from public seeds; the hidden tests (nbgrader
strips them from the student version) run it on fresh inputs from their own seeds. So the
notebook's ✅ or ❌ is the grade. A failure raises ``GradeFailure`` whose notebook display is
one readable line, not a traceback; a right answer that changes its arguments in place, or
whose cell also compares with autograd, passes with a warning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import linecache
import math
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch

from . import chain
from .check import CheckResult, check
from .data import load_splits
from .errors import explain_exception, install_name_error_handler
from .exercises import (
    ATOMIC_BY_TARGET,
    FRESH_SHAPES_FOR,
    GRADED_TESTS,
    MANUAL_BACKWARD_EXERCISES,
    PUBLIC_SEEDS,
    BatchnormExercise,
    Case,
    CaseSpec,
    CrossEntropyExercise,
    ResultError,
    Trial,
    call_student,
    fresh_specs,
    modified_arguments,
    pick_result,
    private_copy,
)
from .model import LECTURE_SEED, calibrate_batchnorm, init_params, split_loss
from .training import train

# Captured when this module is imported, before any student cell runs, so that a student
# cell that reassigns these names in torch or in this package does not reach the tests.
_check = check
_call_student = call_student
_fresh_case = functools.lru_cache(maxsize=32)(Case.fresh)  # the same public cases for every test
_train = train
_load_splits = load_splits

ATOMIC = ATOMIC_BY_TARGET
CROSS_ENTROPY = CrossEntropyExercise()
BATCHNORM = BatchnormExercise()
MANUAL_BACKWARD = {exercise.parameter: exercise for exercise in MANUAL_BACKWARD_EXERCISES}

# Fresh-input shapes per exercise (exercises.FRESH_SHAPES); the seeds come from the test cells.
HIDDEN_SHAPES_FOR: dict[str, tuple[dict[str, Any], ...]] = FRESH_SHAPES_FOR
ANSWER_FUNCTIONS = {e.function for tests in GRADED_TESTS.values() for e in tests.values()}
install_name_error_handler(ANSWER_FUNCTIONS)  # a test cell run out of order says which cell to run


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


class GradeFailure(AssertionError):
    """A wrong answer. Shown in the notebook as one line that says what is wrong and where."""

    def __init__(self, message: str, result: CheckResult | None = None):
        super().__init__(message)
        self.result = result

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        return [f"❌ {self}"]


class _AlreadyPrinted:
    """For results that the test functions have printed already: when one ends a notebook
    cell, IPython shows nothing more. (A trailing ``;`` would not do: nbval runs cells
    without history, and IPython then ignores it.)"""

    def _ipython_display_(self) -> None:
        pass


class PrintedResult(_AlreadyPrinted, CheckResult):
    """A ``CheckResult`` that has been printed."""


class PrintedResults(_AlreadyPrinted, list):
    """A list of ``CheckResult`` that have been printed."""


def _printed(result: CheckResult) -> PrintedResult:
    return PrintedResult(**{f.name: getattr(result, f.name) for f in fields(CheckResult)})


def run_trial(function: Callable, trial: Trial) -> CheckResult:
    """The student's answer to one trial, checked. Errors become a failed result, not a crash.

    A right answer that changes its arguments in place, or whose answer cell also compares
    with autograd, passes with a note; an answer that uses autograd fails, as it will when graded.
    """
    findings, notes = _integrity(function)
    args = tuple(private_copy(arg) for arg in trial.args)
    raw = None
    try:
        with time_limit(STUDENT_CALL_SECONDS), warnings_to_stdout():
            raw = _call_student(function, dataclasses.replace(trial, pick=None), args)
        got = pick_result(raw, trial) if trial.pick is not None else raw
    except StudentTimeout:
        return _failed(
            trial,
            "timeout",
            f"{trial.function} ran for more than {STUDENT_CALL_SECONDS:g} s — an endless loop?",
        )
    except NotImplementedError:
        return _failed(trial, "not_implemented", f"{trial.function} is not implemented yet")
    except ResultError as error:
        return _failed(trial, "keys", str(error))
    except Exception as error:  # the student's code raised: report it as the answer's problem
        problem = "autograd" if findings else "error"
        message = findings[0] if findings else explain_exception(error, function, trial.sizes, trial.function)
        return _failed(trial, problem, message)
    if findings:
        return _failed(trial, "autograd", findings[0])
    changed = modified_arguments(trial.args, args, trial.arg_names)
    if changed:
        notes = [
            *notes,
            f"⚠ {trial.function} changes {', '.join(changed)} in place — compute new tensors "
            "(or work on a .clone()): a backward pass must not change the tensors it is given",
        ]
    result = _check(
        trial.target,
        got,
        trial.expected,
        batch_size=trial.batch_size,
        alternatives=trial.alternatives,
        scale=trial.scale,
        same_dtype=True,
        sizes=trial.sizes,
    )
    if not result.ok and trial.pick is not None and isinstance(raw, dict):
        result = dataclasses.replace(result, message=f"{_stage(raw, trial)} — {result.message}")
    return dataclasses.replace(result, notes=tuple(notes)) if notes else result


def _stage(grads: dict, trial: Trial) -> str:
    """Notebook 4: which of the seven gradients are right, and so where to look."""
    right = {
        p: _check(p, grads.get(p), expected, scale=trial.scale, same_dtype=True).ok
        for p, expected in trial.siblings.items()
    }
    return chain.stage_message(right, str(trial.pick))


_IPYTHON_CELL = re.compile(r"(ipykernel_\d+[/\\]\d+\.py|<ipython-input-[\d-]+>)$")


def _integrity(function: Callable) -> tuple[list[str], list[str]]:
    """The integrity scan of the student's answer cell, as grading runs it: (the findings that
    void this function's test, notes that void nothing). Only for cells run in IPython."""
    filename = getattr(getattr(function, "__code__", None), "co_filename", "")
    name = getattr(function, "__name__", "")
    if not _IPYTHON_CELL.search(filename):
        return [], []
    return _scan_cell("".join(linecache.getlines(filename)), name)


@functools.lru_cache(maxsize=64)
def _scan_cell(source: str, name: str) -> tuple[list[str], list[str]]:
    from .integrity import scan_answer_source

    try:
        findings = scan_answer_source(source, name)
    except Exception:  # the grader's scan decides; here it only explains
        return [], []
    voiding = [f.message for f in findings if f.whole_notebook or name in f.functions]
    notes = [f"⚠ {f.message}" for f in findings if not f.functions and not f.whole_notebook]
    return voiding, notes


def _failed(trial: Trial, problem: str, message: str) -> CheckResult:
    return CheckResult(trial.target, False, False, False, float("nan"), problem, message, "")


def expect_correct(exercise, function: Callable, case: Case, *, quiet: bool = False) -> CheckResult:
    """Check ``function`` on ``case``; print the verdict (unless ``quiet``), raise ``GradeFailure`` if wrong."""
    trial = exercise.trial(case)
    result = run_trial(function, trial)
    if not result.ok:
        where = (
            case.description if case.description.startswith("this") else f"fresh inputs ({case.description})"
        )
        notes = "".join(f" ({note})" for note in result.notes)
        raise GradeFailure(f"{result.name} on {where}: {result.message}{notes}", result)
    if not quiet:
        print(result)
    return result


def test_on(exercise, function: Callable, case: Case) -> PrintedResult:
    """The visible test: the notebook's own batch, then the same kinds of fresh inputs as the
    hidden tests (other sizes, dtypes, upstream gradients, large logits) from public seeds."""
    result = expect_correct(exercise, function, case)
    specs = hidden_specs_for(exercise, PUBLIC_SEEDS)
    for spec in specs:
        expect_correct(exercise, function, _fresh_case(spec), quiet=True)
    print(f"✅ {result.name} is right on {len(specs)} fresh inputs too ({fresh_summary(specs)})")
    return _printed(result)


def fresh_summary(specs: list[CaseSpec]) -> str:
    """What the fresh inputs vary, in a few words."""
    parts = [
        "n = " + ", ".join(str(s.batch_size) for s in specs),
        " and ".join(sorted({str(s.dtype).removeprefix("torch.") for s in specs}, reverse=True)),
        "other hidden, vocabulary, block and embedding sizes",
    ]
    if any(s.random_upstream for s in specs):
        parts.append("arbitrary upstream gradients")
    if any(s.logit_scale > 1 for s in specs):
        parts.append("large logits")
    return "; ".join(parts)


def hidden_specs_for(exercise, seeds: Iterable[int]) -> list[CaseSpec]:
    return fresh_specs(exercise.function, list(seeds))


def test_hidden(exercise, function: Callable, seeds: Iterable[int]) -> PrintedResults:
    """The hidden tests: the visible test's kinds of fresh inputs, from other seeds."""
    return PrintedResults(
        expect_correct(exercise, function, _fresh_case(spec)) for spec in hidden_specs_for(exercise, seeds)
    )


def stage_report(targets: Iterable[str], namespace: dict, case: Case) -> PrintedResults:
    """The lecture's comparison table for a stage of notebook 1, on the notebook's batch.

    Every gradient is computed from the *true* upstream gradients, so one mistake shows up
    once, where it is made, instead of in everything after it.
    """
    results = PrintedResults()
    for target in targets:
        exercise = ATOMIC[target]
        function = namespace.get(exercise.function)
        trial = exercise.trial(case)
        result = (
            run_trial(function, trial)
            if callable(function)
            else _failed(trial, "missing", f"{exercise.function} is not defined — run its cell")
        )
        print(result)
        results.append(result)
    passed = sum(r.ok for r in results)
    print(f"{passed}/{len(results)} correct")
    return results


def chain_report(grads: dict[str, torch.Tensor], case: Case) -> PrintedResults:
    """The lecture's table for a whole manual backward pass: ``grads`` maps "d<name>" to a
    gradient computed from the student's own upstream gradients, so here a mistake carries
    on into everything below it."""
    results = PrintedResults()
    for target in ATOMIC:
        name = "d" + target
        result = (
            _check(
                name,
                grads[name],
                case.reference.grad(name),
                batch_size=case.batch_size,
                scale=case.gradient_scale,
            )
            if name in grads
            else CheckResult(name, False, False, False, float("nan"), "missing", "not computed", "")
        )
        print(result)
        results.append(result)
    print(f"{sum(r.ok for r in results)}/{len(results)} correct")
    return results


# ------------------------------------------------------------------ notebook 4's training test
# A fresh model (n_hidden 200, the lecture's seed) trained for TRAINING_STEPS minibatches on
# the real training set must reach a calibrated validation loss of at most TRAINING_BOUND.
# Measured with the reference backward pass: 2.369 (about 1 s on one core); zero gradients
# leave it at 3.686 and a flipped sign drives it past 10,000. The bound leaves room for the
# rounding differences of any correct formula.
TRAINING_STEPS = 2000
TRAINING_BOUND = 2.45


@dataclass(frozen=True)
class TrainingResult(_AlreadyPrinted):
    """What ``test_training`` measured: calibrated validation losses before and after."""

    steps: int
    initial_loss: float
    final_loss: float
    bound: float

    def __str__(self) -> str:
        return (
            f"✅ training: validation loss {self.initial_loss:.4f} → {self.final_loss:.4f} "
            f"after {self.steps} steps (bound {self.bound})"
        )


def test_training(
    backward: Callable,
    *,
    steps: int = TRAINING_STEPS,
    bound: float = TRAINING_BOUND,
    n_hidden: int = 200,
    seed: int = LECTURE_SEED,
) -> TrainingResult:
    """Train a fresh model with ``backward`` only; its validation loss must fall to ``bound``.

    Prints and returns the losses; raises ``GradeFailure`` saying what went wrong.
    """
    splits = _load_splits()
    g = torch.Generator().manual_seed(seed)
    params = init_params(len(splits.vocab), n_hidden=n_hidden, generator=g)

    def val_loss() -> float:
        return split_loss(params, calibrate_batchnorm(params, splits.Xtr), splits.Xdev, splits.Ydev)

    initial = val_loss()
    name = getattr(backward, "__name__", "the backward function")

    def checked_backward(params, cache, Xb, Yb):
        grads = backward(params, cache, Xb, Yb)
        if not isinstance(grads, dict):
            raise GradeFailure(
                f"{name} must return a dict of gradients keyed by parameter name, got {type(grads).__name__}"
            )
        for key, value in params.items():
            got = grads.get(key)
            if not isinstance(got, torch.Tensor) or got.shape != value.shape:
                what = (
                    "nothing"
                    if got is None
                    else (
                        f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
                    )
                )
                raise GradeFailure(
                    f"{name}'s result has {what} for {key!r}, expected a "
                    f"gradient of shape {tuple(value.shape)}"
                )
        return grads

    try:
        with warnings_to_stdout():
            _train(params, splits.Xtr, splits.Ytr, checked_backward, steps=steps, generator=g, progress=False)
    except GradeFailure:
        raise
    except NotImplementedError:
        raise GradeFailure(f"{name} is not implemented yet") from None
    except Exception as error:  # the student's function raised, or returned unusable gradients
        raise GradeFailure(f"training with {name} raised {type(error).__name__}: {error}") from None
    final = val_loss()
    where = f"after {steps} training steps the validation loss is {final:.4g}"
    if not math.isfinite(final):
        raise GradeFailure(f"{where}: training diverged — a gradient with the wrong sign or far too large?")
    if final > initial:
        raise GradeFailure(
            f"{where}, up from {initial:.4g} at initialisation: the loss rose, "
            f"so some gradient points the wrong way (a flipped sign?)"
        )
    if final > initial - 0.05:
        raise GradeFailure(
            f"{where}, {initial:.4g} at initialisation: the model barely "
            f"learned — are the gradients (nearly) zero?"
        )
    if final > bound:
        raise GradeFailure(
            f"{where}, above the bound {bound}: it learns, but too slowly — "
            f"is a gradient too small or missing a term?"
        )
    result = TrainingResult(steps, initial, final, bound)
    print(result)
    return result
