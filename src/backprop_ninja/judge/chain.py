"""Notebook 4: which step of a student's backward pass goes wrong first, and how.

``manual_backward`` returns seven gradients that come out of one chain: cross-entropy →
second linear layer (dW2, db2) → tanh → batchnorm's scale and shift (dbngain, dbnbias) →
batchnorm → first linear layer (dW1, db1) → embedding (dC). A mistake in one step spoils
every gradient after it, so the first wrong gradient in that order says where to look
(``stage_message``). ``variants`` runs the course's backward pass with one step replaced by a
known wrong formula (notebooks 2 and 3's, the tanh's, the embedding's), so that a wrong
gradient can be matched to the step and the formula that explain it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

from .check import TOLERANCES
from .mistakes import batchnorm_variants, cross_entropy_variants

# The parameters in the order the backward pass reaches them, with the step before each.
ORDER = ("W2", "b2", "bngain", "bnbias", "W1", "b1", "C")
STEP_BEFORE = {
    "W2": "the cross-entropy step (dlogits)",
    "b2": "the cross-entropy step (dlogits)",
    "bngain": "dh = dlogits @ W2.T or the tanh step (dhpreact)",
    "bnbias": "dh = dlogits @ W2.T or the tanh step (dhpreact)",
    "W1": "the batchnorm step (dhprebn)",
    "b1": "the batchnorm step (dhprebn)",
    "C": "the embedding step (dembcat = dhprebn @ W1.T, demb, then dC)",
}
PAIRS = (("W2", "b2"), ("bngain", "bnbias"), ("W1", "b1"), ("C",))


def backward(params, cache, Xb, Yb, *, cross_entropy=None, tanh=None, batchnorm=None) -> dict:
    """The course's backward pass; a step given as a function replaces the right one."""
    n = Xb.shape[0]
    C, W1, W2, bngain = params["C"], params["W1"], params["W2"], params["bngain"]
    bnraw, bnvar_inv, h = cache["bnraw"], cache["bnvar_inv"], cache["h"]
    if cross_entropy is None:
        dlogits = torch.softmax(cache["logits"], 1)
        dlogits[torch.arange(n), Yb] -= 1
        dlogits = dlogits / n
    else:
        dlogits = cross_entropy(cache["logits"], Yb)
    dh = dlogits @ W2.T
    dhpreact = (1 - h**2) * dh if tanh is None else tanh(cache, dh)
    if batchnorm is None:
        dhprebn = (bngain * bnvar_inv / n) * (
            n * dhpreact
            - dhpreact.sum(0, keepdim=True)
            - n / (n - 1) * bnraw * (dhpreact * bnraw).sum(0, keepdim=True)
        )
    else:
        dhprebn = batchnorm(dhpreact, bngain, bnraw, bnvar_inv)
    demb = (dhprebn @ W1.T).view(cache["emb"].shape)
    dC = torch.zeros_like(C).index_add_(0, Xb.reshape(-1), demb.reshape(-1, C.shape[1]))
    return {
        "C": dC,
        "W1": cache["embcat"].T @ dhprebn,
        "b1": dhprebn.sum(0),
        "W2": h.T @ dlogits,
        "b2": dlogits.sum(0),
        "bngain": (bnraw * dhpreact).sum(0, keepdim=True),
        "bnbias": dhpreact.sum(0, keepdim=True),
    }


TANH_VARIANTS: dict[str, Callable] = {
    "the tanh step uses 1 − hpreact²: the derivative of tanh is 1 − h², with h = tanh(hpreact)": (
        lambda cache, dh: (1 - cache["hpreact"] ** 2) * dh
    ),
    "the tanh step uses 1 − h: the derivative of tanh is 1 − h² (squared)": lambda cache, dh: (
        (1 - cache["h"]) * dh
    ),
    "the tanh step is missing: dhpreact = (1 − h²) · dh, not dh": lambda cache, dh: dh,
}


def variants(params, cache, Xb, Yb) -> dict[str, dict[str, torch.Tensor]]:
    """advice → the seven gradients of a backward pass with that one wrong step."""
    found: dict[str, dict[str, torch.Tensor]] = {}
    logits = cache["logits"]
    for advice, dlogits in cross_entropy_variants(logits, Yb).items():
        found[f"the cross-entropy step: {advice}"] = backward(
            params, cache, Xb, Yb, cross_entropy=lambda *_, d=dlogits: d
        )
    for advice, tanh in TANH_VARIANTS.items():
        found[advice] = backward(params, cache, Xb, Yb, tanh=tanh)

    def wrong_batchnorm(advice):
        return lambda *args: batchnorm_variants(*args)[advice]

    names = batchnorm_variants(cache["bnraw"], params["bngain"], cache["bnraw"], cache["bnvar_inv"])
    for advice in names:
        found[f"the batchnorm step: {advice}"] = backward(
            params, cache, Xb, Yb, batchnorm=wrong_batchnorm(advice)
        )
    return found


def explains(variant: Mapping[str, torch.Tensor], student: Mapping, skip: str) -> bool:
    """A backward pass with a wrong step gives the student's other gradients too (db1 aside:
    zero in theory, rounding noise either way); a key the student left out says nothing."""
    for key, value in variant.items():
        got = student.get(key)
        if key in (skip, "b1") or not isinstance(got, torch.Tensor) or got.shape != value.shape:
            continue
        got, value = got.detach().to(torch.float64), value.detach().to(torch.float64)
        if not bool(((got - value).abs() <= TOLERANCES[torch.float32].allowed(value)).all()):
            return False
    return True


def upstream_is_right(right: Mapping[str, bool], pair: tuple[str, ...]) -> bool:
    """The step before ``pair`` is right if a gradient further down the chain is: they all
    follow from it (db1 aside: it is zero in theory whatever dhprebn is, so it cannot tell)."""
    later = ORDER[ORDER.index(pair[-1]) + 1 :]
    return any(right.get(p, False) for p in later if p != "b1")


def stage_message(right: Mapping[str, bool], failing: str) -> str:
    """Where to look, from which of the seven gradients are right (``right[param]``).

    Notebook 1's localisation: the first wrong gradient in backward order whose inputs are
    right — if a gradient after it is right, the step before it is, and its own formula is not.
    """
    first = next((p for p in ORDER if not right.get(p, False)), failing)
    wrong_pair = next(pair for pair in PAIRS if first in pair)
    reached = ORDER[: ORDER.index(wrong_pair[-1]) + 1]
    # db1 is zero in theory (batchnorm cancels b1), whatever is wrong with dhprebn: it cannot tell.
    good = [f"d{p}" for p in reached if right.get(p) and not (p == "b1" and first == "W1")]
    both = len(wrong_pair) == 2 and not any(right.get(p, False) for p in wrong_pair)
    upstream_right = upstream_is_right(right, wrong_pair)
    wrong = " and ".join(f"d{p}" for p in wrong_pair) if both else f"d{first}"
    verb = "are" if both else "is"
    place = STEP_BEFORE[first] if both or first == "C" else f"d{first}'s own formula"
    if first == "W1" and not both:
        place = f"{STEP_BEFORE['W1']} or dW1's own formula"
    if upstream_right and first != "C":
        later = [f"d{p}" for p in ORDER[ORDER.index(wrong_pair[-1]) + 1 :] if right.get(p) and p != "b1"]
        own = " and ".join(f"d{p}'s" for p in wrong_pair if not right.get(p, False))
        place = (
            f"{own} own formula{'s' if both else ''} ({', '.join(later)}, computed after it, "
            f"{'are' if len(later) > 1 else 'is'} right: so the steps before it are right too)"
        )
    listed = ", ".join(good[:-1]) + " and " + good[-1] if len(good) > 1 else "".join(good)
    head = f"{listed} {'are' if len(good) > 1 else 'is'} right, " if good else ""
    message = f"{head}{wrong} {verb} wrong: look at {place}"
    if failing not in wrong_pair:
        message += f" — d{failing} follows from it, so fix that first"
    return message


def other_keys_value(got, siblings: Mapping[str, torch.Tensor], pick: str, same) -> str | None:
    """The key whose right gradient a wrong ``got`` is (``same(got, expected)``), if any."""
    for key, expected in siblings.items():
        if key != pick and getattr(got, "shape", None) == expected.shape and same(got, expected):
            return key
    return None


def wrong_key_message(pick: str, other: str) -> str:
    """A gradient put under another parameter's key."""
    return (
        f"grads['{pick}'] holds d{other}'s right value: the gradients are under the wrong keys — "
        f"put d{pick} under '{pick}' and d{other} under '{other}'"
    )


def without_step_said(why: str, stage: str) -> str:
    """``why`` without its "the batchnorm step: " when the stage message already names that step."""
    for step in ("the cross-entropy step", "the batchnorm step"):
        if why.startswith(f"{step}: ") and step in stage:
            return why.removeprefix(f"{step}: ")
    return why
