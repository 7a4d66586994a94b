"""Why a gradient is wrong: the shape, precision, a constant factor, a hard-coded size, a formula.

``check`` calls ``diagnose`` once it knows a gradient of the right shape is wrong, and
``explain_shape`` when the shape differs. Both name the *class* of the mistake, so that they
also explain mistakes nobody listed, and never a cause the evidence contradicts:

* **shapes** — which dim to sum over, keepdim, a transpose, the wrong dim summed, fewer
  columns than the vocabulary (``one_hot`` without ``num_classes``), and a dimension that is
  the lecture's size where this case has another (a hard-coded size — only where that
  dimension can be that size);
* **candidates** — the exercise's known wrong formulas (``mistakes.py``) evaluated on the
  same inputs: advice → the tensor that formula gives, or a predicate on the answer;
* **terms** — the answer fitted against the right answer's terms (``terms.py``): which term
  is missing, scaled, sign-flipped, summed over the wrong dim or from the wrong tensor;
* **precision** — right only to float32's precision: part of it computed in float32, never
  "1 × the right answer";
* **constant factors** — ``got = r · expected`` within the check's tolerance, for r = −1, n,
  1/n, n/V, (n − 1)/n, n/32, 3 …, each with its cause (a mean over the wrong size, Bessel's
  correction, the power rule …);
* **what is left** — an all-zero answer where the gradient is not zero (an integer division?),
  one right except in the rows past the lecture's batch, else "N of M entries are off" and
  where: no guessed cause.

``sizes`` maps n (batch), H (hidden), V (vocabulary), D (n_embd) and B (block size) to this
case's values; the fresh cases never use the lecture's sizes, so a hard-coded one shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from .problems import Problem
from .sizes import LECTURE_SIZES, SIZE_NAMES, InputShapes, Sizes, hard_coded

Candidate = torch.Tensor | Callable[[torch.Tensor, torch.Tensor], bool]
Allowed = Callable[[torch.Tensor], torch.Tensor]
# got, the tolerance, the case's sizes → (problem, advice) if the answer's terms explain it
Structural = Callable[[torch.Tensor, Allowed, Sizes], "tuple[Problem, str] | None"]


# ------------------------------------------------------------------------------- shapes
def explain_shape(
    got: tuple[int, ...], want: tuple[int, ...], sizes: Sizes | None = None, inputs: InputShapes | None = None
) -> str:
    """Why a gradient has the wrong shape, in terms of the fix (which dim to sum over)."""
    head = f"shape {got}, expected {want}"
    one_hot = _one_hot_columns(got, want, sizes)
    if one_hot:
        return f"{head}: {one_hot}"
    for d, g in enumerate(got):
        if g not in want:
            advice = hard_coded(g, sizes, want[d] if len(got) == len(want) else None, inputs)
            if advice:
                return f"{head}: {advice}"
    if len(got) == len(want) == 1 and sizes and got[0] == sizes.get("n") and want[0] != got[0]:
        return f"{head}: one entry per example — summed over the wrong dim: sum over dim 0, the batch"
    if len(got) == len(want) == 2 and got == want[::-1]:
        return f"{head}: transposed — swap the operands of the matrix product or add .T"
    if len(got) == len(want):
        summed = [d for d, (g, w) in enumerate(zip(got, want)) if w == 1 and g > 1]
        broadcast = [d for d, (g, w) in enumerate(zip(got, want)) if g == 1 and w > 1]
        others_equal = lambda skip: all(g == w for d, (g, w) in enumerate(zip(got, want)) if d not in skip)  # noqa: E731
        if summed and broadcast:
            return (
                f"{head}: summed over the wrong dim — sum over {_dims(summed)} (keepdim=True), "
                f"not {_dims(broadcast)}"
            )
        if summed and others_equal(summed):
            dims = _dims(summed)
            return (
                f"{head}: this tensor was broadcast along {dims} in the forward pass, "
                f"so sum its gradient over {dims} with keepdim=True"
            )
        if broadcast and others_equal(broadcast):
            return (
                f"{head}: the gradient must have the tensor's full shape — do not sum over "
                f"{_dims(broadcast)}, or expand along {_dims(broadcast)} (e.g. multiply by torch.ones_like(...))"
            )
    if len(got) == len(want) + 1:
        for d in range(len(got)):
            if got[:d] + got[d + 1 :] == want:
                return (
                    f"{head}: this tensor was broadcast along dim {d} in the forward pass, "
                    f"so sum its gradient over dim {d} (without keepdim)"
                )
    if len(got) + 1 == len(want) and want.count(1) and tuple(w for w in want if w != 1) == got:
        return f"{head}: keep the summed dimension with keepdim=True"
    if len(got) + 1 == len(want) and want.count(1):
        kept = tuple(w for w in want if w != 1)
        if len(kept) == len(got) and sorted(kept) != sorted(got):
            return f"{head}: summed over the wrong dim — sum over dim {want.index(1)} with keepdim=True"
    if len(got) == len(want) - 1 and any(got == want[:d] + want[d + 1 :] for d in range(len(want))):
        return f"{head}: summed over a dim the tensor has — its gradient keeps every dimension"
    if sizes and len(got) == len(want) and any(g != w and g in sizes.values() for g, w in zip(got, want)):
        return (
            f"{head}: summed over the wrong dim (or the wrong operand order) — the gradient has "
            "its tensor's shape; sum over the dim the tensor does not have"
        )
    if len(got) == len(want) == 1 or (len(got) == len(want) and sorted(got) != sorted(want)):
        wrong = [d for d, (g, w) in enumerate(zip(got, want)) if g != w]
        if len(got) == len(want) and wrong and all(got[d] in want for d in wrong):
            return f"{head}: summed over the wrong dim, or the wrong operand order — compare the shapes"
    if math.prod(got) == math.prod(want):
        return f"{head}: same number of elements in another arrangement — reshape with .view{want}"
    return head


def one_hot_advice(columns: int, vocabulary: int) -> str:
    """F.one_hot without num_classes: as many columns as the largest class index + 1."""
    return (
        f"{columns} columns where the vocabulary has {vocabulary}: F.one_hot without num_classes "
        f"makes only max(index) + 1 columns — pass num_classes=logits.shape[1]"
    )


def _one_hot_columns(got: tuple[int, ...], want: tuple[int, ...], sizes: Sizes | None) -> str | None:
    """Fewer columns than the vocabulary, every other dim right: a one_hot without num_classes."""
    vocabulary = (sizes or {}).get("V")
    if vocabulary is None or len(got) != len(want) or len(got) < 2 or want[-1] != vocabulary:
        return None
    others = set((sizes or {}).values()) | set(LECTURE_SIZES["V"])  # another size: not this mistake
    if got[:-1] == want[:-1] and got[-1] < vocabulary and got[-1] not in others:
        return one_hot_advice(got[-1], vocabulary)
    return None


def _dims(dims: list[int]) -> str:
    return "dim " + ", ".join(map(str, dims)) if len(dims) == 1 else "dims " + ", ".join(map(str, dims))


# ------------------------------------------------------------------------------ values
def diagnose(
    got: torch.Tensor,
    expected: torch.Tensor,
    allowed: Callable[[torch.Tensor], torch.Tensor],
    *,
    batch_size: int | None = None,
    alternatives: Mapping[str, Candidate] | Callable[[], Mapping[str, Candidate]] | None = None,
    sizes: Sizes | None = None,
    structure: Structural | None = None,
    loose: Allowed | None = None,
    inputs: InputShapes | None = None,
) -> tuple[Problem, str]:
    """Name the mistake behind a wrong gradient of the right shape (float64 tensors).

    ``allowed(reference)`` is the tolerance around a reference tensor; ``alternatives`` may be
    a function that makes them (they can be costly, and only a wrong answer needs them).
    ``structure(got, allowed, sizes)`` fits the answer against the right answer's terms
    (``terms.py``): which term is missing, scaled, sign-flipped or from the wrong tensor.
    ``loose`` is float32's tolerance: an answer within it is a precision loss.
    The order is the evidence's: a known formula, then a term fit, then rounding (a precision
    loss is never called a factor), then the whole answer's shape of error.
    """
    if callable(alternatives):
        alternatives = alternatives()
    sizes = dict(sizes or {})
    if batch_size and "n" not in sizes:
        sizes["n"] = batch_size
    for advice, alternative in (alternatives or {}).items():
        if _matches(got, expected, alternative, allowed):
            return Problem.ALTERNATIVE, advice
    if (
        got.dim() == 2
        and got.shape[0] == got.shape[1]
        and bool(((got.T - expected).abs() <= allowed(expected)).all())
    ):
        return (
            Problem.TRANSPOSED,
            "this is the transpose of the right answer — swap the operands of the matrix product",
        )
    reordered = reordered_entries(got, expected, allowed)
    if reordered:
        return Problem.TRANSPOSED, reordered
    if got.numel() and float(got.abs().max()) == 0.0:
        return Problem.ZERO, all_zeros(any(name.startswith("d") for name in (inputs or {})))
    if structure is not None:
        try:
            fitted = structure(got, allowed, sizes)
        except (RuntimeError, ValueError, IndexError):  # a structure that does not apply to these shapes
            fitted = None
        if fitted is not None:
            return fitted
    precision = precision_loss(got, expected, loose) if loose is not None else None
    if precision:
        return Problem.PRECISION, precision
    ratio = constant_ratio(got, expected, allowed=allowed)
    if ratio is not None:
        return explain_ratio(ratio, sizes, inputs)
    wrong = (got - expected).abs() > allowed(expected)
    rows = _wrong_rows_beyond(wrong, sizes, inputs)
    if rows:
        return Problem.HARD_CODED, rows
    flat = int(torch.where(wrong, (got - expected).abs(), torch.zeros_like(got)).argmax())
    largest = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), got.shape))
    return Problem.MISMATCH, (
        f"{int(wrong.sum())} of {got.numel()} entries are off, the largest at {largest} "
        f"(got {got[largest].item():.4g}, expected {expected[largest].item():.4g}) — no single term "
        "or factor explains it: check the formula against the derivation, term by term"
    )


def all_zeros(has_upstream: bool) -> str:
    """Why an answer is all zeros: an upstream gradient left out (where the function is given
    one), or a factor that came out as 0."""
    integer_division = "a factor came out as 0: an integer division, 1 // (n - 1) is 0, use 1 / (n - 1)"
    if not has_upstream:
        return f"your answer is all zeros, but this gradient is not: {integer_division}"
    return (
        "your answer is all zeros, but this gradient is not: compute it from the upstream gradient, "
        "which the tests make arbitrary (a gradient that is zero for this loss is not zero for "
        f"every loss) — or {integer_division}"
    )


def reordered_entries(got: torch.Tensor, expected: torch.Tensor, allowed: Allowed) -> str | None:
    """The right numbers in the wrong places: a view, reshape or transpose that reorders them.

    Compared sorted, entry by entry; an answer whose values are nearly all alike (zeros, a
    constant) says nothing about order and is left to the other diagnoses.
    """
    if got.numel() < 4 or got.shape != expected.shape:
        return None
    if bool(((got - expected).abs() <= allowed(expected)).all()):
        return None
    by_value, _ = expected.reshape(-1).sort()
    if int(torch.unique(by_value).numel()) < got.numel() // 2:
        return None
    if not bool(((got.reshape(-1).sort().values - by_value).abs() <= allowed(by_value)).all()):
        return None
    how = (
        f"a view of shape {tuple(got.shape)} keeps the order of the tensor it views, so view it as it was "
        "built (e.g. view(emb.shape)) and transpose only what the forward pass transposed"
        if got.dim() > 1
        else "check the order of the indices you put them in"
    )
    return f"the right numbers in the wrong places: your answer holds the right entries, reordered — {how}"


def _matches(got, expected, alternative: Candidate, allowed) -> bool:
    if callable(alternative):
        try:
            return bool(alternative(got, expected))
        except Exception:  # a predicate that does not apply to this answer
            return False
    alternative = alternative.detach().to(torch.float64)
    if alternative.shape != got.shape or not bool(torch.isfinite(alternative).all()):
        return False
    if bool(((alternative - expected).abs() <= allowed(expected)).all()):
        return False  # the candidate is right on these inputs: it cannot explain a wrong answer
    return bool(((got - alternative).abs() <= allowed(alternative)).all())


def _wrong_rows_beyond(wrong: torch.Tensor, sizes: Sizes, inputs: InputShapes | None = None) -> str | None:
    """Right in the first 32 (the lecture's batch) rows, wrong after: a hard-coded n."""
    n = sizes.get("n")
    if wrong.dim() == 0 or n is None or n <= 32 or wrong.shape[0] != n:
        return None
    if wrong[:32].any() or not wrong[32:].any():
        return None
    return f"right in the first 32 rows only: {hard_coded(32, sizes, inputs=inputs)}"


def precision_loss(got: torch.Tensor, expected: torch.Tensor, loose: Allowed) -> str | None:
    """A float64 answer right only to float32's precision: part of it was computed in float32.

    Rounding, not a formula: the answer passes float32's tolerance (relative errors of about
    1e-8 to 1e-4: ``loose``, float32's tolerance) and is not a constant multiple of the right one.
    """
    if not bool(((got - expected).abs() <= loose(expected)).all()):
        return None
    ratio = constant_ratio(got, expected)
    if ratio is not None and abs(ratio - 1.0) > 1e-6:
        return None
    relative = float((got - expected).norm()) / max(float(expected.norm()), 1e-300)
    return (
        f"right only to float32 precision (relative error {relative:.0e}, float64 gives about 1e-16): "
        "part of it was computed in float32 — a .float(), dtype=torch.float32 or a tensor made in "
        "torch's default dtype (torch.zeros(…), torch.tensor(…)); keep the inputs' dtype (zeros_like, .to(x.dtype))"
    )


def constant_ratio(
    got: torch.Tensor, expected: torch.Tensor, rel_residual: float = 1e-10, allowed: Allowed | None = None
) -> float | None:
    """r if ``got ≈ r · expected`` for a single number r (least squares), else None.

    ``got − r · expected`` must be within ``allowed(r · expected)`` (the check's tolerance) if
    given, else its relative norm below ``rel_residual``, far below float32's rounding: an
    answer that is right up to rounding is a precision loss, not "1 × the right answer".
    """
    e, g = expected.flatten(), got.flatten()
    ee = float(e @ e)
    if ee == 0.0 or float(g @ g) == 0.0:
        return None
    r = float(g @ e) / ee
    if allowed is not None:
        return r if bool(((got - r * expected).abs() <= allowed(r * expected)).all()) else None
    residual = float((g - r * e).norm()) / max(float(g.norm()), 1e-300)
    return r if residual < rel_residual else None


def _factors(sizes: Sizes, inputs: InputShapes | None = None) -> list[tuple[float, str]]:
    """Known wrong constant factors (got / expected) and their causes, most specific first."""
    n = sizes.get("n")
    factors: list[tuple[float, str]] = []
    if n:
        factors += [
            (n, f"n = {n} times too large — the loss is a mean over the batch, so divide by n"),
            (1 / n, f"n = {n} times too small — divide by n only once (a mean where a sum belongs?)"),
            (
                (n - 1) / n,
                f"divided by n where the forward pass divides by n − 1 (Bessel's correction, n = {n})",
            ),
            (n / (n - 1), f"divided by n − 1 where the forward pass divides by n (n = {n})"),
            (n - 1, f"n − 1 = {n - 1} times too large — divide by n − 1 (Bessel's correction)"),
        ]
        advice = hard_coded(32, sizes, inputs=inputs)
        if advice:
            factors.append((n / 32, f"divided by 32: {advice}"))
            factors.append(((n - 1) / 31, f"divided by 31 = 32 − 1: {advice}"))
        for key in ("V", "H", "D"):
            if key in sizes and sizes[key] != n:
                name = SIZE_NAMES[key][0]
                factors.append(
                    (n / sizes[key], f"divided by {key} = {sizes[key]} (the {name}) instead of n = {n}")
                )
                factors.append(
                    (1 / sizes[key], f"{sizes[key]} times too small — a mean over the {name} ({key})?")
                )
    for value, words in (
        (2.0, "twice too large"),
        (0.5, "half the right size"),
        (3.0, "3 times too large"),
        (1 / 3, "a third of the right size"),
    ):
        factors.append((value, f"{words} — check the constant of the power rule (d/dx xᵖ = p·xᵖ⁻¹)"))
    factors += [(1.5, "1.5 times too large — check the power rule's constant")]
    factors += [(2 / 3, "two thirds of the right size — check the power rule's constant")]
    return factors


def explain_ratio(
    ratio: float, sizes: Sizes | None, inputs: InputShapes | None = None
) -> tuple[Problem, str]:
    """The cause of ``got = ratio · expected`` (``inputs``: where a hard-coded size can be read)."""
    sign = ratio < 0
    magnitude = abs(ratio)
    if sign and abs(magnitude - 1.0) <= 1e-3:
        return Problem.SIGN, "the sign is flipped (got −1 × the right answer)"
    for value, advice in _factors(sizes or {}, inputs):
        if abs(magnitude - value) <= 1e-3 * value:
            return Problem.FACTOR, ("sign flipped and " if sign else "") + advice
    return Problem.FACTOR, f"off by a constant factor: got {ratio:.4g} × the right answer"


def non_finite(got: torch.Tensor, expected: torch.Tensor) -> tuple[Problem, str] | None:
    """NaN or ±inf where the right answer is finite, with the usual causes."""
    for kind, test in ((Problem.NAN, torch.isnan), (Problem.INF, torch.isinf)):
        wrong = test(got) & ~test(expected)
        if wrong.any():
            first = tuple(int(i) for i in wrong.nonzero()[0])
            what = "NaN" if kind is Problem.NAN else "±inf"
            return kind, (
                f"{int(wrong.sum())} of {got.numel()} entries are {what} (first at {first}) — "
                "an exp that overflows on large logits (subtract each row's max before exp, or use "
                "F.softmax), a division by zero or the log of 0?"
            )
    return None
