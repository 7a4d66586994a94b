"""The makemore MLP: embedding → linear → batchnorm → tanh → linear → cross-entropy.

The forward pass is written twice:

* ``forward_exploded`` spells out every intermediate tensor of the lecture (exercise 1),
  one small step at a time, so that each has a gradient of its own;
* ``forward_fused`` uses ``F.cross_entropy`` and ``Tensor.var`` (exercises 2–4).

Both compute the same loss. Parameters are plain dicts of tensors keyed by the lecture's names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PARAM_NAMES = ("C", "W1", "b1", "W2", "b2", "bngain", "bnbias")
LECTURE_SEED = 2147483647
BN_EPS = 1e-5
# BN_EPS as a 0-dim tensor: added to a tensor, it is cast to that tensor's dtype like a Python
# number, without the number's per-call wrapping. float64, so that float64 models get 1e-5 exactly.
_BN_EPS = torch.tensor(BN_EPS, dtype=torch.float64)


def init_params(
    vocab_size: int = 27,
    *,
    n_embd: int = 10,
    n_hidden: int = 64,
    block_size: int = 3,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """Parameters initialised as in the lecture, every draw from ``generator``.

    The lecture draws ``bngain``/``bnbias`` from the global generator, so its loss differs
    from run to run; here they come from the seeded generator too. The scales are the
    lecture's: small but non-zero everywhere, so that a wrong gradient cannot hide behind a
    zero. Pass your own generator to keep drawing minibatches from it, as the lecture does.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(LECTURE_SEED)
    fan_in = n_embd * block_size

    def randn(*shape):
        return torch.randn(shape, generator=g, dtype=dtype)

    return {
        "C": randn(vocab_size, n_embd),
        "W1": randn(fan_in, n_hidden) * (5 / 3) / fan_in**0.5,
        "b1": randn(n_hidden) * 0.1,
        "W2": randn(n_hidden, vocab_size) * 0.1,
        "b2": randn(vocab_size) * 0.1,
        "bngain": randn(1, n_hidden) * 0.1 + 1.0,
        "bnbias": randn(1, n_hidden) * 0.1,
    }


@dataclass(frozen=True)
class Step:
    """One line of the exploded forward pass: ``name = compute(*inputs)``."""

    name: str
    compute: Callable[..., torch.Tensor]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(inspect.signature(self.compute).parameters)


# The lecture's exploded forward pass, in order. Each step's inputs are the names of its
# lambda's parameters, so the graph (who consumes what) is read off this table.
FORWARD_STEPS: tuple[Step, ...] = (
    Step("emb", lambda C, Xb: C[Xb]),
    Step("embcat", lambda emb: emb.view(emb.shape[0], -1)),
    Step("hprebn", lambda embcat, W1, b1: embcat @ W1 + b1),
    Step("bnmeani", lambda hprebn: 1 / hprebn.shape[0] * hprebn.sum(0, keepdim=True)),
    Step("bndiff", lambda hprebn, bnmeani: hprebn - bnmeani),
    Step("bndiff2", lambda bndiff: bndiff**2),
    # Bessel's correction: the variance divides by n - 1, not n.
    Step("bnvar", lambda bndiff2: 1 / (bndiff2.shape[0] - 1) * bndiff2.sum(0, keepdim=True)),
    Step("bnvar_inv", lambda bnvar: (bnvar + BN_EPS) ** -0.5),
    Step("bnraw", lambda bndiff, bnvar_inv: bndiff * bnvar_inv),
    Step("hpreact", lambda bngain, bnraw, bnbias: bngain * bnraw + bnbias),
    Step("h", lambda hpreact: torch.tanh(hpreact)),
    Step("logits", lambda h, W2, b2: h @ W2 + b2),
    Step("logit_maxes", lambda logits: logits.max(1, keepdim=True).values),
    Step("norm_logits", lambda logits, logit_maxes: logits - logit_maxes),  # for stability
    Step("counts", lambda norm_logits: norm_logits.exp()),
    Step("counts_sum", lambda counts: counts.sum(1, keepdim=True)),
    Step("counts_sum_inv", lambda counts_sum: counts_sum**-1),
    Step("probs", lambda counts, counts_sum_inv: counts * counts_sum_inv),
    Step("logprobs", lambda probs: probs.log()),
    Step("loss", lambda logprobs, Yb: -logprobs[torch.arange(Yb.shape[0]), Yb].mean()),
)
STEPS_BY_NAME = {step.name: step for step in FORWARD_STEPS}
INTERMEDIATE_NAMES = tuple(step.name for step in FORWARD_STEPS)


def consumers(name: str) -> tuple[str, ...]:
    """The intermediates computed directly from ``name`` (two of them means two branches)."""
    return tuple(step.name for step in FORWARD_STEPS if name in step.inputs)


def forward_exploded(
    params: dict[str, torch.Tensor],
    Xb: torch.Tensor,
    Yb: torch.Tensor,
    *,
    retain_grad: bool = False,
) -> dict[str, torch.Tensor]:
    """Every tensor of the exploded forward pass (inputs, parameters and intermediates) by name.

    With ``retain_grad`` every intermediate keeps its ``.grad`` after ``loss.backward()``.
    """
    values: dict[str, torch.Tensor] = {**params, "Xb": Xb, "Yb": Yb}
    for step in FORWARD_STEPS:
        value = step.compute(*(values[name] for name in step.inputs))
        if retain_grad and value.requires_grad:
            value.retain_grad()
        values[step.name] = value
    return values


def forward_fused(params: dict[str, torch.Tensor], Xb: torch.Tensor, Yb: torch.Tensor):
    """The compact forward pass of exercises 2–4: returns ``(loss, cache)``.

    ``cache`` holds what the manual backward pass needs: emb, embcat, hprebn, bnraw,
    bnvar_inv, hpreact, h and logits (``forward_to_logits``); the loss is ``F.cross_entropy``
    of the logits. Mathematically the lecture's forward pass, with its
    ``hprebn.var(0, keepdim=True, unbiased=True)`` batchnorm.
    """
    cache = forward_to_logits(params, Xb)
    return F.cross_entropy(cache["logits"], Yb), cache


def forward_to_logits(params: dict[str, torch.Tensor], Xb: torch.Tensor) -> dict[str, torch.Tensor]:
    """``forward_fused`` up to the logits: its ``cache``, without the loss.

    ``train`` runs this every step — a manual step needs the loss for nothing but the record,
    which it computes a chunk of steps at a time. Written for speed, because a step costs
    the fixed overhead of its ~40 small operations far more than their arithmetic
    (bench/README.md): ``Tensor.mean``/``Tensor.var`` over dim 0 cost 5 and ~50 µs on a
    32×200 CPU batch where a ``sum`` costs 2.5; ``addmm``/``addcmul``/``alpha=`` do a product
    and a sum in one operation; and a Python number in an operation is first wrapped in a
    tensor (~1 µs each), which ``alpha=`` and the 0-dim ``_BN_EPS`` avoid. The values agree
    with ``forward_exploded`` to rounding (tests/test_model.py).
    """
    n = Xb.shape[0]
    emb = F.embedding(Xb, params["C"])  # C[Xb]
    embcat = emb.view(n, -1)
    hprebn = torch.addmm(params["b1"], embcat, params["W1"])  # embcat @ W1 + b1
    bndiff = torch.sub(hprebn, hprebn.sum(0, keepdim=True), alpha=1 / n)  # hprebn - its mean
    bnvar_plus_eps = torch.add(
        _BN_EPS, (bndiff * bndiff).sum(0, keepdim=True), alpha=1 / (n - 1)
    )  # Bessel's correction, then + eps
    bnvar_inv = torch.rsqrt(bnvar_plus_eps)  # (bnvar + eps) ** -0.5
    bnraw = bndiff * bnvar_inv
    hpreact = torch.addcmul(params["bnbias"], params["bngain"], bnraw)  # bngain * bnraw + bnbias
    h = torch.tanh(hpreact)
    return {
        "emb": emb,
        "embcat": embcat,
        "hprebn": hprebn,
        "bnraw": bnraw,
        "bnvar_inv": bnvar_inv,
        "hpreact": hpreact,
        "h": h,
        "logits": torch.addmm(params["b2"], h, params["W2"]),  # h @ W2 + b2
    }


# Rows per chunk when a whole split goes through the model: a 182,625 × 200 float32 tensor is
# 146 MB, and every such intermediate is a fresh allocation the kernel must zero and the
# caches cannot hold; in chunks a loss over the training set takes 0.25 s instead of 1 s.
EVAL_CHUNK_ROWS = 16384


def _row_chunks(*tensors: torch.Tensor):
    """The tensors' rows, ``EVAL_CHUNK_ROWS`` at a time: a tuple of slices per chunk."""
    for start in range(0, tensors[0].shape[0], EVAL_CHUNK_ROWS):
        yield tuple(t[start : start + EVAL_CHUNK_ROWS] for t in tensors)


def _first_layer(params, X: torch.Tensor) -> torch.Tensor:
    """hprebn = C[X].view(n, -1) @ W1 + b1, for any contexts X."""
    emb = F.embedding(X, params["C"])
    return torch.addmm(params["b1"], emb.view(emb.shape[0], -1), params["W1"])


@torch.no_grad()
def calibrate_batchnorm(params: dict[str, torch.Tensor], X: torch.Tensor):
    """Batchnorm mean and (unbiased) variance over the whole of ``X``, for use at test time."""
    n = X.shape[0]
    mean = sum(_first_layer(params, Xc).sum(0, keepdim=True) for (Xc,) in _row_chunks(X)) / n
    # Two-pass variance, the same number as Tensor.var, which is ~10× slower along dim 0
    # (a Welford reduction); the second pass recomputes the chunks (cheaper than keeping them).
    squares = sum(
        (_first_layer(params, Xc) - mean).square_().sum(0, keepdim=True) for (Xc,) in _row_chunks(X)
    )
    return mean, squares / (n - 1)


@torch.no_grad()
def logits_at_test_time(params, bnstats, X: torch.Tensor) -> torch.Tensor:
    """Logits with batchnorm using the calibrated statistics ``bnstats`` instead of the batch's."""
    bnmean, bnvar = bnstats
    hprebn = _first_layer(params, X)
    # bngain * (hprebn - bnmean) / sqrt(bnvar + eps) + bnbias, as one scale and one shift
    scale = params["bngain"] * torch.rsqrt(bnvar + BN_EPS)
    hpreact = torch.addcmul(params["bnbias"] - bnmean * scale, hprebn, scale)
    return torch.addmm(params["b2"], torch.tanh(hpreact), params["W2"])


@torch.no_grad()
def split_loss(params, bnstats, X: torch.Tensor, Y: torch.Tensor) -> float:
    """Mean cross-entropy of the calibrated model on a whole split (in chunks of rows)."""
    total = sum(
        F.cross_entropy(logits_at_test_time(params, bnstats, Xc), Yc, reduction="sum")
        for Xc, Yc in _row_chunks(X, Y)
    )
    return float(total) / X.shape[0]


def sample_names(
    params,
    bnstats,
    vocab,
    count: int = 20,
    *,
    block_size: int = 3,
    generator: torch.Generator | None = None,
    max_length: int = 50,
) -> list[str]:
    """Names drawn from the model, one character at a time, until each emits ``.``.

    All ``count`` names are drawn side by side, one batch per character position.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(LECTURE_SEED + 10)
    contexts = torch.zeros((count, block_size), dtype=torch.long)
    chars: list[list[int]] = [[] for _ in range(count)]
    finished = torch.zeros(count, dtype=torch.bool)
    for _ in range(max_length):
        probs = F.softmax(logits_at_test_time(params, bnstats, contexts), dim=1)
        nxt = torch.multinomial(probs, 1, generator=g).squeeze(1)
        finished |= nxt == 0
        if finished.all():
            break
        for i in (~finished).nonzero().flatten().tolist():
            chars[i].append(int(nxt[i]))
        contexts = torch.cat([contexts[:, 1:], nxt.view(-1, 1)], dim=1)
    return [vocab.decode(c) for c in chars]
