"""The known wrong formulas of every exercise, evaluated on a case's inputs.

``check`` tries each of them against a wrong answer (``diagnosis.diagnose``): if the answer
is what a wrong formula gives, the formula's advice is the message. A formula that happens to
give the right answer on a case is skipped there. Together with the generic diagnoses (shapes,
constant factors, hard-coded sizes) they cover the common mistakes of each class: the power
rule, a forgotten local derivative or upstream gradient, the wrong variable in a derivative,
a missing ε, the max without one-hot, indexed assignment that drops repeated rows, the terms
of the fused cross-entropy and batchnorm, n versus n − 1.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..model import BN_EPS
from ..reference import local_gradient
from .diagnosis import Candidate

Values = dict[str, torch.Tensor]

UPSTREAM = "forgot the upstream gradient: the chain rule multiplies the local derivative by {up}"


def _one_hot(index: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.one_hot(index, like.shape[1]).to(like.dtype)


def _rows(v: Values) -> int:
    return int(v["Xb"].shape[0])


def _repeated_rows_dropped(v: Values) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """``dC[Xb] += demb``: right on rows of C used once, wrong on rows used more than once."""
    counts = torch.bincount(v["Xb"].reshape(-1), minlength=v["C"].shape[0])

    def test(got: torch.Tensor, expected: torch.Tensor) -> bool:
        repeated = counts > 1
        close = (got - expected).abs() <= 1e-6 * expected.abs().max() + 1e-12
        return bool(repeated.any()) and bool(close[~repeated].all()) and not bool(close[repeated].all())

    return test


def _another_eps(bnvar: torch.Tensor, upstream: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """``−0.5·(bnvar + e)**-1.5 · dbnvar_inv`` for one constant e ≠ the forward pass's ε."""

    def test(got: torch.Tensor, expected: torch.Tensor) -> bool:
        q = got / (-0.5 * upstream)
        if not bool((q > 0).all()):
            return False
        eps = q ** (-2 / 3) - bnvar
        spread = float(eps.max() - eps.min())
        middle = float(eps.mean())
        return spread <= 1e-3 * abs(middle) and abs(middle - BN_EPS) > 1e-2 * BN_EPS

    return test


def _atomic(v: Values) -> dict[str, list[tuple[str, Callable[[], torch.Tensor]]]]:
    """target → [(advice, formula)], lazily: each formula runs only when it is tried."""
    n = _rows(v)
    d = lambda name: v["d" + name]  # noqa: E731  (the upstream gradient given to the function)

    def by_columns() -> torch.Tensor:
        out = torch.zeros_like(v["logprobs"])
        out[:, v["Yb"]] = -1.0 / n
        return out

    def max_over_rows() -> torch.Tensor:
        mask = torch.zeros_like(v["logits"])
        mask[v["logits"].argmax(0), torch.arange(v["logits"].shape[1])] = 1.0
        return d("norm_logits") + mask * d("logit_maxes")

    power = "wrong exponent in the power rule (d/dx xᵖ = p·xᵖ⁻¹)"
    return {
        "logprobs": [
            (
                "−1/n in every entry: the loss reads only each row's target, so only "
                "dlogprobs[range(n), Yb] is −1/n and every other entry is 0",
                lambda: torch.full_like(v["logprobs"], -1.0 / n),
            ),
            (
                "[:, Yb] selects whole columns: index with [range(n), Yb] to pick one entry per row",
                by_columns,
            ),
        ],
        "probs": [
            ("multiplied by probs: d/dx log x = 1/x, so divide by probs", lambda: d("logprobs") * v["probs"]),
            (UPSTREAM.format(up="dlogprobs"), lambda: 1.0 / v["probs"]),
            (f"{power}: d/dx log x = 1/x, not 1/x²", lambda: d("logprobs") / v["probs"] ** 2),
            ("log instead of its derivative: d/dx log x = 1/x", lambda: d("logprobs") * v["probs"].log()),
        ],
        "counts_sum_inv": [
            (
                "forgot the local derivative: probs = counts * counts_sum_inv, so multiply dprobs by counts",
                lambda: d("probs").sum(1, keepdim=True),
            ),
        ],
        "counts_sum": [
            (f"{power}: d/dx x⁻¹ = −x⁻², not −x⁻¹", lambda: -(v["counts_sum"] ** -1) * d("counts_sum_inv")),
            (
                f"{power}: d/dx x⁻¹ = −x⁻², not −2x⁻³",
                lambda: -2 * v["counts_sum"] ** -3 * d("counts_sum_inv"),
            ),
            (f"{power}: d/dx x⁻¹ = −x⁻², not x²", lambda: v["counts_sum"] ** 2 * d("counts_sum_inv")),
            (UPSTREAM.format(up="dcounts_sum_inv"), lambda: -(v["counts_sum"] ** -2)),
        ],
        "counts": [
            (
                "multiplied the two branches: the gradients of a tensor used twice add up (+=)",
                lambda: v["counts_sum_inv"] * d("probs") * d("counts_sum"),
            ),
        ],
        "norm_logits": [
            ("forgot the local derivative: d/dx eˣ = eˣ = counts, multiply by counts", lambda: d("counts")),
            (
                "exp applied twice: counts is already exp(norm_logits), so the local derivative is "
                "counts itself — dnorm_logits = counts * dcounts",
                lambda: v["counts"].exp() * d("counts"),
            ),
            (UPSTREAM.format(up="dcounts"), lambda: v["counts"]),
        ],
        "logits": [
            (
                "the max branch added dlogit_maxes to every entry of its row: the max passes its "
                "gradient only to each row's largest logit — multiply by "
                "F.one_hot(logits.max(1).indices, num_classes=logits.shape[1]) (the max without one-hot)",
                lambda: d("norm_logits") + d("logit_maxes"),
            ),
            ("the one-hot of the max over dim 0: the max is over each row, dim 1", max_over_rows),
            (
                "subtracted the max branch: the gradients of a tensor used twice add up (+=)",
                lambda: d("norm_logits") - _one_hot(v["logits"].argmax(1), v["logits"]) * d("logit_maxes"),
            ),
        ],
        "hpreact": [
            (
                "1 − hpreact²: the derivative of tanh is 1 − tanh², and tanh(hpreact) is h — use 1 - h**2",
                lambda: (1 - v["hpreact"] ** 2) * d("h"),
            ),
            ("1 − h: the derivative of tanh is 1 − h² (squared)", lambda: (1 - v["h"]) * d("h")),
            (
                "tanh applied twice: h is already tanh(hpreact), so the derivative is 1 - h**2",
                lambda: (1 - torch.tanh(v["h"]) ** 2) * d("h"),
            ),
            ("h² where the derivative of tanh is 1 − h²", lambda: v["h"] ** 2 * d("h")),
            ("1 + h² where the derivative of tanh is 1 − h²", lambda: (1 + v["h"] ** 2) * d("h")),
            (UPSTREAM.format(up="dh"), lambda: 1 - v["h"] ** 2),
        ],
        "bngain": [
            (
                "forgot the local derivative: hpreact = bngain * bnraw + bnbias, so multiply by bnraw",
                lambda: d("hpreact").sum(0, keepdim=True),
            ),
        ],
        "bnraw": [
            (
                "forgot the local derivative: hpreact = bngain * bnraw + bnbias, so multiply by bngain",
                lambda: d("hpreact"),
            ),
        ],
        "bnvar_inv": [
            (
                "forgot the local derivative: bnraw = bndiff * bnvar_inv, so multiply by bndiff",
                lambda: d("bnraw").sum(0, keepdim=True),
            ),
        ],
        "bnvar": [
            (
                "missing ε: the forward pass is (bnvar + eps)**-0.5 with eps = 1e-5, so the "
                "derivative is −0.5·(bnvar + eps)**-1.5 — the eps matters",
                lambda: -0.5 * v["bnvar"] ** -1.5 * d("bnvar_inv"),
            ),
            (
                f"{power}: d/dx (x + ε)^-0.5 = −0.5·(x + ε)^-1.5",
                lambda: -0.5 * (v["bnvar"] + BN_EPS) ** -0.5 * d("bnvar_inv"),
            ),
            (
                f"{power}: d/dx (x + ε)^-0.5 = −0.5·(x + ε)^-1.5, not ^-2.5",
                lambda: -0.5 * (v["bnvar"] + BN_EPS) ** -2.5 * d("bnvar_inv"),
            ),
            (
                f"{power} and missing ε: d/dx (x + eps)^-0.5 = −0.5·(x + eps)^-1.5",
                lambda: -0.5 * v["bnvar"] ** -0.5 * d("bnvar_inv"),
            ),
            (UPSTREAM.format(up="dbnvar_inv"), lambda: -0.5 * (v["bnvar"] + BN_EPS) ** -1.5),
        ],
        "bndiff": [
            (
                f"{power}: d(bndiff²)/dbndiff = 2·bndiff — the factor 2 is missing",
                lambda: v["bnvar_inv"] * d("bnraw") + v["bndiff"] * d("bndiff2"),
            ),
        ],
        "hprebn": [
            (
                "forgot the 1/n: bnmeani is the mean over the batch, so each row gets dbnmeani / n",
                lambda: d("bndiff") + d("bnmeani"),
            ),
            (
                "divided by n − 1: bnmeani is a mean over n rows (Bessel's n − 1 belongs only to the variance)",
                lambda: d("bndiff") + d("bnmeani") / (n - 1),
            ),
            (
                "subtracted the branch through bnmeani: the gradients of a tensor used twice add up (+=)",
                lambda: d("bndiff") - d("bnmeani") / n,
            ),
        ],
        "emb": [
            (
                "viewed in the wrong order: emb is (n, block_size, n_embd) — dembcat.view(emb.shape)",
                lambda: d("embcat").view(n, v["emb"].shape[2], v["emb"].shape[1]).transpose(1, 2),
            ),
        ],
    }


def atomic_candidates(target: str, values: Values, upstream: Values) -> dict[str, Candidate]:
    """advice → wrong answer (or predicate) for notebook 1's gradient of ``target``."""
    v = {**values, **upstream}
    found: dict[str, Candidate] = {}
    for advice, formula in _atomic(v).get(target, []):
        try:
            found[advice] = formula()
        except Exception:  # a formula that does not apply to these shapes
            continue
    if target == "bnvar":
        found[
            f"another ε than the forward pass's: bnvar_inv = (bnvar + eps)**-0.5 with eps = {BN_EPS:g}, "
            "so the derivative −0.5·(bnvar + eps)**-1.5 needs that same eps"
        ] = _another_eps(v["bnvar"], v["dbnvar_inv"])
    if target == "C":
        found[
            "rows of C used more than once in Xb are wrong: indexed assignment like dC[Xb] += demb "
            "keeps only one of the repeated rows — accumulate with dC.index_add_(0, Xb.view(-1), "
            "demb.view(-1, C.shape[1])) or a loop"
        ] = _repeated_rows_dropped(v)
    return found


def wrong_tensor_candidates(
    target: str, args: tuple[str, ...], values: Values, upstream: Values, pool: Values
) -> dict[str, Candidate]:
    """advice → the gradient of ``target`` with one input taken from the wrong tensor.

    ``dW2 = hpreact.T @ dlogits`` or ``dW1 = embcat.T @ dhpreact`` use a tensor of the right
    shape from the wrong place: each input of the step (a forward value in ``values`` or an
    upstream gradient in ``upstream``) is replaced by every other tensor of its shape in
    ``pool`` (notebook 4: the whole cache and every gradient; notebook 1: the function's
    arguments), and the step is differentiated as usual.
    """
    found: dict[str, Candidate] = {}
    for arg in args:
        own = pool.get(arg)
        if own is None or arg in ("Xb", "Yb"):
            continue
        for other, tensor in pool.items():
            if other == arg or tensor.shape != own.shape or torch.equal(tensor, own):
                continue
            try:
                if arg.startswith("d"):
                    swapped = local_gradient(target, values, {**upstream, arg: tensor}).total
                else:
                    swapped = local_gradient(target, {**values, arg: tensor}, upstream).total
            except Exception:  # a step that does not accept this tensor
                continue
            found[f"d{target} takes {other} where {arg} belongs: the chain rule for {target} uses {arg}"] = (
                swapped
            )
    return found


def forgotten_factor_candidates(
    target: str, args: tuple[str, ...], values: Values, upstream: Values
) -> dict[str, Candidate]:
    """advice → the gradient of ``target`` with one factor of the chain rule left out: the
    upstream gradient (the local derivative alone) or a forward value (replaced by ones)."""
    found: dict[str, Candidate] = {}
    for arg in args:
        tensor = upstream.get(arg, values.get(arg))
        if tensor is None or arg in ("Xb", "Yb") or not tensor.is_floating_point():
            continue
        ones = torch.ones_like(tensor)
        try:
            if arg.startswith("d"):
                left_out = local_gradient(target, values, {**upstream, arg: ones}).total
                advice = UPSTREAM.format(up=arg)
            else:
                left_out = local_gradient(target, {**values, arg: ones}, upstream).total
                advice = f"forgot the factor {arg} of the local derivative: d{target} is multiplied by {arg}"
        except Exception:  # a step that does not accept this tensor
            continue
        found[advice] = left_out
    return found


# ------------------------------------------------------------------------ notebook 2
def cross_entropy_variants(logits: torch.Tensor, Yb: torch.Tensor) -> dict[str, torch.Tensor]:
    """advice → dlogits as the wrong formula gives it."""
    n = logits.shape[0]
    onehot = _one_hot(Yb, logits)
    softmax = F.softmax(logits, dim=1)
    columns = torch.zeros_like(logits)
    columns[:, Yb] = 1.0
    return {
        "without the softmax: dlogits is (softmax(logits) − one_hot(Yb)) / n, not logits − one_hot": (
            logits - onehot
        )
        / n,
        "without the − 1 at the targets: subtract 1 at dlogits[range(n), Yb] (the one-hot of Yb)": softmax
        / n,
        "the softmax over the wrong dim: normalise each row, F.softmax(logits, dim=1)": (
            F.softmax(logits, dim=0) - onehot
        )
        / n,
        "log_softmax instead of the softmax: dlogits is (softmax − one_hot) / n": (
            F.log_softmax(logits, dim=1) - onehot
        )
        / n,
        "+ 1 at the targets: the targets get softmax − 1": (softmax + onehot) / n,
        "− 1 in every entry: only the target of each row, dlogits[range(n), Yb], gets − 1": (softmax - 1) / n,
        "without the softmax term: dlogits is (softmax − one_hot) / n": -onehot / n,
        "[:, Yb] selects whole columns: subtract 1 at [range(n), Yb], one entry per row": (softmax - columns)
        / n,
    }


# ------------------------------------------------------------------------ notebook 3
def batchnorm_variants(
    dhpreact: torch.Tensor, bngain: torch.Tensor, bnraw: torch.Tensor, bnvar_inv: torch.Tensor
) -> dict[str, torch.Tensor]:
    """advice → dhprebn as the wrong formula gives it (the right one is
    bngain·bnvar_inv/n · (n·d − Σd − n/(n−1)·bnraw·Σ(d·bnraw)), sums over dim 0)."""
    n = dhpreact.shape[0]
    d, r = dhpreact, bnraw
    total = d.sum(0, keepdim=True)
    projection = (d * r).sum(0, keepdim=True)
    scale = bngain * bnvar_inv

    def formula(*, front=scale, mean=1 / n, proj=1 / (n - 1), dim=0):
        t, p = d.sum(dim, keepdim=True), (d * r).sum(dim, keepdim=True)
        return front * (d - mean * t - proj * r * p)

    hard_coded = {}
    if n != 32:
        hard_coded = {
            "a hard-coded batch size 32 — use n = dhpreact.shape[0]": (
                bngain * bnvar_inv / 32 * (32 * d - total - 32 / 31 * r * projection)
            )
        }
    return hard_coded | {
        "missing the mean term: subtract the batch mean of dhpreact (Σ dhpreact / n)": formula(mean=0),
        "missing the projection term: subtract bnraw · Σ(dhpreact·bnraw) / (n − 1)": formula(proj=0),
        "missing bngain: hpreact = bngain · bnraw + bnbias, so every term is scaled by bngain": formula(
            front=bnvar_inv
        ),
        "missing bnvar_inv: bnraw = bndiff · bnvar_inv, so every term is scaled by bnvar_inv": formula(
            front=bngain
        ),
        "divided the projection term by n where the variance has Bessel's n − 1: use 1/(n − 1) "
        "(or an integer division: n // (n − 1) is 1, write n / (n − 1))": formula(proj=1 / n),
        "divided the mean term by n − 1: the mean divides by n (Bessel's n − 1 is only in the variance)": (
            formula(mean=1 / (n - 1))
        ),
        "n and n − 1 swapped: the mean term divides by n, the projection term by n − 1": formula(
            mean=1 / (n - 1), proj=1 / n
        ),
        "summed over dim 1: batchnorm's sums run over the batch, dim 0": formula(dim=1),
        "the projection term with the wrong sign: subtract bnraw · Σ(dhpreact·bnraw) / (n − 1)": scale
        * (d - total / n + r * projection / (n - 1)),
        "squared bnvar_inv: bnvar_inv appears once in the formula": scale
        * bnvar_inv
        * (d - total / n - r * projection / (n - 1)),
    }
