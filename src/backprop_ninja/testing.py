"""What the notebooks' test cells call: run a student function, check it, explain a failure.

A visible test runs the student's function on the notebook's own batch; the hidden tests
(nbgrader strips them from the student version) run it on fresh inputs. A failure raises
``GradeFailure`` whose notebook display is one readable line, not a traceback.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any

import torch

from .check import CheckResult, check
from .course import VERDICT_MIME
from .data import load_splits
from .exercises import (
    ATOMIC_BY_TARGET,
    HIDDEN_SHAPES,
    MANUAL_BACKWARD_EXERCISES,
    BatchnormExercise,
    Case,
    CaseSpec,
    CrossEntropyExercise,
    Trial,
    call_student,
)
from .model import LECTURE_SEED, calibrate_batchnorm, init_params, split_loss
from .training import train

# Captured when this module is imported, before any student cell runs, so that a student
# cell that reassigns these names in torch or in this package does not reach the tests.
_check = check
_call_student = call_student
_fresh_case = Case.fresh
_train = train
_load_splits = load_splits

ATOMIC = ATOMIC_BY_TARGET
CROSS_ENTROPY = CrossEntropyExercise()
BATCHNORM = BatchnormExercise()
MANUAL_BACKWARD = {exercise.parameter: exercise for exercise in MANUAL_BACKWARD_EXERCISES}

# Fresh-input shapes per exercise; the seeds come from the hidden test cells.
HIDDEN_SHAPES_FOR: dict[str, tuple[dict[str, Any], ...]] = {
    "cross_entropy_backward": (
        dict(batch_size=7, n_hidden=13),
        dict(batch_size=50, n_hidden=40, logit_scale=40.0),
        # Logits in the hundreds: exp overflows float32 (past e^88) unless the softmax
        # subtracts each row's maximum first. (×150 stayed below that for every seed.)
        dict(batch_size=3, n_hidden=5, dtype=torch.float32, logit_scale=1000.0),
    ),
    "manual_backward": (
        dict(batch_size=7, n_hidden=13),
        dict(batch_size=50, n_hidden=40),
        dict(batch_size=3, n_hidden=5, dtype=torch.float32),
    ),
}


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


def show_verdict(test: str, passed: bool, problem: str | None, message: str, line: str) -> bool:
    """Show a test's one-line verdict. In a notebook: ONE display_data output whose bundle has
    ``line`` as "text/plain" and the verdict as ``VERDICT_MIME`` JSON (what grading records for
    the class report); elsewhere, the line printed. True when it was displayed in a notebook."""
    from IPython import get_ipython

    if get_ipython() is None:
        print(line)
        return False
    from IPython.display import display

    verdict = {"test": test, "passed": passed, "problem": problem, "message": message}
    display({"text/plain": line, VERDICT_MIME: verdict}, raw=True)
    return True


class GradeFailure(AssertionError):
    """A wrong answer. Shown in the notebook as one line that says what is wrong and where."""

    def __init__(self, message: str, result: CheckResult | None = None, test: str = "training"):
        super().__init__(message)
        self.result = result
        self.test = result.name if result is not None else test

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        from IPython import get_ipython

        line = f"❌ {self}"
        if get_ipython() is not None and not getattr(self, "_shown", False):  # IPython may render twice
            # The failure's verdict, recorded as a display_data output whose "text/plain" is
            # empty: the line itself stays the error's traceback, as before — nbgrader's 0, its
            # Validate button and the feedback show it there, and it is not shown twice.
            result = self.result
            problem, message = (
                (result.problem, result.message) if result is not None else ("training", str(self))
            )
            self._shown = show_verdict(self.test, False, problem, message, "")
        return [line]


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
    """The student's answer to one trial, checked. Errors become a failed result, not a crash."""
    try:
        with time_limit(STUDENT_CALL_SECONDS), warnings_to_stdout():
            got = _call_student(function, trial)
    except StudentTimeout:
        return _failed(
            trial,
            "timeout",
            f"{trial.function} ran for more than {STUDENT_CALL_SECONDS:g} s — an endless loop?",
        )
    except NotImplementedError:
        return _failed(trial, "not_implemented", f"{trial.function} is not implemented yet")
    except Exception as error:  # the student's code raised: report it as the answer's problem
        return _failed(trial, "error", f"{trial.function} raised {type(error).__name__}: {error}")
    return trial.judge(got)


def _failed(trial: Trial, problem: str, message: str) -> CheckResult:
    return CheckResult(trial.target, False, False, False, float("nan"), problem, message, "")


def expect_correct(exercise, function: Callable, case: Case) -> CheckResult:
    """Check ``function`` on ``case``; print the verdict, raise ``GradeFailure`` if wrong."""
    trial = exercise.trial(case)
    result = run_trial(function, trial)
    if not result.ok:
        raise GradeFailure(f"{result.name} on {case.description}: {result.message}", result)
    show_verdict(result.name, True, None, result.message, str(result))
    return result


def test_on(exercise, function: Callable, case: Case) -> PrintedResult:
    """The visible test: the notebook's own batch."""
    return _printed(expect_correct(exercise, function, case))


def hidden_specs_for(exercise, seeds: Iterable[int]) -> list[CaseSpec]:
    shapes = HIDDEN_SHAPES_FOR.get(exercise.function, HIDDEN_SHAPES)
    return [CaseSpec(seed=seed, **shape) for seed, shape in zip(seeds, shapes, strict=True)]


def test_hidden(exercise, function: Callable, seeds: Iterable[int]) -> PrintedResults:
    """The hidden tests: fresh seeds, batch sizes, hidden sizes and dtypes."""
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
    show_verdict("training", True, None, "ok", str(result))
    return result
