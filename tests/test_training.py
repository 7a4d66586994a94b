"""The training loop: the lecture's minibatches and updates, deterministic, fast settings restored.

No solution is needed here: the gradients come from autograd, through a backward function
with the manual one's signature.
"""

import pytest
import torch
import torch.nn.functional as F

from backprop_ninja import model, training
from backprop_ninja.model import PARAM_NAMES, forward_fused


def autograd_backward(params, cache, Xb, Yb):
    """The true gradients, with ``manual_backward``'s signature (cache unused).

    ``train`` runs in inference mode, whose tensors autograd cannot use: leave it and
    work on copies.
    """
    with torch.inference_mode(False), torch.enable_grad():
        leaves = {k: v.clone().requires_grad_() for k, v in params.items()}
        loss, _ = forward_fused(leaves, Xb.clone(), Yb.clone())
        grads = torch.autograd.grad(loss, [leaves[k] for k in PARAM_NAMES])
    return dict(zip(PARAM_NAMES, grads))


def toy_data(n=400, vocab=7, seed=0):
    """Contexts whose next character is a function of the last one: learnable."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randint(0, vocab, (n, 3), generator=g)
    return X, (X[:, -1] + 1) % vocab


def toy_params(vocab=7, seed=1):
    return model.init_params(vocab, n_hidden=16, generator=torch.Generator().manual_seed(seed))


def copy(params):
    return {k: v.clone() for k, v in params.items()}


def lecture_loop(params, X, Y, backward, steps, batch_size, learning_rate, g):
    """The loop as the lecture writes it: one randint, one .item() and 7 updates per step."""
    losses = []
    with torch.no_grad():
        for step in range(steps):
            ix = torch.randint(0, X.shape[0], (batch_size,), generator=g)
            Xb, Yb = X[ix], Y[ix]
            loss, cache = forward_fused(params, Xb, Yb)
            grads = backward(params, cache, Xb, Yb)
            for name in PARAM_NAMES:
                params[name] += -learning_rate(step) * grads[name]
            losses.append(loss.item())
    return losses


def test_train_takes_the_lecture_loops_steps():
    X, Y = toy_data()
    init = toy_params()
    lr = lambda step: 0.1 if step < 7 else 0.01  # noqa: E731
    g_lecture, g_train = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected_params = copy(init)
    expected = lecture_loop(expected_params, X, Y, autograd_backward, 23, 8, lr, g_lecture)
    params = copy(init)
    run = training.train(
        params,
        X,
        Y,
        autograd_backward,
        steps=23,
        batch_size=8,
        learning_rate=lr,
        generator=g_train,
        progress=False,
    )
    assert len(run.losses) == 23
    assert all(isinstance(v, float) for v in run.losses)
    assert torch.allclose(torch.tensor(run.losses), torch.tensor(expected), rtol=1e-5, atol=1e-6)
    for name in PARAM_NAMES:
        assert torch.allclose(params[name], expected_params[name], rtol=1e-5, atol=1e-6), name
    # Both loops drew the same indices, so the generators end in the same state.
    assert torch.equal(g_train.get_state(), g_lecture.get_state())


def test_minibatch_chunks_draw_the_per_step_indices_and_leave_the_generator_alike():
    X, Y = toy_data(n=50)
    g_step, g_chunk = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    per_step = [torch.randint(0, 50, (4,), generator=g_step) for _ in range(10)]
    chunks = list(training.minibatch_chunks(X, Y, steps=10, batch_size=4, generator=g_chunk, chunk_steps=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 1]
    batches = [batch for chunk in chunks for batch in chunk]
    for ix, (Xb, Yb) in zip(per_step, batches, strict=True):
        assert torch.equal(Xb, X[ix])
        assert torch.equal(Yb, Y[ix])
    assert torch.equal(g_step.get_state(), g_chunk.get_state())


def test_train_is_deterministic_for_a_generator_and_learns():
    X, Y = toy_data()
    runs = []
    for seed in (11, 11, 12):
        params = toy_params()
        run = training.train(
            params,
            X,
            Y,
            autograd_backward,
            steps=300,
            batch_size=16,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
        runs.append(run.losses)
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]
    first, last = sum(runs[0][:20]) / 20, sum(runs[0][-20:]) / 20
    assert last < first - 1.0, (first, last)


def test_train_updates_the_callers_tensors_in_place_and_calls_the_schedule_per_step():
    X, Y = toy_data()
    params = toy_params()
    before = {k: (v, v.clone()) for k, v in params.items()}
    asked = []

    def schedule(step):
        asked.append(step)
        return 0.05

    training.train(
        params, X, Y, autograd_backward, steps=5, batch_size=4, learning_rate=schedule, progress=False
    )
    assert asked == [0, 1, 2, 3, 4]
    for name, (tensor, old) in before.items():
        assert params[name] is tensor, name
        assert not tensor.is_inference(), name  # still usable with autograd afterwards
        # b1's gradient is zero: batchnorm subtracts the batch mean right after it.
        assert torch.equal(tensor, old) == (name == "b1"), name


def test_train_uses_its_thread_count_and_restores_the_callers():
    X, Y = toy_data()
    seen = []

    def backward(params, cache, Xb, Yb):
        seen.append(torch.get_num_threads())
        return autograd_backward(params, cache, Xb, Yb)

    before = torch.get_num_threads()
    training.train(toy_params(), X, Y, backward, steps=2, progress=False)
    assert seen == [training.TRAINING_THREADS] * 2
    assert torch.get_num_threads() == before
    seen.clear()
    training.train(toy_params(), X, Y, backward, steps=1, progress=False, threads=None)
    assert seen == [before]


def test_train_restores_threads_and_propagates_a_failing_backward():
    X, Y = toy_data()
    before = torch.get_num_threads()

    def wrong_shape(params, cache, Xb, Yb):
        grads = autograd_backward(params, cache, Xb, Yb)
        grads["W1"] = grads["W1"].T
        return grads

    with pytest.raises(RuntimeError, match=r"shape|size"):  # a transposed gradient is never applied
        training.train(toy_params(), X, Y, wrong_shape, steps=3, progress=False)
    assert torch.get_num_threads() == before


def test_zero_steps_is_an_empty_run():
    X, Y = toy_data()
    params = toy_params()
    assert training.train(params, X, Y, autograd_backward, steps=0, progress=False).losses == []


def test_progress_bar_shows_the_running_loss(capsys):
    X, Y = toy_data()
    training.train(toy_params(), X, Y, autograd_backward, steps=50, progress=True)
    err = capsys.readouterr().err
    assert "training" in err
    assert "50/50" in err
    assert "loss=" in err


def test_lecture_learning_rate_steps_down_at_100k():
    assert training.lecture_learning_rate(0) == 0.1
    assert training.lecture_learning_rate(99_999) == 0.1
    assert training.lecture_learning_rate(100_000) == 0.01


def test_forward_fused_matches_the_lectures_formulas_in_float32():
    """The training forward pass (written for speed) against the lecture's own lines."""
    params = model.init_params(27, n_hidden=200)
    g = torch.Generator().manual_seed(4)
    Xb, Yb = torch.randint(0, 27, (32, 3), generator=g), torch.randint(0, 27, (32,), generator=g)
    loss, cache = forward_fused(params, Xb, Yb)
    hprebn = params["C"][Xb].view(32, -1) @ params["W1"] + params["b1"]
    bnvar_inv = (hprebn.var(0, keepdim=True, unbiased=True) + model.BN_EPS) ** -0.5
    bnraw = (hprebn - hprebn.mean(0, keepdim=True)) * bnvar_inv
    h = torch.tanh(params["bngain"] * bnraw + params["bnbias"])
    logits = h @ params["W2"] + params["b2"]
    expected = {"hprebn": hprebn, "bnvar_inv": bnvar_inv, "bnraw": bnraw, "h": h, "logits": logits}
    for name, value in expected.items():
        assert torch.allclose(cache[name], value, rtol=1e-5, atol=1e-5), name
    assert torch.allclose(loss, F.cross_entropy(logits, Yb), rtol=1e-6)
    assert torch.allclose(loss, model.forward_exploded(params, Xb, Yb)["loss"], rtol=1e-6)
    assert set(cache) == {"emb", "embcat", "hprebn", "bnraw", "bnvar_inv", "hpreact", "h", "logits"}


def test_the_losses_of_a_chunk_are_each_steps_cross_entropy():
    g = torch.Generator().manual_seed(6)
    logits = [torch.randn(8, 5, generator=g) * 3 for _ in range(4)]
    targets = [torch.randint(0, 5, (8,), generator=g) for _ in range(4)]
    expected = [F.cross_entropy(lg, y).item() for lg, y in zip(logits, targets, strict=True)]
    got = training.minibatch_losses(torch.stack(logits), torch.stack(targets))
    assert len(got) == 4
    assert torch.allclose(torch.tensor(got), torch.tensor(expected), rtol=1e-6, atol=0)


def test_a_backward_that_changes_the_logits_in_place_does_not_change_the_recorded_losses():
    """train records the losses a chunk at a time: from the logits as the forward made them."""
    X, Y = toy_data()

    def scribbles_on_its_cache(params, cache, Xb, Yb):
        grads = autograd_backward(params, cache, Xb, Yb)
        cache["logits"].zero_()  # a loss of these logits would be log(7) at every step
        return grads

    runs = [
        training.train(
            toy_params(), X, Y, backward, steps=30, batch_size=8, generator=torch.Generator().manual_seed(2),
            progress=False,
        ).losses
        for backward in (autograd_backward, scribbles_on_its_cache)
    ]  # fmt: skip
    assert runs[0] == runs[1]
