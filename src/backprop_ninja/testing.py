"""What the notebooks' test cells call: run a student function, check it, explain a failure.

A visible test runs the student's function on the notebook's own batch and then on the same
kinds of fresh inputs as the hidden tests, from public seeds; the hidden tests (nbgrader
strips them from the student version) run it on fresh inputs from their own seeds. So the
notebook's ✅ or ❌ is the grade. A failure raises ``GradeFailure`` whose notebook display is
one readable line, not a traceback; a right answer that changes its arguments in place, or
whose cell also compares with autograd, passes with a warning.
"""

from __future__ import annotations

import dataclasses
import functools
import linecache
import re
from collections.abc import Callable, Iterable
from typing import Any

import torch

from .cases import FRESH_SHAPES_FOR, PUBLIC_SEEDS, Case, CaseSpec, fresh_specs
from .judge import chain
from .judge.calling import (
    STUDENT_CALL_SECONDS,
    ResultError,
    StudentTimeout,
    call_student,
    modified_arguments,
    pick_result,
    private_copy,
    time_limit,
    warnings_to_stdout,
)
from .judge.check import CheckResult, check
from .judge.errors import explain_exception, install_name_error_handler
from .judge.exercises import (
    ATOMIC_BY_TARGET,
    GRADED_TESTS,
    MANUAL_BACKWARD_EXERCISES,
    BatchnormExercise,
    CrossEntropyExercise,
    Trial,
)
from .judge.training_check import TRAINING_BOUND, TRAINING_STEPS, TrainingResult, test_training
from .judge.verdicts import GradeFailure, PrintedResult, PrintedResults, printed, show_verdict

__all__ = [  # what the notebooks' cells and the course's tools use
    "ATOMIC",
    "BATCHNORM",
    "CROSS_ENTROPY",
    "MANUAL_BACKWARD",
    "TRAINING_BOUND",
    "TRAINING_STEPS",
    "GradeFailure",
    "TrainingResult",
    "chain_report",
    "expect_correct",
    "hidden_specs_for",
    "run_trial",
    "show_verdict",
    "stage_report",
    "test_hidden",
    "test_on",
    "test_training",
    "warnings_to_stdout",
]

# Captured when this module is imported, before any student cell runs, so that a student
# cell that reassigns these names in torch or in this package does not reach the tests.
_check = check
_call_student = call_student
_fresh_case = functools.lru_cache(maxsize=32)(Case.fresh)  # the same public cases for every test

ATOMIC = ATOMIC_BY_TARGET
CROSS_ENTROPY = CrossEntropyExercise()
BATCHNORM = BatchnormExercise()
MANUAL_BACKWARD = {exercise.parameter: exercise for exercise in MANUAL_BACKWARD_EXERCISES}

# Fresh-input shapes per exercise (cases.FRESH_SHAPES); the seeds come from the test cells.
HIDDEN_SHAPES_FOR: dict[str, tuple[dict[str, Any], ...]] = FRESH_SHAPES_FOR
ANSWER_FUNCTIONS = {e.function for tests in GRADED_TESTS.values() for e in tests.values()}
install_name_error_handler(ANSWER_FUNCTIONS)  # a test cell run out of order says which cell to run


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
    result = trial.judge(got)
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
        show_verdict(result.name, True, None, result.message, str(result))
    return result


def test_on(exercise, function: Callable, case: Case) -> PrintedResult:
    """The visible test: the notebook's own batch, then the same kinds of fresh inputs as the
    hidden tests (other sizes, dtypes, upstream gradients, large logits) from public seeds."""
    result = expect_correct(exercise, function, case, quiet=True)
    specs = hidden_specs_for(exercise, PUBLIC_SEEDS)
    for spec in specs:
        expect_correct(exercise, function, _fresh_case(spec), quiet=True)
    fresh = f"✅ {result.name} is right on {len(specs)} fresh inputs too ({fresh_summary(specs)})"
    show_verdict(result.name, True, None, result.message, f"{result}\n{fresh}")
    return printed(result)


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
