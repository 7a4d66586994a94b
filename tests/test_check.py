"""check(): verdicts, tolerances, and the diagnosis of each common mistake."""

import pytest
import torch

from backprop_ninja.judge.check import TOLERANCES, check, explain_shape

torch.manual_seed(0)
N = 32


def grad(*shape, dtype=torch.float64):
    return torch.randn(shape, dtype=dtype) * 0.01


# ------------------------------------------------------------------------- verdicts
def test_identical_tensors_are_exact():
    g = grad(N, 27, dtype=torch.float32)
    result = check("dlogits", g.clone(), g)
    assert result.ok
    assert result.exact
    assert result.approximate
    assert result.maxdiff == 0
    assert bool(result)
    assert str(result).startswith("✅ dlogits")


def test_float32_rounding_passes_but_is_not_exact():
    expected = grad(N, 64)
    result = check("dhpreact", expected.float(), expected)
    assert result.ok
    assert not result.exact
    assert 0 < result.maxdiff < 1e-8


def test_exactly_zero_gradients_tolerate_rounding_noise():
    # db1 is zero in theory; float32 arithmetic leaves ~1e-10 of noise.
    expected = torch.zeros(64, dtype=torch.float64)
    assert check("db1", torch.full((64,), 3e-9), expected).ok
    assert not check("db1", torch.full((64,), 1e-6), expected).ok


def test_a_small_relative_error_fails_even_on_small_entries():
    # 1% is the size of an n-versus-(n − 1) slip at n ≈ 100, on a gradient of order 1e-5.
    expected = grad(N, 64) * 1e-3
    wrong = expected * (1 + 1e-2)
    assert not check("dW1", wrong, expected).ok
    assert not check("dW1", wrong.float(), expected).ok


def test_tolerances_are_stated():
    assert "1e-04" in str(TOLERANCES[torch.float32])
    assert "1e-09" in str(TOLERANCES[torch.float64])


# --------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    ("got", "problem", "words"),
    [
        (None, "none", "return"),
        ([1.0, 2.0], "not_tensor", "list"),
        (torch.ones(3, dtype=torch.long), "not_float", "int64"),
    ],
)
def test_bad_answers_get_a_clear_message_not_an_exception(got, problem, words):
    result = check("dx", got, torch.ones(3))
    assert not result.ok
    assert result.problem == problem
    assert words in result.message


def test_nan_and_inf_are_reported_with_a_position():
    expected = grad(4, 5)
    got = expected.clone()
    got[2, 3] = float("nan")
    result = check("dprobs", got, expected)
    assert result.problem == "nan"
    assert "(2, 3)" in result.message
    got[2, 3] = float("inf")
    assert check("dprobs", got, expected).problem == "inf"


# ------------------------------------------------------------------------- shapes
def test_wrong_shape_says_which_dim_to_sum_with_keepdim():
    result = check("dbngain", grad(N, 64), grad(1, 64))
    assert result.problem == "shape"
    assert "sum its gradient over dim 0 with keepdim=True" in result.message
    assert "(32, 64)" in result.message
    assert "(1, 64)" in result.message


def test_wrong_shape_without_keepdim():
    assert "sum its gradient over dim 0 (without keepdim)" in explain_shape((32, 27), (27,))
    assert "over dim 1 with keepdim=True" in explain_shape((32, 27), (32, 1))


def test_shape_needing_expansion_and_transposition():
    assert "expand along dim 1" in explain_shape((32, 1), (32, 27))
    assert "transposed" in explain_shape((27, 64), (64, 27))
    assert "keepdim=True" in explain_shape((64,), (1, 64))
    assert ".view(32, 3, 10)" in explain_shape((32, 30), (32, 3, 10))


# ---------------------------------------------------------------------- diagnoses
def test_flipped_sign():
    expected = grad(N, 27)
    result = check("dlogits", -expected, expected, batch_size=N)
    assert result.problem == "sign"
    assert "sign is flipped" in result.message


def test_forgot_to_divide_by_n():
    expected = grad(N, 27)
    result = check("dlogits", expected * N, expected, batch_size=N)
    assert result.problem == "factor"
    assert "divide by n" in result.message


def test_divided_by_n_twice():
    expected = grad(N, 27)
    assert "divide by n only once" in check("dlogits", expected / N, expected, batch_size=N).message


def test_n_where_bessel_n_minus_1_belongs():
    expected = grad(N, 64)
    result = check("dbndiff2", expected * (N - 1) / N, expected, batch_size=N)
    assert "Bessel" in result.message
    assert "n − 1" in result.message
    assert (
        "divided by n − 1 where the forward pass divides by n"
        in check("dbnmeani", expected * N / (N - 1), expected, batch_size=N).message
    )


def test_sign_and_factor_together():
    expected = grad(N, 27)
    message = check("dlogits", -expected * N, expected, batch_size=N).message
    assert message.startswith("sign flipped and")
    assert "divide by n" in message


def test_an_unnamed_constant_factor_is_still_reported():
    expected = grad(N, 27)
    result = check("dx", expected * 3.7, expected, batch_size=N)
    assert result.problem == "factor"
    assert "3.7" in result.message


def test_transposed_square_matrix():
    expected = grad(10, 10)
    result = check("dW", expected.T.contiguous(), expected)
    assert result.problem == "transposed"


def test_only_one_branch_is_recognised_from_alternatives():
    through_probs, through_sum = grad(N, 27), grad(N, 27)
    advice = "matches only the branch through probs (+=)"
    result = check(
        "dcounts",
        through_probs,
        through_probs + through_sum,
        alternatives={advice: through_probs, "other": through_sum * 5},
    )
    assert result.problem == "alternative"
    assert result.message == advice


def test_a_scattered_error_reports_how_many_entries_and_where():
    expected = grad(N, 27)
    got = expected.clone()
    got[5, 7] += 1.0
    result = check("dlogits", got, expected, batch_size=N)
    assert result.problem == "mismatch"
    assert "1 of 864 entries" in result.message
    assert "(5, 7)" in result.message
    assert result.maxdiff == pytest.approx(1.0)


def test_the_noise_floor_follows_the_scale_of_the_computation():
    # db1 of a float32 batch of 3 whose gradients reach 0.5: rounding noise of ~5e-8.
    expected = torch.zeros(5, dtype=torch.float64)
    noise = torch.full((5,), 5e-8)
    assert not check("db1", noise, expected).ok
    assert check("db1", noise, expected, scale=0.5).ok
    assert not check("db1", torch.full((5,), 1e-5), expected, scale=0.5).ok


@pytest.mark.parametrize(
    ("got_dtype", "want_dtype"), [(torch.float32, torch.float64), (torch.float64, torch.float32)]
)
def test_a_gradient_in_the_wrong_dtype_fails_and_says_why(got_dtype, want_dtype):
    expected = torch.linspace(-1, 1, 12, dtype=want_dtype).reshape(3, 4)
    result = check("dW", expected.to(got_dtype), expected, same_dtype=True)  # right values, wrong dtype
    assert not result.ok
    assert result.problem == "dtype"
    assert "zeros_like" in result.message
    assert str(want_dtype).removeprefix("torch.") in result.message
