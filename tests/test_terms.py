"""Issue 28 point 7: diagnoses by structure that never name a cause the evidence contradicts —
term fits (judge/terms.py), precision before factors, shapes before sizes, notebook 4's
localisation by the gradients after the wrong one and by other keys' right values."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from backprop_ninja.cases import Case, CaseSpec
from backprop_ninja.judge import chain
from backprop_ninja.judge.calling import Outcome
from backprop_ninja.judge.check import TOLERANCES, check, constant_ratio, explain_shape
from backprop_ninja.judge.errors import likely_cause
from backprop_ninja.judge.exercises import ManualBackwardExercise
from backprop_ninja.judge.problems import Problem
from backprop_ninja.judge.sizes import hard_coded, input_shapes
from backprop_ninja.judge.terms import batchnorm_structure, cross_entropy_structure, fit

SIZES = {"n": 7, "H": 13, "V": 11, "D": 4, "B": 2}
ALLOWED = TOLERANCES[torch.float64].allowed


def logits_and_targets(n=7, V=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, V, generator=g, dtype=torch.float64) * 2, torch.randint(0, V, (n,), generator=g)


def right_dlogits(logits, Yb):
    return (F.softmax(logits, 1) - F.one_hot(Yb, logits.shape[1]).to(logits.dtype)) / logits.shape[0]


# ------------------------------------------------------------------------- term fits
def test_a_fit_recovers_each_terms_coefficient_and_refuses_what_the_terms_cannot_make():
    a, b = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    coefficients = fit(2 * a - 0.25 * b, (a, b), ALLOWED)
    assert coefficients is not None
    assert abs(coefficients[0] - 2.0) < 1e-12
    assert abs(coefficients[1] + 0.25) < 1e-12
    assert fit(a * b, (a, b), ALLOWED) is None
    assert fit(a, (a, 2 * a), ALLOWED) is None  # dependent terms: any split would be a guess


def test_the_targets_minus_one_not_divided_by_n_is_named_as_that_term():
    logits, Yb = logits_and_targets()
    got = F.softmax(logits, 1) / 7 - F.one_hot(Yb, 11).to(logits.dtype)
    problem, message = cross_entropy_structure(logits, Yb).explain(got, ALLOWED, SIZES) or (None, "")
    assert problem is Problem.TERM
    assert "the target's −1" in message
    assert "not divided by n = 7" in message
    assert "softmax term" not in message  # the softmax term is right: it is not blamed


def test_a_softmax_without_its_normalisation_is_named_from_the_wrong_tensor():
    logits, Yb = logits_and_targets(seed=1)
    got = (logits.exp() - F.one_hot(Yb, 11).to(logits.dtype)) / 7
    _, message = cross_entropy_structure(logits, Yb).explain(got, ALLOWED, SIZES) or (None, "")
    assert "softmax term" in message
    assert "row sum" in message


def test_a_uniformly_scaled_or_unrelated_answer_gets_no_term_diagnosis():
    logits, Yb = logits_and_targets(seed=2)
    structure = cross_entropy_structure(logits, Yb)
    assert structure.explain(3 * right_dlogits(logits, Yb), ALLOWED, SIZES) is None  # a constant factor
    assert structure.explain(torch.randn(7, 11, dtype=torch.float64), ALLOWED, SIZES) is None


def test_batchnorms_projection_term_left_outside_the_scale_is_named():
    g = torch.Generator().manual_seed(3)
    d, r = (torch.randn(9, 5, generator=g, dtype=torch.float64) for _ in range(2))
    gain, inv = (
        torch.rand(1, 5, generator=g, dtype=torch.float64) + 0.5,
        torch.rand(1, 5, dtype=torch.float64) + 1,
    )
    n = 9
    got = gain * inv / n * (n * d - d.sum(0)) - n / (n - 1) * r * (d * r).sum(0)
    _, message = batchnorm_structure(d, gain, r, inv).explain(got, ALLOWED, {"n": 9}) or (None, "")
    assert message.startswith("the projection term")
    assert "bngain · bnvar_inv" in message
    assert "mean term" not in message


# ---------------------------------------------------------------- the evidence first
def test_float32_rounding_is_a_precision_loss_never_a_factor_of_one():
    logits, Yb = logits_and_targets(seed=4)
    got = F.softmax(logits.float(), 1).double()
    got[range(7), Yb] -= 1
    got = got / 7
    expected = right_dlogits(logits, Yb)
    assert constant_ratio(got, expected) is None
    result = check("dlogits", got, expected, sizes=SIZES)
    assert not result.ok
    assert result.problem is Problem.PRECISION
    assert "float32" in result.message
    assert "factor" not in result.message


def test_a_real_factor_is_still_a_factor():
    logits, Yb = logits_and_targets(seed=5)
    expected = right_dlogits(logits, Yb)
    result = check("dlogits", expected * 7, expected, sizes=SIZES)
    assert result.problem is Problem.FACTOR
    assert "divide by n" in result.message


def test_all_zeros_names_an_integer_division_as_a_possible_cause():
    expected = torch.randn(7, 13, dtype=torch.float64)
    result = check("dbndiff2", torch.zeros(7, 13, dtype=torch.float64), expected, sizes=SIZES)
    assert result.problem is Problem.ZERO
    assert "integer division" in result.message
    assert "upstream" not in result.message  # nothing upstream was given to this call
    given = {"bndiff2": (7, 13), "dbnvar": (1, 13)}
    result = check("dbndiff2", torch.zeros(7, 13, dtype=torch.float64), expected, sizes=SIZES, inputs=given)
    assert result.message.startswith(
        "your answer is all zeros, but this gradient is not: compute it from the upstream"
    )
    assert "integer division" in result.message


def test_fewer_columns_than_the_vocabulary_is_one_hot_without_num_classes_not_a_hard_coded_size():
    # 10 is V − 1 here and the lecture's n_embd: only the vocabulary can be this dimension.
    message = explain_shape((7, 10), (7, 11), SIZES)
    assert "num_classes" in message
    assert "n_embd" not in message
    assert "vocabulary size 27" in explain_shape((7, 27), (7, 11), SIZES)  # the lecture's V: hard-coded
    assert "num_classes" in (
        likely_cause("The size of tensor a (11) must match the size of tensor b (10)", SIZES) or ""
    )


def test_a_size_is_hard_coded_only_where_that_dimension_can_be_it():
    sizes = {"n": 7, "H": 13, "V": 27, "D": 4, "B": 2}  # V here is the lecture's: 27 is no mistake
    message = explain_shape((7, 10), (7, 27), sizes)
    assert "hard-coded" not in message


def test_a_one_dimensional_answer_with_one_entry_per_example_is_summed_over_the_wrong_dim():
    assert "sum over dim 0" in explain_shape((7,), (13,), SIZES)


# ------------------------------------------------------------------------- notebook 4
def test_a_wrong_gradient_with_right_gradients_after_it_is_its_own_formula():
    right = {"W2": True, "b2": True, "bngain": False, "bnbias": True, "W1": True, "b1": True, "C": True}
    message = chain.stage_message(right, "bngain")
    assert "dbngain's own formula" in message
    assert "tanh" not in message
    assert "dh =" not in message


def test_gradients_swapped_between_keys_are_named_as_put_under_the_wrong_keys():
    case = Case.fresh(CaseSpec(seed=11, batch_size=9, n_hidden=6))
    grads = {p: case.reference.grad(p).clone() for p in case.params}
    grads["bngain"], grads["bnbias"] = grads["bnbias"], grads["bngain"]
    trial = ManualBackwardExercise("bngain").trial(case)
    result = trial.verdict(Outcome.answered(grads))
    assert not result.ok
    assert "holds dbnbias's right value" in result.message
    assert "wrong keys" in result.message


def test_when_nothing_fits_the_message_counts_the_wrong_entries_and_points_at_the_largest():
    expected = torch.randn(4, 5, dtype=torch.float64)
    got = expected.clone()
    got[1, 1] += 1.0
    got[2, 3] += 5.0  # the largest error
    result = check("dx", got, expected, sizes=SIZES)
    assert result.problem is Problem.MISMATCH
    assert result.message.startswith("2 of 20 entries are off, the largest at (2, 3)")


# ------------------------------------------------------------------ hard-coded sizes
def test_a_hard_coded_size_is_told_where_the_function_can_read_it_from_its_own_inputs():
    inputs = input_shapes((torch.zeros(7, 11), torch.zeros(7, dtype=torch.long)), ("logprobs", "Yb"))
    said = explain_shape((7, 27), (7, 11), SIZES, inputs)
    assert "a hard-coded vocabulary size 27 (here it is 11" in said
    assert said.endswith("use logprobs.shape[1]")


def test_every_lecture_size_hard_coded_in_one_view_is_named_with_where_to_read_it():
    params = {"C": torch.zeros(11, 4)}
    cache = {"emb": torch.zeros(7, 2, 4)}
    inputs = input_shapes((params, cache, torch.zeros(7, 2)), ("params", "cache", "Xb"))
    said = likely_cause("shape '[32, 3, 10]' is invalid for input of size 56", SIZES, inputs)
    assert said is not None
    assert "batch size 32 (here 7), block size 3 (here 2), n_embd 10 (here 4)" in said
    assert said.endswith("cache['emb'].shape[0], cache['emb'].shape[1], params['C'].shape[1]")
    # one number alone is the single-size advice, and a size that is right here is no advice
    assert likely_cause("shape '[32, 8]' is invalid", SIZES, inputs) == hard_coded(32, SIZES, inputs=inputs)
    assert likely_cause("shape '[7, 2, 4]' is invalid", SIZES, inputs) is None


def test_a_matrix_product_that_fails_names_its_operands_by_their_shapes_and_the_transpose_to_take():
    sizes = {"n": 32, "H": 64, "V": 27, "D": 10, "B": 3}
    said = likely_cause(
        "mat1 and mat2 shapes cannot be multiplied (32x27 and 64x27)",
        sizes,
        {"W2": (64, 27), "dlogits": (32, 27)},
    )
    assert said == (
        "the inner sizes of a matrix product must agree: dlogits is 32×27 and W2 is 64×27 (27 ≠ 64) "
        "— use W2.T where you have W2"
    )
    # an operand no tensor of the function's has the shape of is not named
    anonymous = likely_cause("mat1 and mat2 shapes cannot be multiplied (32x27 and 30x64)", sizes, {})
    assert anonymous is not None
    assert "the first operand is 32×27 and the second operand is 30×64" in anonymous
    assert anonymous.endswith("a missing or extra .T, or the operands in the wrong order")
