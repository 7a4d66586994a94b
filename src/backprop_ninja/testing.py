"""What the notebooks' test cells call: run a student function, check it, explain a failure.

A visible test runs the student's function on the notebook's own batch; the hidden tests
(nbgrader strips them from the student version) run it on fresh inputs. A failure raises
``GradeFailure`` whose notebook display is one readable line, not a traceback.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch

from .check import CheckResult, check
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

# Captured when this module is imported, before any student cell runs, so that a student
# cell that reassigns these names in torch or in this package does not reach the tests.
_check = check
_call_student = call_student
_fresh_case = Case.fresh

ATOMIC = ATOMIC_BY_TARGET
CROSS_ENTROPY = CrossEntropyExercise()
BATCHNORM = BatchnormExercise()
MANUAL_BACKWARD = {exercise.parameter: exercise for exercise in MANUAL_BACKWARD_EXERCISES}

# Fresh-input shapes per exercise; the seeds come from the hidden test cells.
HIDDEN_SHAPES_FOR = {
    "cross_entropy_backward": (
        dict(batch_size=7, n_hidden=13),
        dict(batch_size=50, n_hidden=40, logit_scale=40.0),
        dict(batch_size=3, n_hidden=5, dtype=torch.float32, logit_scale=150.0),
    ),
    "manual_backward": (
        dict(batch_size=7, n_hidden=13),
        dict(batch_size=50, n_hidden=40),
        dict(batch_size=3, n_hidden=5, dtype=torch.float32),
    ),
}


class GradeFailure(AssertionError):
    """A wrong answer. Shown in the notebook as one line that says what is wrong and where."""

    def __init__(self, message: str, result: CheckResult | None = None):
        super().__init__(message)
        self.result = result

    def _render_traceback_(self):  # IPython shows this instead of the traceback
        return [f"❌ {self}"]


def run_trial(function: Callable, trial: Trial) -> CheckResult:
    """The student's answer to one trial, checked. Errors become a failed result, not a crash."""
    try:
        got = _call_student(function, trial)
    except NotImplementedError:
        return _failed(trial, "not_implemented", f"{trial.function} is not implemented yet")
    except Exception as error:  # the student's code raised: report it as the answer's problem
        return _failed(trial, "error", f"{trial.function} raised {type(error).__name__}: {error}")
    return _check(trial.target, got, trial.expected, batch_size=trial.batch_size,
                  alternatives=trial.alternatives)


def _failed(trial: Trial, problem: str, message: str) -> CheckResult:
    return CheckResult(trial.target, False, False, False, float("nan"), problem, message, "")


def expect_correct(exercise, function: Callable, case: Case) -> CheckResult:
    """Check ``function`` on ``case``; print the verdict, raise ``GradeFailure`` if wrong."""
    trial = exercise.trial(case)
    result = run_trial(function, trial)
    if not result.ok:
        raise GradeFailure(f"{result.name} on {case.description}: {result.message}", result)
    print(result)
    return result


def test_on(exercise, function: Callable, case: Case) -> CheckResult:
    """The visible test: the notebook's own batch."""
    return expect_correct(exercise, function, case)


def hidden_specs_for(exercise, seeds: Iterable[int]) -> list[CaseSpec]:
    shapes = HIDDEN_SHAPES_FOR.get(exercise.function, HIDDEN_SHAPES)
    return [CaseSpec(seed=seed, **shape) for seed, shape in zip(seeds, shapes, strict=True)]


def test_hidden(exercise, function: Callable, seeds: Iterable[int]) -> list[CheckResult]:
    """The hidden tests: fresh seeds, batch sizes, hidden sizes and dtypes."""
    return [expect_correct(exercise, function, _fresh_case(spec))
            for spec in hidden_specs_for(exercise, seeds)]


def stage_report(targets: Iterable[str], namespace: dict, case: Case) -> list[CheckResult]:
    """The lecture's comparison table for a stage of notebook 1, on the notebook's batch.

    Every gradient is computed from the *true* upstream gradients, so one mistake shows up
    once, where it is made, instead of in everything after it.
    """
    results = []
    for target in targets:
        exercise = ATOMIC[target]
        function = namespace.get(exercise.function)
        trial = exercise.trial(case)
        result = (run_trial(function, trial) if callable(function)
                  else _failed(trial, "missing", f"{exercise.function} is not defined — run its cell"))
        print(result)
        results.append(result)
    passed = sum(r.ok for r in results)
    print(f"{passed}/{len(results)} correct")
    return results
