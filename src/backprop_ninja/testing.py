"""What the notebooks' test cells call: run a student function, check it, explain a failure.

A visible test runs the student's function on the notebook's own batch and then on the same
kinds of fresh inputs as the grader, from public seeds; the grader's trusted verifier
(``backprop_ninja.verify``) runs it again, outside the student's kernel, on fresh inputs from
seeds it draws for each grading run. No hidden test runs in the kernel, so nothing there is
secret. So the notebook's ✅ or ❌ is the grade. A failure raises ``GradeFailure`` whose notebook display is
one readable line, not a traceback; a right answer that changes its arguments in place, or
whose cell also compares with autograd, passes with a warning.
"""

from __future__ import annotations

import functools
import linecache
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

import torch

from .cases import PUBLIC_SEEDS, Case, CaseSpec, fresh_specs
from .judge import messages
from .judge.calling import call, warnings_to_stdout
from .judge.chain import ORDER
from .judge.check import CheckResult, check
from .judge.errors import install_name_error_handler
from .judge.exercises import (
    ATOMIC_BY_TARGET,
    GRADED_TESTS,
    MANUAL_BACKWARD_EXERCISES,
    BatchnormExercise,
    CrossEntropyExercise,
    Trial,
)
from .judge.problems import Problem
from .judge.training_check import TRAINING_BOUND, TRAINING_STEPS, TrainingResult, check_training
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
_call = call
_fresh_case = functools.lru_cache(maxsize=32)(Case.fresh)  # the same public cases for every test

ATOMIC = ATOMIC_BY_TARGET
CROSS_ENTROPY = CrossEntropyExercise()
BATCHNORM = BatchnormExercise()
MANUAL_BACKWARD = {exercise.parameter: exercise for exercise in MANUAL_BACKWARD_EXERCISES}

ANSWER_FUNCTIONS = {e.function for tests in GRADED_TESTS.values() for e in tests.values()}
install_name_error_handler(ANSWER_FUNCTIONS)  # a test cell run out of order says which cell to run


def run_trial(function: Callable, trial: Trial) -> CheckResult:
    """The student's answer to one trial, checked by the verifier's own check
    (``Trial.verdict``). Errors become a failed result, not a crash.

    A right answer that changes its arguments in place, or whose answer cell also compares
    with autograd, passes with a note; an answer that uses autograd fails, as it will when graded.
    """
    return _verdicts(function, [trial])[0]


def _verdicts(function: Callable, trials: list[Trial]) -> list[CheckResult]:
    """One call of ``function`` (on the first trial's inputs), judged for every trial."""
    findings, notes = _integrity(function)
    outcome = _call(function, trials[0])
    if findings and outcome.problem in (None, Problem.ERROR):
        return [CheckResult.failed(t.target, Problem.AUTOGRAD, findings[0]) for t in trials]
    results = [trial.verdict(outcome) for trial in trials]
    return [replace(r, notes=(*r.notes, *notes)) if notes else r for r in results]


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


def expect_correct(exercise, function: Callable, case: Case, *, quiet: bool = False) -> CheckResult:
    """Check ``function`` on ``case``; print the verdict (unless ``quiet``), raise ``GradeFailure`` if wrong."""
    trial = exercise.trial(case)
    result = run_trial(function, trial)
    if not result.ok:
        raise GradeFailure(_failure_line(result, case), result)
    if not quiet:
        show_verdict(result.name, True, None, result.message, str(result))
    return result


def _where(case: Case) -> str:
    return (
        case.description if case.description.startswith("this") else messages.fresh_inputs(case.description)
    )


def _failure_line(result: CheckResult, case: Case) -> str:
    """``<gradient> on <inputs>: <why> (<notes>)``: what a test cell's ❌ says."""
    notes = "".join(f" ({note})" for note in result.notes)
    return messages.on_inputs(result.name, _where(case), result.message) + notes


def test_on(exercise, function: Callable, case: Case) -> PrintedResult:
    """The visible test: the notebook's own batch, then the same kinds of fresh inputs as the
    verifier's (other sizes, dtypes, upstream gradients, large logits) from public seeds."""
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
    """The exercise's kinds of fresh inputs, the i-th from the i-th seed."""
    return fresh_specs(exercise.function, list(seeds))


def test_hidden(exercise, function: Callable, seeds: Iterable[int]) -> PrintedResults:
    """The visible test's kinds of fresh inputs, from other seeds. No notebook calls it (the
    grader's verifier checks those inputs, outside the kernel); the mistake catalogue
    (``maintainer.catalogue``) and the tests use it to show that the verdict does not hang on
    the public seeds."""
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
            else CheckResult.failed(trial.target, Problem.MISSING, messages.not_defined(exercise.function))
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
            else CheckResult.failed(name, Problem.MISSING, "not computed")
        )
        print(result)
        results.append(result)
    print(f"{sum(r.ok for r in results)}/{len(results)} correct")
    return results


def test_training(backward: Callable, **options) -> TrainingResult:
    """Notebook 4's training test. Its points need every gradient of ``backward`` right, so
    it first checks all seven on the verifier's kinds of fresh inputs, with the verifier's
    check, and names the first wrong one (in the order the backward pass reaches them); then
    it trains a fresh model (``judge.training_check.check_training``, ``options``)."""
    for spec in hidden_specs_for(MANUAL_BACKWARD["C"], PUBLIC_SEEDS):
        case = _fresh_case(spec)
        trials = [MANUAL_BACKWARD[parameter].trial(case) for parameter in ORDER]
        failed = next((r for r in _verdicts(backward, trials) if not r.ok), None)
        if failed is not None:
            why = _failure_line(failed, case)
            raise GradeFailure(
                f"every gradient must be right before training counts: {why}", failed, "training"
            )
    return check_training(backward, **options)


# Package functions named like tests: pytest must not collect them where they are imported.
for _function in (test_on, test_hidden, test_training):
    setattr(_function, "__test__", False)  # noqa: B010
