"""Compare a student's gradient with the true one, and say *why* it differs.

``check`` improves on the lecture's ``cmp`` (exact / approximate / maxdiff): it never raises
on a bad answer, it explains wrong shapes in terms of what to sum over, and it recognises the
common mistakes — a flipped sign, a forgotten 1/n, n where Bessel's n − 1 belongs, a
transposed matrix, only one branch of a tensor that is used twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Tolerance:
    """``|got − expected| ≤ rtol·|expected| + scaled·max|expected| + floor``, elementwise.

    The ``scaled`` term keeps tiny entries of a large tensor from demanding more precision
    than the arithmetic has; ``floor`` is for gradients that are exactly zero in theory
    (``db1``, ``dlogit_maxes``) and come out as rounding noise.
    """

    rtol: float
    scaled: float
    floor: float

    def allowed(self, expected: torch.Tensor) -> torch.Tensor:
        scale = expected.abs().max().item() if expected.numel() else 0.0
        return self.rtol * expected.abs() + self.scaled * scale + self.floor

    def with_noise_floor(self, scale: float, dtype: torch.dtype) -> Tolerance:
        """Raise ``floor`` to the rounding noise of a computation whose gradients reach ``scale``.

        A gradient that is zero in theory (notebook 4's ``db1``: batchnorm cancels ``b1``)
        comes out as pure rounding noise of order eps · (the case's largest gradient), which
        a fixed floor cannot cover for every batch. Measured over 1,500 fresh cases × 7
        parameters, the reference answer never needed more than 0.5 of NOISE_ULPS.
        """
        return replace(self, floor=max(self.floor, NOISE_ULPS * torch.finfo(dtype).eps * scale))

    def __str__(self) -> str:
        return f"|got − expected| ≤ {self.rtol:.0e}·|expected| + {self.scaled:.0e}·max|expected| + {self.floor:.0e}"


NOISE_ULPS = 16


TOLERANCES = {
    torch.float64: Tolerance(rtol=1e-9, scaled=1e-10, floor=1e-13),
    torch.float32: Tolerance(rtol=1e-4, scaled=1e-5, floor=1e-8),
}


def tolerance_for(*dtypes: torch.dtype) -> Tolerance:
    """The tolerance of the least precise floating dtype involved (float32 if in doubt)."""
    if all(dtype == torch.float64 for dtype in dtypes):
        return TOLERANCES[torch.float64]
    return TOLERANCES[torch.float32]


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one gradient. ``bool(result)`` is whether it passed.

    ``problem`` names the diagnosis for tests and tools (``None`` when it passed):
    none, not_tensor, not_float, shape, dtype, nan, inf, sign, factor, transposed,
    alternative, mismatch.
    """

    name: str
    ok: bool
    exact: bool
    approximate: bool
    maxdiff: float
    problem: str | None
    message: str
    tolerance: str

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        mark = "✅" if self.ok else "❌"
        line = (
            f"{mark} {self.name:15s} | exact: {str(self.exact):5s} | "
            f"approximate: {str(self.approximate):5s} | maxdiff: {self.maxdiff:.1e}"
        )
        return line if self.ok else f"{line} | {self.message}"

    __repr__ = __str__


def check(
    name: str,
    got,
    expected: torch.Tensor,
    *,
    batch_size: int | None = None,
    alternatives: Mapping[str, torch.Tensor] | None = None,
    tolerance: Tolerance | None = None,
    scale: float | None = None,
    same_dtype: bool = False,
) -> CheckResult:
    """Compare ``got`` with ``expected``; never raises on a bad ``got``.

    ``batch_size`` lets constant factors be named (n, 1/n, n/(n−1)). ``alternatives`` maps
    advice to a known wrong answer: if ``got`` matches one, that advice is the message
    (the tests use it for "only one branch" and "n instead of n − 1"). ``scale``, the largest
    gradient of the computation, raises the tolerance's floor to its rounding noise.
    ``same_dtype``: ``got`` must have ``expected``'s dtype, as a gradient has its tensor's (the
    graded trials, whose inputs are in that dtype); otherwise mixed precision is compared at
    float32's tolerance.
    """
    expected = expected.detach()
    dtypes = (expected.dtype, getattr(got, "dtype", torch.float32))
    tol = tolerance or tolerance_for(*dtypes)
    if scale:
        tol = tol.with_noise_floor(
            scale, torch.float64 if tol is TOLERANCES[torch.float64] else torch.float32
        )

    def fail(problem: str, message: str, maxdiff: float = math.nan) -> CheckResult:
        return CheckResult(name, False, False, False, maxdiff, problem, message, str(tol))

    if got is None:
        return fail("none", "got None — did the function forget to `return` its result?")
    if not isinstance(got, torch.Tensor):
        return fail("not_tensor", f"expected a torch.Tensor, got {type(got).__name__}")
    got = got.detach()
    if not (got.is_floating_point()):
        return fail("not_float", f"got a {got.dtype} tensor; gradients are floating point")
    if got.shape != expected.shape:
        return fail("shape", explain_shape(tuple(got.shape), tuple(expected.shape)))
    if same_dtype and got.dtype != expected.dtype:
        return fail("dtype", explain_dtype(got.dtype, expected.dtype))

    exact = got.dtype == expected.dtype and torch.equal(got, expected)
    g64, e64 = got.to(torch.float64), expected.to(torch.float64)
    bad_values = _explain_non_finite(g64, e64)
    if bad_values:
        return fail(*bad_values)
    diff = (g64 - e64).abs()
    maxdiff = diff.max().item() if diff.numel() else 0.0
    if bool((diff <= tol.allowed(e64)).all()):
        return CheckResult(name, True, exact, True, maxdiff, None, "ok", str(tol))
    problem, message = diagnose(g64, e64, tol, batch_size=batch_size, alternatives=alternatives)
    return fail(problem, message, maxdiff)


def explain_shape(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """Why a gradient has the wrong shape, in terms of the fix (which dim to sum over)."""
    head = f"shape {got}, expected {want}"
    if len(got) == len(want) == 2 and got == want[::-1]:
        return f"{head}: transposed — swap the operands of the matrix product or add .T"
    if len(got) == len(want):
        summed = [d for d, (g, w) in enumerate(zip(got, want)) if w == 1 and g > 1]
        broadcast = [d for d, (g, w) in enumerate(zip(got, want)) if g == 1 and w > 1]
        if summed and all(g == w for d, (g, w) in enumerate(zip(got, want)) if d not in summed):
            dims = _dims(summed)
            return (
                f"{head}: this tensor was broadcast along {dims} in the forward pass, "
                f"so sum its gradient over {dims} with keepdim=True"
            )
        if broadcast and all(g == w for d, (g, w) in enumerate(zip(got, want)) if d not in broadcast):
            return (
                f"{head}: the gradient must have the tensor's full shape — expand along "
                f"{_dims(broadcast)} (e.g. multiply by torch.ones_like(...)) instead of keeping size 1"
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
    if math.prod(got) == math.prod(want):
        return f"{head}: same number of elements — reshape with .view{want}"
    return head


def explain_dtype(got: torch.dtype, want: torch.dtype) -> str:
    """A gradient has its tensor's dtype: say which, and the usual cause."""
    short = {torch.float32: "float32", torch.float64: "float64"}
    return (
        f"got a {short.get(got, got)} tensor, but this gradient must be {short.get(want, want)} like "
        "its tensor — make new tensors from the inputs (torch.zeros_like(x), x.new_zeros(…)), "
        "not with torch's default dtype"
    )


def _dims(dims: list[int]) -> str:
    return "dim " + ", ".join(map(str, dims)) if len(dims) == 1 else "dims " + ", ".join(map(str, dims))


def _explain_non_finite(got: torch.Tensor, expected: torch.Tensor):
    for kind, test in (("nan", torch.isnan), ("inf", torch.isinf)):
        wrong = test(got) & ~test(expected)
        if wrong.any():
            first = tuple(int(i) for i in wrong.nonzero()[0])
            what = "NaN" if kind == "nan" else "±inf"
            return kind, (
                f"{int(wrong.sum())} of {got.numel()} entries are {what} (first at {first}) — "
                f"a division by zero, the log of 0 or an overflowing exp?"
            )
    return None


def diagnose(got, expected, tol: Tolerance, *, batch_size=None, alternatives=None) -> tuple[str, str]:
    """Name the mistake behind a wrong gradient of the right shape, if it is a common one."""
    for advice, alternative in (alternatives or {}).items():
        alternative = alternative.detach().to(torch.float64)
        if alternative.shape == got.shape and bool(
            ((got - alternative).abs() <= tol.allowed(alternative)).all()
        ):
            return "alternative", advice
    if (
        got.dim() == 2
        and got.shape[0] == got.shape[1]
        and bool(((got.T - expected).abs() <= tol.allowed(expected)).all())
    ):
        return (
            "transposed",
            "this is the transpose of the right answer — swap the operands of the matrix product",
        )
    ratio = constant_ratio(got, expected)
    if ratio is not None:
        return _explain_ratio(ratio, batch_size)
    wrong = (got - expected).abs() > tol.allowed(expected)
    first = tuple(int(i) for i in wrong.nonzero()[0])
    return "mismatch", (
        f"{int(wrong.sum())} of {got.numel()} entries are off (e.g. at {first}: "
        f"got {got[first].item():.4g}, expected {expected[first].item():.4g})"
    )


def constant_ratio(got: torch.Tensor, expected: torch.Tensor, rel_residual: float = 1e-4) -> float | None:
    """r if ``got ≈ r · expected`` for a single number r (least squares), else None."""
    e, g = expected.flatten(), got.flatten()
    ee = float(e @ e)
    if ee == 0.0 or float(g @ g) == 0.0:
        return None
    r = float(g @ e) / ee
    residual = float((g - r * e).norm()) / max(float(g.norm()), 1e-300)
    return r if residual < rel_residual else None


def _explain_ratio(ratio: float, n: int | None) -> tuple[str, str]:
    sign = ratio < 0
    magnitude = abs(ratio)

    def near(value: float) -> bool:
        return abs(magnitude - value) <= 1e-3 * value

    factors = []
    if n:
        factors += [
            (n, f"{n} = n times too large — the loss is a mean over the batch, so divide by n"),
            (1 / n, f"n = {n} times too small — divide by n only once"),
            (
                (n - 1) / n,
                f"divided by n where the forward pass divides by n − 1 (Bessel's correction, n = {n})",
            ),
            (n / (n - 1), f"divided by n − 1 where the forward pass divides by n (n = {n})"),
        ]
    factors += [(2.0, "twice too large"), (0.5, "half the right size — check the power rule")]
    if sign and near(1.0):
        return "sign", "the sign is flipped (got −1 × the right answer)"
    for value, advice in factors:
        if near(value):
            return ("factor", ("sign flipped and " if sign else "") + advice)
    return "factor", f"off by a constant factor: got {ratio:.4g} × the right answer"
