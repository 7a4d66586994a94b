"""Compare a student's gradient with the true one, and say *why* it differs.

``check`` improves on the lecture's ``cmp`` (exact / approximate / maxdiff): it never raises
on a bad answer, and a wrong one gets the diagnosis of ``diagnosis.py`` — what to sum over,
a flipped sign, a forgotten 1/n, n where Bessel's n − 1 belongs, a hard-coded size, a known
wrong formula of the exercise (``mistakes.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import torch

from .diagnosis import (
    Candidate,
    InputShapes,
    Sizes,
    Structural,
    constant_ratio,
    diagnose,
    explain_shape,
    non_finite,
)
from .problems import Problem

__all__ = ["TOLERANCES", "CheckResult", "Tolerance", "check", "constant_ratio", "explain_shape"]


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

    ``problem`` names the diagnosis for tests and tools (``None`` when it passed): a
    ``problems.Problem``. Made by ``CheckResult.passed`` or ``CheckResult.failed``.
    """

    name: str
    ok: bool
    exact: bool
    approximate: bool
    maxdiff: float
    problem: Problem | None
    message: str
    tolerance: str
    notes: tuple[str, ...] = ()  # warnings that do not fail the test (in-place changes …)

    @classmethod
    def passed(cls, name: str, *, exact: bool, maxdiff: float, tolerance: str) -> CheckResult:
        """Right within ``tolerance`` (``exact``: bit for bit)."""
        return cls(name, True, exact, True, maxdiff, None, "ok", tolerance)

    @classmethod
    def failed(
        cls, name: str, problem: Problem, message: str, *, maxdiff: float = math.nan, tolerance: str = ""
    ) -> CheckResult:
        """Wrong, or no answer at all: ``problem`` and the one line that says why."""
        return cls(name, False, False, False, maxdiff, problem, message, tolerance)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        mark = "✅" if self.ok else "❌"
        line = (
            f"{mark} {self.name:15s} | exact: {self.exact!s:5s} | "
            f"approximate: {self.approximate!s:5s} | maxdiff: {self.maxdiff:.1e}"
        )
        line = line if self.ok else f"{line} | {self.message}"
        return "\n".join((line, *self.notes))

    __repr__ = __str__


def check(
    name: str,
    got,
    expected: torch.Tensor,
    *,
    batch_size: int | None = None,
    alternatives: Mapping[str, Candidate] | Callable[[], Mapping[str, Candidate]] | None = None,
    tolerance: Tolerance | None = None,
    scale: float | None = None,
    same_dtype: bool = False,
    sizes: Sizes | None = None,
    structure: Structural | None = None,
    inputs: InputShapes | None = None,
) -> CheckResult:
    """Compare ``got`` with ``expected``; never raises on a bad ``got``.

    ``batch_size`` lets constant factors be named (n, 1/n, n/(n−1)). ``alternatives`` maps
    advice to a known wrong answer: if ``got`` matches one, that advice is the message
    (the tests use it for "only one branch" and "n instead of n − 1"). ``scale``, the largest
    gradient of the computation, raises the tolerance's floor to its rounding noise.
    ``same_dtype``: ``got`` must have ``expected``'s dtype, as a gradient has its tensor's (the
    graded trials, whose inputs are in that dtype); otherwise mixed precision is compared at
    float32's tolerance. ``sizes`` (n, H, V, D, B of the case) lets a hard-coded size be named;
    ``structure`` fits a wrong answer against the right answer's terms (``terms.py``);
    ``inputs``, the shapes of the function's arguments, say where a hard-coded size can be read.
    """
    expected = expected.detach()
    dtypes = (expected.dtype, getattr(got, "dtype", torch.float32))
    tol = tolerance or tolerance_for(*dtypes)
    if scale:
        tol = tol.with_noise_floor(
            scale, torch.float64 if tol is TOLERANCES[torch.float64] else torch.float32
        )

    def fail(problem: Problem, message: str, maxdiff: float = math.nan) -> CheckResult:
        return CheckResult.failed(name, problem, message, maxdiff=maxdiff, tolerance=str(tol))

    if got is None:
        return fail(Problem.NONE, "got None — did the function forget to `return` its result?")
    if not isinstance(got, torch.Tensor):
        return fail(Problem.NOT_TENSOR, f"expected a torch.Tensor, got {type(got).__name__}")
    got = got.detach()
    if not (got.is_floating_point()):
        return fail(Problem.NOT_FLOAT, f"got a {got.dtype} tensor; gradients are floating point")
    if got.shape != expected.shape:
        return fail(Problem.SHAPE, explain_shape(tuple(got.shape), tuple(expected.shape), sizes, inputs))
    if same_dtype and got.dtype != expected.dtype:
        return fail(Problem.DTYPE, explain_dtype(got.dtype, expected.dtype))

    exact = got.dtype == expected.dtype and torch.equal(got, expected)
    g64, e64 = got.to(torch.float64), expected.to(torch.float64)
    bad_values = non_finite(g64, e64)
    if bad_values:
        return fail(*bad_values)
    diff = (g64 - e64).abs()
    maxdiff = diff.max().item() if diff.numel() else 0.0
    if bool((diff <= tol.allowed(e64)).all()):
        return CheckResult.passed(name, exact=exact, maxdiff=maxdiff, tolerance=str(tol))
    both_float64 = got.dtype == expected.dtype == torch.float64
    problem, message = diagnose(
        g64,
        e64,
        tol.allowed,
        batch_size=batch_size,
        alternatives=alternatives,
        sizes=sizes,
        structure=structure,
        loose=TOLERANCES[torch.float32].allowed if both_float64 else None,
        inputs=inputs,
    )
    return fail(problem, message, maxdiff)


def explain_dtype(got: torch.dtype, want: torch.dtype) -> str:
    """A gradient has its tensor's dtype: say which, and the usual cause."""
    short = {torch.float32: "float32", torch.float64: "float64"}
    return (
        f"got a {short.get(got, got)} tensor, but this gradient must be {short.get(want, want)} like "
        "its tensor — make new tensors from the inputs (torch.zeros_like(x), x.new_zeros(…)), "
        "not with torch's default dtype"
    )
