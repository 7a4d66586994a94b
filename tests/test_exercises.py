"""The exercises' trials and the notebook test helpers, on known mistakes."""

import pytest
import torch
import torch.nn.functional as F

from backprop_ninja import testing
from backprop_ninja.cases import Case, CaseSpec
from backprop_ninja.course import NOTEBOOKS
from backprop_ninja.judge import calling
from backprop_ninja.judge.exercises import ATOMIC_BY_TARGET, ATOMIC_EXERCISES, GRADED_TESTS
from backprop_ninja.model import PARAM_NAMES, consumers
from backprop_ninja.testing import GradeFailure, expect_correct, run_trial

CASE = Case.fresh(CaseSpec(seed=3, batch_size=9, n_hidden=6))
RANDOM_UPSTREAM = Case.fresh(CaseSpec(seed=4, batch_size=11, n_hidden=6, random_upstream=True))


def result_of(exercise, function, case=CASE):
    return run_trial(function, exercise.trial(case))


def test_there_are_26_atomic_exercises_in_the_lectures_order():
    targets = [e.target for e in ATOMIC_EXERCISES]
    assert len(targets) == 26
    assert targets[0] == "logprobs"
    assert targets[-1] == "C"
    assert set(targets) >= set(PARAM_NAMES)


def test_every_notebook_grades_something_and_grade_ids_are_unique():
    assert tuple(GRADED_TESTS) == NOTEBOOKS
    assert len(GRADED_TESTS["1_atomic_backprop"]) == 26
    assert set(GRADED_TESTS["4_full_training"]) == {f"test_d{p}" for p in PARAM_NAMES}


def test_every_upstream_argument_is_the_gradient_of_a_consumer():
    for exercise in ATOMIC_EXERCISES:
        upstream = {a[1:] for a in exercise.args if a.startswith("d")}
        assert upstream <= set(consumers(exercise.target)), exercise.target


def test_random_upstream_differs_from_the_true_gradient_but_is_reproducible():
    a, b = RANDOM_UPSTREAM.upstream("dprobs"), RANDOM_UPSTREAM.upstream("dprobs")
    assert torch.equal(a, b)
    assert not torch.allclose(a, RANDOM_UPSTREAM.reference.grad("dprobs"))


def test_forgotten_plus_equals_on_dcounts_is_named():
    one_branch = lambda counts_sum_inv, dprobs, dcounts_sum: counts_sum_inv * dprobs  # noqa: E731
    result = result_of(ATOMIC_BY_TARGET["counts"], one_branch)
    assert result.problem == "alternative"
    assert "only the branch through probs" in result.message
    assert "+=" in result.message


def test_db2_without_the_sum_over_the_batch_says_which_dim():
    result = result_of(ATOMIC_BY_TARGET["b2"], lambda dlogits: dlogits)
    assert result.problem == "shape"
    assert "sum its gradient over dim 0 (without keepdim)" in result.message


def test_dlogits_not_divided_by_n_is_named():
    def undivided(logits, Yb):
        d = F.softmax(logits, 1)
        d[range(logits.shape[0]), Yb] -= 1
        return d

    result = result_of(testing.CROSS_ENTROPY, undivided)
    assert result.problem == "factor"
    assert "divide by n" in result.message


def test_biased_variance_in_fused_batchnorm_is_named():
    def biased(dhpreact, bngain, bnraw, bnvar_inv):
        n = dhpreact.shape[0]
        return bngain * bnvar_inv / n * (n * dhpreact - dhpreact.sum(0) - bnraw * (dhpreact * bnraw).sum(0))

    result = result_of(testing.BATCHNORM, biased, RANDOM_UPSTREAM)
    assert result.problem == "alternative"
    assert "Bessel" in result.message


def test_zeros_for_db1_pass_on_the_true_upstream_but_fail_on_an_arbitrary_one():
    zeros = lambda dhprebn: torch.zeros(dhprebn.shape[1], dtype=dhprebn.dtype)  # noqa: E731
    assert result_of(ATOMIC_BY_TARGET["b1"], zeros).ok  # batchnorm really makes db1 zero
    assert not result_of(ATOMIC_BY_TARGET["b1"], zeros, RANDOM_UPSTREAM).ok


def test_an_answer_hard_coded_for_the_notebooks_batch_fails_the_hidden_tests():
    exercise = ATOMIC_BY_TARGET["probs"]
    answer = exercise.trial(CASE).expected
    assert result_of(exercise, lambda probs, dlogprobs: answer).ok
    with pytest.raises(GradeFailure, match="shape"):
        testing.test_hidden(exercise, lambda probs, dlogprobs: answer, seeds=(1, 2, 3))


def test_student_errors_become_failed_results_not_crashes():
    def broken(dlogits):
        raise ValueError("oops")

    result = result_of(ATOMIC_BY_TARGET["b2"], broken)
    assert result.problem == "error"
    assert "ValueError: oops" in result.message

    def stub(dlogits):
        raise NotImplementedError()

    assert result_of(ATOMIC_BY_TARGET["b2"], stub).problem == "not_implemented"


def test_inputs_carry_no_autograd_graph_and_are_private_copies():
    seen = {}

    def spy(dlogits):
        seen["requires_grad"] = dlogits.requires_grad or dlogits.grad_fn is not None
        seen["grad_enabled"] = torch.is_grad_enabled()
        dlogits.zero_()  # must not corrupt the case
        return dlogits.sum(0)

    trial = ATOMIC_BY_TARGET["b2"].trial(CASE)
    before = trial.args[0].clone()
    run_trial(spy, trial)
    assert seen == {"requires_grad": False, "grad_enabled": False}
    assert torch.equal(trial.args[0], before)


def test_a_failure_renders_as_one_line_in_the_notebook():
    with pytest.raises(GradeFailure) as info:
        expect_correct(ATOMIC_BY_TARGET["b2"], lambda dlogits: dlogits, CASE)
    (line,) = info.value._render_traceback_()
    assert line.startswith("❌ db2 on fresh inputs (seed 3, n=9")
    assert "sum its gradient over dim 0" in line
    assert isinstance(info.value, AssertionError)


def test_manual_backward_must_return_a_dict():
    result = result_of(testing.MANUAL_BACKWARD["W1"], lambda params, cache, Xb, Yb: [1, 2])
    assert result.problem == "keys"
    assert "dict" in result.message


def test_stage_report_prints_the_lecture_table_and_missing_functions(capsys):
    results = testing.stage_report(["h", "W2"], {"grad_h": lambda W2, dlogits: dlogits @ W2.T}, CASE)
    out = capsys.readouterr().out
    assert [r.ok for r in results] == [True, False]
    assert "grad_W2 is not defined" in out
    assert "1/2 correct" in out


def test_an_endless_student_function_is_stopped_with_an_explanation(monkeypatch):
    monkeypatch.setattr(calling, "STUDENT_CALL_SECONDS", 0.2)

    def endless(dlogits):
        while True:
            try:  # noqa: SIM105 (as a student writes it)
                pass
            except Exception:  # a bare except in the student's code must not swallow the stop
                pass

    result = result_of(ATOMIC_BY_TARGET["b2"], endless)
    assert result.problem == "timeout"
    assert "endless loop" in result.message


def test_what_a_correct_answer_writes_to_stderr_goes_to_stdout(capsys):
    # nbgrader gives 0 points to a test cell that wrote to stderr (a warning does that too).
    import sys

    def chatty(dlogits):
        print("implicit dimension choice", file=sys.stderr)
        return dlogits.sum(0)

    assert result_of(ATOMIC_BY_TARGET["b2"], chatty).ok
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "implicit dimension choice" in captured.out
