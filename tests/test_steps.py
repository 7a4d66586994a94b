"""Issue 28 point 7: notebook 4's first wrong step, found among manual_backward's local
variables and judged by the check of the notebook that teaches it — in the notebook's test and
in the verifier alike — and never blamed where the returned gradients contradict it."""

from __future__ import annotations

import sys

import torch
from submission_notebooks import ANSWERS

from backprop_ninja.cells import ANSWER_PRELUDE
from backprop_ninja.judge.calling import locals_at_return
from backprop_ninja.judge.check import TOLERANCES, check
from backprop_ninja.judge.diagnosis import reordered_entries
from backprop_ninja.judge.exercises import GRADED_TESTS
from backprop_ninja.judge.problems import Problem
from backprop_ninja.maintainer.catalogue import notebook_case
from backprop_ninja.testing import GradeFailure, test_on

NB4 = "4_full_training"
RIGHT = ANSWERS["manual_backward"]


def message_for(code: str, test: str) -> str:
    """The visible test's message for ``manual_backward`` in ``code`` on the notebook's batch."""
    namespace: dict = {}
    exec(compile(ANSWER_PRELUDE + code, "<answer>", "exec"), namespace)
    exercise = GRADED_TESTS[NB4][test]
    try:
        test_on(exercise, namespace["manual_backward"], notebook_case(NB4))
    except GradeFailure as failure:
        return str(failure)
    raise AssertionError(f"{test} passed")


def test_the_locals_of_the_function_are_kept_as_it_returns_and_the_previous_hook_is_put_back():
    def student(x):
        doubled = x * 2
        label = "not a tensor"
        return doubled + 1, label

    seen: list[str] = []

    def earlier_hook(frame, event, arg):
        seen.append(event)

    sys.setprofile(earlier_hook)
    try:
        found: dict = {}
        with locals_at_return(student, found):
            student(torch.ones(3))
        assert sys.getprofile() is earlier_hook
    finally:
        sys.setprofile(None)
    assert set(found) == {"x", "doubled"}
    assert torch.equal(found["doubled"], torch.full((3,), 2.0))


def test_a_function_that_is_not_plain_python_leaves_no_locals():
    found: dict = {}
    with locals_at_return(torch.tanh, found):
        torch.tanh(torch.ones(2))
    assert found == {}


def test_tanh_applied_twice_is_named_by_notebook_1s_check_of_dhpreact():
    wrong = RIGHT.replace('(1 - cache["h"]**2) * dh', '(1 - torch.tanh(cache["h"])**2) * dh')
    message = message_for(wrong, "test_dbngain")
    assert "dhpreact is the first wrong step (dh before it is right)" in message
    assert "tanh applied twice" in message


def test_a_view_in_another_order_is_named_at_demb():
    wrong = RIGHT.replace(
        'demb = dembcat.view(cache["emb"].shape)',
        "n, B, D = cache['emb'].shape\n    demb = dembcat.view(n, D, B).transpose(1, 2).contiguous()",
    )
    message = message_for(wrong, "test_dC")
    assert "demb is the first wrong step (dembcat before it is right)" in message
    assert "wrong order" in message


def test_a_step_the_returned_gradient_does_not_come_from_is_never_blamed():
    # dlogits lacks its / n, but dW2 and db2 divide: the step is right where it counts; the
    # real mistake (1 − hpreact² would be named; here an unknown scaling of dhpreact) is later.
    wrong = (
        RIGHT.replace("return d / n", "return d")
        .replace('dW2 = cache["h"].T @ dlogits', 'dW2 = cache["h"].T @ dlogits / Xb.shape[0]')
        .replace("db2 = dlogits.sum(0)", "db2 = dlogits.sum(0) / Xb.shape[0]")
        .replace('dh = dlogits @ params["W2"].T', 'dh = dlogits @ params["W2"].T / Xb.shape[0]')
        .replace('(1 - cache["h"]**2) * dh', '(1 - cache["h"]**2) * dh * (1 + cache["h"])')
    )
    message = message_for(wrong, "test_dbnbias")
    assert "dlogits" not in message.split(" — ", 1)[-1]
    assert "dhpreact is the first wrong step (dh before it is right)" in message


def test_a_wrong_local_whose_input_is_unknown_is_not_blamed():
    # dh is computed inside an expression, never named: dhpreact's input is not known right.
    wrong = RIGHT.replace('    dh = dlogits @ params["W2"].T\n', "").replace(
        '(1 - cache["h"]**2) * dh', '(1 - torch.tanh(cache["h"])**2) * (dlogits @ params["W2"].T)'
    )
    message = message_for(wrong, "test_dbngain")
    assert "first wrong step" not in message
    assert "look at dh = dlogits @ W2.T or the tanh step" in message


def test_the_right_numbers_in_the_wrong_places_are_a_reordering_and_a_near_constant_is_not():
    allowed = TOLERANCES[torch.float64].allowed
    expected = torch.randn(4, 3, 5, dtype=torch.float64)
    shuffled = expected.reshape(4, 5, 3).transpose(1, 2).contiguous()
    said = reordered_entries(shuffled, expected, allowed)
    assert said is not None
    assert "wrong places" in said
    assert reordered_entries(expected.clone(), expected, allowed) is None
    mostly_zero = torch.zeros(6, 4, dtype=torch.float64)
    mostly_zero[0, 0] = 1.0
    assert reordered_entries(mostly_zero.flip(0), mostly_zero, allowed) is None
    result = check("dx", shuffled, expected)
    assert result.problem is Problem.TRANSPOSED


def test_an_input_changed_in_place_comes_first_when_no_formula_explains_the_wrong_answer():
    wrong = RIGHT.replace(
        '    dhpreact = (1 - cache["h"]**2) * dh\n',
        '    hh = cache["h"]\n    hh **= 2  # the learner meant a new tensor\n    dhpreact = (1 - hh) * dh\n',
    ).replace('dW2 = cache["h"].T @ dlogits', "dW2 = hh.T @ dlogits")
    # dW2 is computed after the change, from the squared h: nothing but the change explains it
    wrong = wrong.replace("    dW2 = hh.T @ dlogits\n", "").replace(
        "    return dict(", "    dW2 = hh.T @ dlogits\n    return dict("
    )
    message = message_for(wrong, "test_dW2")
    assert "manual_backward changes cache['h'] in place, so what it computes after the change" in message
    assert "⚠" not in message


def test_the_step_the_stage_names_is_not_named_twice():
    wrong = RIGHT.replace("return bngain * bnvar_inv / n *", "return bnvar_inv / n *")
    message = message_for(wrong, "test_dW1")
    assert message.count("the batchnorm step") == 1, message
    assert "missing bngain" in message
