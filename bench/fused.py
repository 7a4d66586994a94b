"""Figures 3 and 4: a fused backward function against the chain of atomic ones it replaces."""

from __future__ import annotations

from collections.abc import Callable

import torch

from backprop_ninja import model
from backprop_ninja.data import Splits
from backprop_ninja.reference import reference_gradients
from backprop_ninja.training import TRAINING_THREADS, torch_threads

from .figures import BATCH_SIZE, Start
from .report import Row, Target
from .timing import interleaved_seconds, median, median_ratio


# ---------------------------------------------------------- figures 3 and 4: fused vs atomic
# Written out as notebook 1 chains them, with every function and tensor bound beforehand, so
# that the timing holds the functions' own work and a plain Python call per step — no lookups
# or loops of the bench's own (which would cost the atomic side ~5 µs it does not owe).
def cross_entropy_chain(fn: dict, v: dict) -> Callable[[], torch.Tensor]:
    """dlogits by notebook 1's eight functions, logprobs → logits."""
    (
        grad_logprobs,
        grad_probs,
        grad_counts_sum_inv,
        grad_counts_sum,
        grad_counts,
        grad_norm_logits,
        grad_logit_maxes,
        grad_logits,
    ) = (fn[f"grad_{t}"] for t in CROSS_ENTROPY_CHAIN)
    logprobs, Yb, probs, counts, counts_sum, counts_sum_inv, logits = (
        v[k] for k in ("logprobs", "Yb", "probs", "counts", "counts_sum", "counts_sum_inv", "logits")
    )

    def chain():
        dlogprobs = grad_logprobs(logprobs, Yb)
        dprobs = grad_probs(probs, dlogprobs)
        dcounts_sum_inv = grad_counts_sum_inv(counts, dprobs)
        dcounts_sum = grad_counts_sum(counts_sum, dcounts_sum_inv)
        dcounts = grad_counts(counts_sum_inv, dprobs, dcounts_sum)
        dnorm_logits = grad_norm_logits(counts, dcounts)
        dlogit_maxes = grad_logit_maxes(dnorm_logits)
        return grad_logits(logits, dnorm_logits, dlogit_maxes)

    return chain


def batchnorm_chain(fn: dict, v: dict, dhpreact: torch.Tensor) -> Callable[[], torch.Tensor]:
    """dhprebn by notebook 1's seven functions, bnraw → hprebn, from ``dhpreact``."""
    grad_bnraw, grad_bnvar_inv, grad_bnvar, grad_bndiff2, grad_bndiff, grad_bnmeani, grad_hprebn = (
        fn[f"grad_{t}"] for t in BATCHNORM_CHAIN
    )
    bngain, bndiff, bnvar, bndiff2, bnvar_inv, hprebn = (
        v[k] for k in ("bngain", "bndiff", "bnvar", "bndiff2", "bnvar_inv", "hprebn")
    )

    def chain():
        dbnraw = grad_bnraw(bngain, dhpreact)
        dbnvar_inv = grad_bnvar_inv(bndiff, dbnraw)
        dbnvar = grad_bnvar(bnvar, dbnvar_inv)
        dbndiff2 = grad_bndiff2(bndiff2, dbnvar)
        dbndiff = grad_bndiff(bndiff, bnvar_inv, dbnraw, dbndiff2)
        dbnmeani = grad_bnmeani(dbndiff)
        return grad_hprebn(hprebn, dbndiff, dbnmeani)

    return chain


CROSS_ENTROPY_CHAIN = (
    "logprobs",
    "probs",
    "counts_sum_inv",
    "counts_sum",
    "counts",
    "norm_logits",
    "logit_maxes",
    "logits",
)
BATCHNORM_CHAIN = ("bnraw", "bnvar_inv", "bnvar", "bndiff2", "bndiff", "bnmeani", "hprebn")


def lecture_batch(splits: Splits):
    """The exercise-4 model at initialisation and one minibatch of the training set."""
    start = Start.lecture(len(splits.vocab))
    g = start.generator()
    ix = torch.randint(0, splits.Xtr.shape[0], (BATCH_SIZE,), generator=g)
    return start.params, splits.Xtr[ix], splits.Ytr[ix]


def fused_versus_atomic(
    splits: Splits,
    atomic: dict,
    cross_entropy_backward: Callable,
    batchnorm_backward: Callable,
    *,
    calls: int,
    repeats: int,
) -> list[Row]:
    """Figures 3 and 4: one fused function against the chain of atomic functions it replaces,
    on the lecture's batch (32 × 200, float32), each timed over ``calls`` calls."""
    params, Xb, Yb = lecture_batch(splits)
    with torch.no_grad():
        values = model.forward_exploded(params, Xb, Yb)
    dhpreact = reference_gradients(params, Xb, Yb, torch.float32).grad("dhpreact")
    logits, bngain, bnraw, bnvar_inv = (values[k] for k in ("logits", "bngain", "bnraw", "bnvar_inv"))
    cases = {
        "3": (
            "cross-entropy backward: atomic chain / fused",
            len(CROSS_ENTROPY_CHAIN),
            cross_entropy_chain(atomic, values),
            lambda: cross_entropy_backward(logits, Yb),
            Target(4, at_most=False),
        ),
        "4": (
            "batchnorm backward: atomic chain / fused",
            len(BATCHNORM_CHAIN),
            batchnorm_chain(atomic, values, dhpreact),
            lambda: batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv),
            Target(2, at_most=False),
        ),
    }
    rows = []
    with torch.no_grad(), torch_threads(TRAINING_THREADS):
        for figure, (measure, length, chained, fused, target) in cases.items():
            seconds = interleaved_seconds({"atomic": chained, "fused": fused}, repeats=repeats, calls=calls)
            us = {name: median(v) * 1e6 for name, v in seconds.items()}
            difference = (chained() - fused()).abs().max().item()
            rows.append(
                Row(
                    figure,
                    measure,
                    median_ratio(seconds, "atomic", "fused"),
                    "×",
                    target,
                    f"{length} atomic calls {us['atomic']:.1f} µs vs fused {us['fused']:.1f} µs; "
                    f"results differ by ≤ {difference:.1e}",
                    {
                        "atomic_us": us["atomic"],
                        "fused_us": us["fused"],
                        "calls": calls,
                        "repeats": repeats,
                        "max_difference": difference,
                        "threads": TRAINING_THREADS,
                    },
                )
            )
    return rows
