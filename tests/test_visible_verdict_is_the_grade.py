"""Issue 28.1: the notebook's ✅ or ❌ is the grade, notebook 4's training test included.

Mistakes that learners made in ``manual_backward`` run twice: as their students run them (each
visible test cell of notebook 4, through ``backprop_ninja.testing``) and as the grader grades
them (no hidden test runs in the kernel: the verifier decides, on a submitted notebook, in its
own process, on fresh inputs of the same kinds). For every test, the visible verdict must be
the grade; the training test must name the first wrong gradient and its cause instead of
reporting the losses.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from submission_notebooks import reference_answers, source_notebook, submission

from backprop_ninja.cells import ANSWER_PRELUDE
from backprop_ninja.judge.problems import Problem
from backprop_ninja.maintainer.catalogue import notebook_case
from backprop_ninja.model import PARAM_NAMES
from backprop_ninja.testing import MANUAL_BACKWARD, GradeFailure, test_on, test_training
from backprop_ninja.verify import verify_notebook

pytestmark = pytest.mark.pipeline  # the verifier's child process, once per mistake

NB4 = "4_full_training"
RIGHT = reference_answers(NB4)["manual_backward"]


def edited(old: str, new: str) -> str:
    assert RIGHT.count(old) == 1, old
    return RIGHT.replace(old, new)


# name → (manual_backward's answer cell, what the training test's message must say)
MISTAKES = {
    "n_embd = 10 hard-coded in dC": (
        edited('demb.view(-1, params["C"].shape[1])', "demb.view(-1, 10)"),
        ("hard-coded n_embd 10", "params['C'].shape[1]"),
    ),
    "h changed in place before dW2": (
        edited(
            '    dW2 = cache["h"].T @ dlogits\n    db2 = dlogits.sum(0)\n    dhpreact = (1 - cache["h"]**2) * dh\n',
            '    h2 = cache["h"]\n    h2 **= 2  # cache["h"] is h² from here on\n    dhpreact = (1 - h2) * dh\n'
            '    dW2 = cache["h"].T @ dlogits\n    db2 = dlogits.sum(0)\n',
        ),
        ("dW2 is wrong", "changes cache['h'] in place"),
    ),
    "batch size 32 hard-coded": (
        edited(
            'dlogits = cross_entropy_backward(cache["logits"], Yb)',
            'dlogits = F.softmax(cache["logits"], 1)\n    dlogits[range(32), Yb] -= 1\n    dlogits = dlogits / 32',
        ),
        ("hard-coded batch size 32",),
    ),
}
TESTS = [f"test_d{parameter}" for parameter in PARAM_NAMES] + ["test_training"]


def passes(test, *args, **kwargs) -> tuple[bool, str, Problem | None]:
    """A test cell's verdict: (passed, its ❌ line or what it printed, the problem it names)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            test(*args, **kwargs)
        except GradeFailure as failure:
            return (
                False,
                str(failure),
                failure.result.problem if failure.result is not None else Problem.TRAINING,
            )
    return True, out.getvalue(), None


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    return folder, source_notebook(folder, NB4)


def verdicts_of(name: str, code: str, sources):
    """(each test's visible verdict, run as the notebook's cells run it; each test's grade:
    the verifier's verdict on the submitted notebook; the verifier's verdicts)."""
    namespace: dict = {"__name__": "__main__"}
    exec(compile(ANSWER_PRELUDE + code, "<answer cell>", "exec"), namespace)
    manual_backward = namespace["manual_backward"]
    case = notebook_case(NB4)
    visible = {f"test_d{p}": passes(test_on, MANUAL_BACKWARD[p], manual_backward, case) for p in PARAM_NAMES}
    visible["test_training"] = passes(test_training, manual_backward)
    folder, source = sources
    path = submission(folder, NB4, {"manual_backward": code}, (), name=name.replace(" ", "_"))
    verifier = verify_notebook(path, NB4, source_path=source, seed=7)
    return visible, {test: verifier[test].ok for test in TESTS}, verifier


@pytest.mark.parametrize("name", list(MISTAKES))
def test_the_visible_verdict_of_every_test_is_the_grade(name, sources):
    code, says = MISTAKES[name]
    visible, grade, verifier = verdicts_of(name, code, sources)
    assert {test: ok for test, (ok, _, _) in visible.items()} == grade
    problem = visible["test_training"][2]
    assert problem is not None
    assert verifier["test_training"].problem == problem.graded()  # one check, one verdict
    assert not grade["test_training"], "each of these mistakes costs the training test's points"
    training_line = visible["test_training"][1]
    assert training_line.startswith("every gradient must be right before training counts")
    assert all(phrase in training_line for phrase in says), training_line


def test_the_right_answer_passes_every_test_visibly_and_in_the_grade(sources):
    visible, grade, _ = verdicts_of("right", RIGHT, sources)
    assert all(ok for ok, _, _ in visible.values()), visible
    assert all(grade.values()), grade
    assert "✅ training: validation loss" in visible["test_training"][1]
