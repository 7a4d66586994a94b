"""The package code behind the notebooks: the training test, the timing helpers, the figures,
and reading notebook 4's results. (The notebooks themselves: test_notebooks.py.)"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: no display in tests

import matplotlib.pyplot as plt
import nbformat
import pytest
import torch
import torch.nn.functional as F

from backprop_ninja import plots, timing
from backprop_ninja.cases import Case
from backprop_ninja.cells import load_answers
from backprop_ninja.judge.problems import Problem
from backprop_ninja.judge.training_check import check_training
from backprop_ninja.maintainer.notebooks import solution_path, training_losses
from backprop_ninja.model import FORWARD_STEPS, PARAM_NAMES, forward_exploded, init_params
from backprop_ninja.reference import reference_gradients
from backprop_ninja.testing import (
    CROSS_ENTROPY,
    TRAINING_BOUND,
    GradeFailure,
    PrintedResult,
    TrainingResult,
    test_on,
    test_training,
)


@pytest.fixture(scope="module")
def solution4():
    return load_answers(solution_path("4_full_training"))["manual_backward"]


def small_batch(seed=0, n=16, n_hidden=12):
    g = torch.Generator().manual_seed(seed)
    params = init_params(27, n_hidden=n_hidden, generator=g)
    Xb = torch.randint(0, 27, (n, 3), generator=g)
    Yb = torch.randint(0, 27, (n,), generator=g)
    return params, Xb, Yb


# -------------------------------------------------------------------- the training test
def test_training_test_passes_the_solution_below_the_bound(solution4, capsys):
    result = test_training(solution4)
    assert isinstance(result, TrainingResult)
    assert result.final_loss <= TRAINING_BOUND < result.initial_loss
    assert "✅ training" in capsys.readouterr().out


ZEROS = (lambda grads: {k: torch.zeros_like(v) for k, v in grads.items()}, "barely learned", "all zeros")
FLIPPED = (lambda grads: {k: -v for k, v in grads.items()}, "flipped sign", "sign is flipped")


@pytest.mark.parametrize(("mistake", "training_says", "gradient_says"), [ZEROS, FLIPPED])
def test_training_test_names_a_wrong_gradient_before_it_trains(
    solution4, mistake, training_says, gradient_says
):
    """The grade needs every gradient right: the visible test says which one is not."""

    def backward(params, cache, Xb, Yb):
        return mistake(solution4(params, cache, Xb, Yb))

    with pytest.raises(GradeFailure, match=gradient_says) as info:
        test_training(backward)
    assert str(info.value).startswith("every gradient must be right before training counts: dW2 on fresh")
    assert info.value.test == "training"
    problem = info.value.result.problem
    assert problem is not None
    assert problem in {Problem.ZERO, Problem.SIGN}


@pytest.mark.parametrize(("mistake", "training_says", "gradient_says"), [ZEROS, FLIPPED])
def test_training_alone_fails_bad_gradients_and_says_why(solution4, mistake, training_says, gradient_says):
    def backward(params, cache, Xb, Yb):
        return mistake(solution4(params, cache, Xb, Yb))

    with pytest.raises(GradeFailure, match=training_says):
        check_training(backward)


@pytest.mark.parametrize(
    ("result", "says"),
    [
        ({"C": torch.zeros(1)}, r"shape \(1,\) for 'C'"),
        ({}, "nothing for 'C'"),
        ([], "must return a dict"),
    ],
)
def test_training_alone_explains_an_unusable_result(result, says):
    with pytest.raises(GradeFailure, match=says):
        check_training(lambda params, cache, Xb, Yb: result, steps=1)


@pytest.mark.parametrize(
    ("result", "says"),
    [
        ({"C": torch.zeros(1)}, "the dict has no key 'W2'"),
        ({"dW2": torch.zeros(1)}, "the dict has the key 'dW2' but no 'W2'"),
        ([], "must return a dict of gradients keyed by parameter name, got list"),
    ],
)
def test_training_test_explains_an_unusable_result(result, says):
    with pytest.raises(GradeFailure, match=says):
        test_training(lambda params, cache, Xb, Yb: result, steps=1)


def test_training_test_reports_a_missing_implementation():
    def manual_backward(params, cache, Xb, Yb):
        raise NotImplementedError()

    with pytest.raises(GradeFailure, match="manual_backward is not implemented yet") as info:
        test_training(manual_backward, steps=1)
    assert info.value.result.problem == "not_implemented"
    with pytest.raises(GradeFailure, match="manual_backward is not implemented yet"):
        check_training(manual_backward, steps=1)


def test_printed_results_display_nothing_more_in_a_notebook(capsys):
    params, Xb, Yb = small_batch()

    def cross_entropy_backward(logits, Yb):
        return (F.softmax(logits, 1) - F.one_hot(Yb, logits.shape[1])) / logits.shape[0]

    result = test_on(CROSS_ENTROPY, cross_entropy_backward, Case.from_batch(params, Xb, Yb))
    assert isinstance(result, PrintedResult)
    assert result.ok
    assert "✅ dlogits" in capsys.readouterr().out
    result._ipython_display_()  # what IPython calls instead of showing the repr
    assert capsys.readouterr().out == ""  # the verdict is not shown a second time


# ------------------------------------------------------------------------------ timing
def test_run_steps_reproduces_the_exploded_forward_pass():
    params, Xb, Yb = small_batch()
    full = forward_exploded(params, Xb, Yb)
    part = timing.run_steps({"logits": full["logits"], "Yb": Yb}, "logit_maxes", "loss")
    assert torch.equal(part["loss"], full["loss"])
    assert set(part) >= {step.name for step in FORWARD_STEPS[-8:]}


def test_autograd_chain_gives_the_true_gradient():
    params, Xb, Yb = small_batch()
    ref = reference_gradients(params, Xb, Yb, torch.float64)
    values = ref.values
    dlogits = timing.autograd_chain({"logits": values["logits"], "Yb": Yb}, "logits", "logit_maxes", "loss")
    torch.testing.assert_close(dlogits(), ref.grad("logits"))
    dhprebn = timing.autograd_chain(
        {k: values[k] for k in ("hprebn", "bngain", "bnbias")},
        "hprebn",
        "bnmeani",
        "hpreact",
        grad_output=ref.grad("hpreact"),
    )
    torch.testing.assert_close(dhprebn(), ref.grad("hprebn"))
    torch.testing.assert_close(dhprebn(), ref.grad("hprebn"))  # callable again (graph kept)


def test_speed_comparison_times_both_sides_and_restores_threads(solution4):
    params, Xb, Yb = small_batch()
    threads = torch.get_num_threads()
    calls = {"fast": 0, "slow": 0}

    def count(side):
        def fn():
            calls[side] += 1

        return fn

    comparison = timing.compare_speed(
        count("fast"), count("slow"), fast_name="fast", slow_name="slow", rounds=2
    )
    assert calls["fast"] > 2
    assert calls["slow"] > 2
    assert comparison.speedup == comparison.slow_seconds / comparison.fast_seconds
    assert "speedup" in str(comparison)
    assert torch.get_num_threads() == threads

    step = timing.training_step_speed(params, Xb, Yb, solution4, rounds=1)
    assert step.fast_seconds > 0
    assert step.slow_seconds > 0
    assert all(p.grad is None for p in params.values())  # the caller's tensors are untouched


# ----------------------------------------------------------------------------- figures
def test_figures_draw_without_error():
    params, Xb, Yb = small_batch()
    values = forward_exploded(params, Xb, Yb)
    ref = reference_gradients(params, Xb, Yb, torch.float64)
    figures = [
        plots.draw_forward_graph(values),
        plots.show_dlogits(F.softmax(values["logits"], 1), ref.grad("logits"), Yb),
        plots.show_batchnorm_gradient(ref.grad("hpreact"), ref.grad("hprebn"), values["bnraw"]),
        plots.plot_loss_curve([3.0 - 1e-5 * i for i in range(120_000)]),
    ]
    graph_labels = {text.get_text().split()[0] for text in figures[0].axes[0].texts}
    assert graph_labels == {step.name for step in FORWARD_STEPS} | set(PARAM_NAMES) | {"Xb", "Yb"}
    curve_labels = [text.get_text() for text in figures[3].axes[0].texts]
    assert any("lr 0.1 → 0.01" in label for label in curve_labels)  # the step at 100,000
    for figure in figures:
        plt.close(figure)


# ------------------------------------------------------------ notebook 4's printed results
def test_training_losses_are_read_from_the_evaluation_output():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("...")])
    nb.cells[0].outputs = [
        nbformat.v4.new_output(
            "stream", name="stdout", text="after 200,000 steps: train loss 2.0710 | val loss 2.1118\n"
        )
    ]
    assert training_losses(nb) == {"train": 2.0710, "val": 2.1118}
    with pytest.raises(ValueError, match="no 'train loss"):
        training_losses(nbformat.v4.new_notebook())


def test_quick_timing_runs_one_short_round_when_grading_asks_for_it(monkeypatch):
    """Under grading (BACKPROP_NINJA_QUICK_TIMING=1) a timing cell must run, not measure.
    A clock of the test's own: every call of the function takes exactly 2 ms."""

    def timed(seconds: float):
        now, calls = [0.0], []

        def fn():
            calls.append(1)
            now[0] += seconds

        return fn, calls, lambda: now[0]

    monkeypatch.delenv(timing.QUICK_VARIABLE, raising=False)
    fn, normal, clock = timed(0.002)
    assert timing.seconds_per_call(fn, clock=clock) == pytest.approx(0.002)
    assert len(normal) == 2 + 5 * 25  # warm-up, one sizing call, 5 rounds of 50 ms / 2 ms
    monkeypatch.setenv(timing.QUICK_VARIABLE, "1")
    fn, quick, clock = timed(0.002)
    assert timing.seconds_per_call(fn, clock=clock) == pytest.approx(0.002)
    assert len(quick) == 2 + 2  # one round of 5 ms: two calls
