"""The model: initialisation, the exploded and fused forward passes, calibration, sampling."""

import torch

from backprop_ninja import model
from backprop_ninja.data import Vocabulary


def small_batch(seed=0, n=6, vocab=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n, 3), generator=g), torch.randint(0, vocab, (n,), generator=g)


def test_init_is_reproducible_and_uses_only_the_seeded_generator():
    torch.manual_seed(0)
    a = model.init_params(27)
    torch.manual_seed(1)  # the global generator must not matter
    b = model.init_params(27)
    assert all(torch.equal(a[k], b[k]) for k in model.PARAM_NAMES)


def test_init_shapes_and_scales_follow_the_lecture():
    p = model.init_params(27, n_hidden=200)
    assert {k: tuple(v.shape) for k, v in p.items()} == {
        "C": (27, 10),
        "W1": (30, 200),
        "b1": (200,),
        "W2": (200, 27),
        "b2": (27,),
        "bngain": (1, 200),
        "bnbias": (1, 200),
    }
    assert abs(p["W1"].std().item() - (5 / 3) / 30**0.5) < 0.02
    assert abs(p["bngain"].mean().item() - 1.0) < 0.03
    assert abs(p["b2"].std().item() - 0.1) < 0.04


def test_exploded_and_fused_forward_agree():
    params = model.init_params(7, n_hidden=5, dtype=torch.float64)
    Xb, Yb = small_batch()
    values = model.forward_exploded(params, Xb, Yb)
    loss, cache = model.forward_fused(params, Xb, Yb)
    assert torch.allclose(values["loss"], loss, rtol=1e-12)
    for name in ("emb", "embcat", "hprebn", "bnraw", "bnvar_inv", "hpreact", "h", "logits"):
        assert torch.allclose(values[name], cache[name], rtol=1e-12), name


def test_the_graph_knows_which_tensors_have_two_branches():
    assert model.consumers("counts") == ("counts_sum", "probs")
    assert model.consumers("bndiff") == ("bndiff2", "bnraw")
    assert model.consumers("hprebn") == ("bnmeani", "bndiff")
    assert model.consumers("logits") == ("logit_maxes", "norm_logits")
    assert model.consumers("h") == ("logits",)


def test_calibrated_statistics_are_the_whole_sets_and_give_a_finite_loss():
    params = model.init_params(7, n_hidden=5)
    X, Y = small_batch(n=50)
    bnmean, bnvar = model.calibrate_batchnorm(params, X)
    emb = params["C"][X].view(50, -1)
    hprebn = emb @ params["W1"] + params["b1"]
    assert torch.allclose(bnmean, hprebn.mean(0, keepdim=True))
    assert torch.allclose(bnvar, hprebn.var(0, keepdim=True))
    loss = model.split_loss(params, (bnmean, bnvar), X, Y)
    assert 0 < loss < 10


def test_sampling_is_reproducible_and_uses_the_vocabulary():
    vocab = Vocabulary.from_words(["abcdef"])
    params = model.init_params(len(vocab), n_hidden=8)
    stats = model.calibrate_batchnorm(params, small_batch(n=20)[0])
    a = model.sample_names(params, stats, vocab, 5, generator=torch.Generator().manual_seed(3))
    b = model.sample_names(params, stats, vocab, 5, generator=torch.Generator().manual_seed(3))
    assert a == b
    assert len(a) == 5
    assert set("".join(a)) <= set("abcdef")


def test_names_sampled_side_by_side_stop_at_their_own_dot():
    vocab = Vocabulary.from_words(["abcdef"])
    params = model.init_params(len(vocab), n_hidden=8)
    params["W2"] = torch.zeros_like(params["W2"])  # every character, "." included, equally likely
    stats = model.calibrate_batchnorm(params, small_batch(n=20)[0])
    names = model.sample_names(params, stats, vocab, 50, generator=torch.Generator().manual_seed(0))
    assert len(names) == 50
    assert "." not in "".join(names)
    assert len({len(n) for n in names}) > 1
    assert "" in names


def test_whole_split_statistics_and_losses_do_not_depend_on_the_chunking(monkeypatch):
    """calibrate_batchnorm and split_loss go through a split in chunks of rows."""
    params = model.init_params(7, n_hidden=5)
    X, Y = small_batch(n=50)
    whole = model.calibrate_batchnorm(params, X)  # one chunk
    whole_loss = model.split_loss(params, whole, X, Y)
    monkeypatch.setattr(model, "EVAL_CHUNK_ROWS", 7)  # 8 chunks, the last one short
    chunked = model.calibrate_batchnorm(params, X)
    for a, b in zip(whole, chunked):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert abs(model.split_loss(params, chunked, X, Y) - whole_loss) < 1e-5


def test_the_fused_forward_is_exact_in_float64_too():
    """ε is added in the parameters' own dtype: float64 models get 1e-5, not its float32 rounding."""
    params = {k: v.double() for k, v in model.init_params(7, n_hidden=5).items()}
    X, Y = small_batch(n=6)
    _, cache = model.forward_fused(params, X, Y)
    values = model.forward_exploded(params, X, Y)
    assert cache["bnvar_inv"].dtype == torch.float64
    assert torch.allclose(cache["bnvar_inv"], values["bnvar_inv"], rtol=1e-12, atol=0)
