"""Diagnosis by structure: the right answer as a sum of terms, and what a wrong answer did to them.

A right answer is ``Σ coefficient_i · term_i`` — cross-entropy's softmax and the target's −1,
each over n; batchnorm's dhpreact term, mean term and projection term; the branches of a
tensor used twice. ``Structure.explain`` fits a wrong answer by least squares against the terms
(and against the terms with one of them taken from the wrong tensor or summed over the wrong
dim), and when a fit is exact within the check's tolerance it says which term is missing,
scaled, sign-flipped or from the wrong tensor. An answer no fit explains gets no structural
diagnosis: a wrong reason is worse than none. A fit that only scales every term alike is left
to the constant-factor diagnosis, and terms that are rounding noise or not independent on a
case are never split.

Notebook 4 (``manual_structure``): the rest of ``manual_backward`` is linear in each step's
output, so the cross-entropy and batchnorm terms carried through it explain a parameter's
gradient term by term, with the step named.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import chain
from .diagnosis import Allowed, Structural
from .problems import Problem
from .sizes import LECTURE_SIZES, Sizes

# How near a fitted coefficient's ratio to the right one must be to count as that ratio.
RATIO_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Term:
    """One term of a right answer: its name for a student, its tensor and its coefficient.

    ``wrong`` maps a description ("summed over dim 1: …") to the term as a mistake makes it.
    """

    name: str
    tensor: torch.Tensor
    coefficient: float
    wrong: Mapping[str, torch.Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class Structure:
    """A right answer's terms; ``variants`` replace several terms at once (description → tensors)."""

    terms: tuple[Term, ...]
    variants: Mapping[str, tuple[torch.Tensor, ...]] = field(default_factory=dict)

    def __call__(self, got: torch.Tensor, allowed: Allowed, sizes: Sizes) -> tuple[Problem, str] | None:
        return self.explain(got, allowed, sizes)

    def explain(self, got: torch.Tensor, allowed: Allowed, sizes: Sizes) -> tuple[Problem, str] | None:
        """Which term a wrong answer gets wrong, or None if no fit of the terms is exact."""
        tensors = tuple(t.tensor for t in self.terms)
        attempts: list[tuple[str, tuple[torch.Tensor, ...]]] = [("", tensors)]
        for i, term in enumerate(self.terms):
            for description, tensor in term.wrong.items():
                attempts.append((f"{term.name} {description}", (*tensors[:i], tensor, *tensors[i + 1 :])))
        attempts += list(self.variants.items())
        for description, candidate in attempts:
            coefficients = fit(got, candidate, allowed)
            if coefficients is None:
                continue
            scaled = self._scaled(coefficients, sizes)
            if not description and (not scaled or self._uniform(coefficients)):
                return None  # right, or the whole answer scaled: a constant factor says it better
            parts = ([description] if description else []) + scaled
            return Problem.TERM, "; ".join(parts)
        return None

    def _uniform(self, coefficients: list[float]) -> bool:
        ratios = [c / t.coefficient for t, c in zip(self.terms, coefficients)]
        return all(_near(r, ratios[0]) for r in ratios)

    def _scaled(self, coefficients: list[float], sizes: Sizes) -> list[str]:
        """What is wrong with each fitted coefficient, in words (nothing for a right one)."""
        words = []
        for term, c in zip(self.terms, coefficients):
            said = ratio_words(c / term.coefficient, sizes)
            if said:
                words.append(f"{term.name} {said}")
        return words


def fit(got: torch.Tensor, terms: tuple[torch.Tensor, ...], allowed: Allowed) -> list[float] | None:
    """Least-squares coefficients of ``got ≈ Σ c_i · terms_i``, if the fit is within tolerance."""
    try:
        columns = torch.stack([t.expand_as(got).reshape(-1) for t in terms], dim=1).to(torch.float64)
    except RuntimeError:  # a term of another shape: it cannot explain this answer
        return None
    if not bool(torch.isfinite(columns).all()):
        return None
    target = got.reshape(-1, 1)
    if bool((columns.abs().amax(0) <= allowed(got).max()).any()):
        return None  # a term within the tolerance (rounding noise): its share cannot be told
    if torch.linalg.matrix_rank(columns / columns.norm(dim=0), rtol=1e-6) < columns.shape[1]:
        return None  # terms that are not independent here: any split of them is a guess
    solution = torch.linalg.lstsq(columns, target, driver="gelsd").solution
    fitted = (columns @ solution).reshape(got.shape)
    if not bool(((got - fitted).abs() <= allowed(fitted)).all()):
        return None
    return [float(c) for c in solution.flatten()]


def _near(value: float, target: float) -> bool:
    return abs(value - target) <= RATIO_TOLERANCE * max(abs(target), 1.0)


def ratio_words(ratio: float, sizes: Sizes) -> str | None:
    """A term's fitted coefficient over its right one, in words; None when it is right."""
    if _near(ratio, 1.0):
        return None
    if _near(ratio, 0.0):
        return "is missing"
    if _near(ratio, -1.0):
        return "has the wrong sign"
    sign = "has the wrong sign and " if ratio < 0 else ""
    magnitude = abs(ratio)
    n = sizes.get("n")
    named: list[tuple[float, str]] = []
    if n:
        named += [
            (n, f"is not divided by n = {n}: divide it by n like the other terms"),
            (1 / n, f"is divided by n = {n} once too often"),
            (
                n / (n - 1),
                "divides by n − 1 where it should divide by n (Bessel's n − 1 is only in the variance)",
            ),
            (
                (n - 1) / n,
                "divides by n where it should divide by n − 1 (Bessel's correction) — or it is "
                "there as n // (n − 1), an integer division that makes it 1: write n / (n − 1)",
            ),
        ]
        for key in LECTURE_SIZES:
            if key == "n" or key not in sizes or sizes[key] in (n, 1):
                continue
            size = sizes[key]
            named.append(
                (n / size, f"divides by {key} = {size} where it should divide by n = {n}, the size of dim 0")
            )
            named.append(
                (
                    (n - 1) / (size - 1),
                    f"divides by {key} − 1 = {size - 1} where it should divide by n − 1 = {n - 1}",
                )
            )
        if n != 32:
            named.append(
                (n / 32, f"divides by 32, a hard-coded batch size (here n = {n}) — use the input's shape[0]")
            )
    named += [(2.0, "is twice too large"), (0.5, "is half the right size")]
    for value, words in named:
        if _near(magnitude, value):
            return sign + words
    return f"{sign}is {magnitude:.3g} × what it should be"


# ------------------------------------------------------------------------ the exercises
def cross_entropy_structure(logits: torch.Tensor, Yb: torch.Tensor) -> Structure:
    """dlogits = softmax(logits)/n − one_hot(Yb)/n."""
    n, V = logits.shape
    softmax = F.softmax(logits, dim=1)
    exp = (logits - logits.max(1, keepdim=True).values).exp()
    columns = torch.zeros_like(logits)
    columns[:, Yb] = 1.0
    normalise = "the softmax divides each row's exp by the row's sum"
    return Structure(
        (
            Term(
                "the softmax term (softmax(logits) / n)",
                softmax,
                1 / n,
                {
                    "is over the wrong dim: normalise each row, softmax(logits, dim=1)": F.softmax(
                        logits, dim=0
                    ),
                    "uses log_softmax where the softmax belongs": F.log_softmax(logits, dim=1),
                    f"uses exp(logits − max) without dividing by its row sum: {normalise}": exp,
                    f"uses exp(logits) without dividing by its row sum: {normalise}": logits.exp(),
                    "uses the logits themselves where their softmax belongs": logits,
                },
            ),
            Term(
                "the target's −1 (one_hot(Yb) / n)",
                F.one_hot(Yb, V).to(logits.dtype),
                -1 / n,
                {
                    "is in whole columns: [:, Yb] selects columns — use [range(n), Yb]": columns,
                    "is in every entry: only dlogits[range(n), Yb] gets it": torch.ones_like(logits),
                },
            ),
        )
    )


def batchnorm_structure(
    dhpreact: torch.Tensor,
    bngain: torch.Tensor,
    bnraw: torch.Tensor,
    bnvar_inv: torch.Tensor,
    unnormalised: Mapping[str, torch.Tensor] | None = None,
) -> Structure:
    """dhprebn = s·d − s·Σd/n − s·bnraw·Σ(d·bnraw)/(n − 1), s = bngain·bnvar_inv, sums over dim 0.

    ``unnormalised`` (name → tensor: hprebn, bndiff) are what a student may take where bnraw,
    the normalised input, belongs in the projection term.
    """
    n = dhpreact.shape[0]
    d, r = dhpreact, bnraw
    s = bngain * bnvar_inv

    def sums(dim: int) -> tuple[torch.Tensor, torch.Tensor]:
        return d.sum(dim, keepdim=True), (d * r).sum(dim, keepdim=True)

    total, projection = sums(0)
    total1, projection1 = sums(1)
    base = (d, total, r * projection)

    def fronts(i: int) -> dict[str, torch.Tensor]:
        return {
            "is not multiplied by bngain · bnvar_inv: the whole bracket is": base[i],
            "is missing bngain: it scales every term": bnvar_inv * base[i],
            "is missing bnvar_inv: it scales every term": bngain * base[i],
        }

    front_variants = {
        "every term is missing bngain: hpreact = bngain · bnraw + bnbias scales them all": bnvar_inv,
        "every term is missing bnvar_inv: bnraw = bndiff · bnvar_inv scales them all": bngain,
        "every term is missing bngain · bnvar_inv": torch.ones_like(s),
        "bnvar_inv is squared: it appears once in the formula": s * bnvar_inv,
    }
    return Structure(
        (
            Term("the dhpreact term (bngain · bnvar_inv · dhpreact)", s * d, 1.0, fronts(0)),
            Term(
                "the mean term (Σ dhpreact / n)",
                s * total,
                -1 / n,
                {"sums over dim 1: batchnorm's sums run over the batch, dim 0": s * total1, **fronts(1)},
            ),
            Term(
                "the projection term (bnraw · Σ(dhpreact · bnraw) / (n − 1))",
                s * r * projection,
                -1 / (n - 1),
                {
                    "sums over dim 1: batchnorm's sums run over the batch, dim 0": s * r * projection1,
                    "leaves bnraw out of the sum: Σ(dhpreact · bnraw)": s * r * total,
                    "leaves out the bnraw in front of the sum": s * projection,
                    **{
                        f"takes {name} where bnraw belongs: bnraw is the normalised input "
                        "(hprebn − its mean) · bnvar_inv": s * x * (d * x).sum(0, keepdim=True)
                        for name, x in (unnormalised or {}).items()
                        if x.shape == r.shape
                    },
                    **fronts(2),
                },
            ),
        ),
        {
            **{words: tuple(front * t for t in base) for words, front in front_variants.items()},
            "sums over dim 1: batchnorm's sums run over the batch, dim 0": (
                s * d,
                s * total1,
                s * r * projection1,
            ),
        },
    )


def branch_structure(branches: Mapping[str, torch.Tensor]) -> Structure | None:
    """A tensor used twice: its gradient is the sum of the branches through its consumers."""
    if len(branches) < 2:
        return None
    return Structure(tuple(Term(f"the branch through {c}", t, 1.0) for c, t in branches.items()))


def lazily(build: Callable[..., Structure | Structures | None], *args) -> Structural:
    """The structural diagnosis of ``build(*args)``, built only when an answer is wrong."""

    def explain(got: torch.Tensor, allowed: Allowed, sizes: Sizes) -> tuple[Problem, str] | None:
        structure = build(*args)
        return structure.explain(got, allowed, sizes) if structure is not None else None

    return explain


# ------------------------------------------------------------------------ notebook 4
def propagated(
    structure: Structure, step: Callable[[torch.Tensor], torch.Tensor], shape: torch.Size, prefix: str
) -> Structure:
    """The same terms carried through the (linear) rest of a backward pass: a term of dlogits
    or dhprebn (broadcast to the step's ``shape``) becomes that term's share of a parameter's
    gradient; messages get ``prefix``."""

    def through(tensor: torch.Tensor) -> torch.Tensor:
        return step(tensor.expand(shape).contiguous())

    return Structure(
        tuple(
            Term(
                f"{prefix}{t.name}",
                through(t.tensor),
                t.coefficient,
                {words: through(tensor) for words, tensor in t.wrong.items()},
            )
            for t in structure.terms
        ),
        {
            f"{prefix}{words}": tuple(through(t) for t in tensors)
            for words, tensors in structure.variants.items()
        },
    )


def manual_structure(parameter: str, params, cache, Xb, Yb) -> Structures | None:
    """Notebook 4: ``manual_backward``'s gradient of ``parameter`` as the terms of the
    cross-entropy step (every parameter depends on it) or, after it, of the batchnorm step.

    The rest of the backward pass is linear in each step's output, so a term's share of the
    parameter's gradient is the backward pass run from that term alone. None for b1: zero in
    theory (batchnorm cancels it), its terms are rounding noise.
    """
    if parameter == "b1":
        return None

    def through_cross_entropy(dlogits: torch.Tensor) -> torch.Tensor:
        return chain.backward(params, cache, Xb, Yb, cross_entropy=lambda *_: dlogits)[parameter]

    def through_batchnorm(dhprebn: torch.Tensor) -> torch.Tensor:
        return chain.backward(params, cache, Xb, Yb, batchnorm=lambda *_: dhprebn)[parameter]

    structures = [
        propagated(
            cross_entropy_structure(cache["logits"], Yb),
            through_cross_entropy,
            cache["logits"].shape,
            "the cross-entropy step: ",
        )
    ]
    if parameter in ("W1", "b1", "C"):
        n = Xb.shape[0]
        dlogits = F.softmax(cache["logits"], 1) - F.one_hot(Yb, cache["logits"].shape[1]).to(cache["h"].dtype)
        dhpreact = (1 - cache["h"] ** 2) * (dlogits / n @ params["W2"].T)
        batchnorm = batchnorm_structure(dhpreact, params["bngain"], cache["bnraw"], cache["bnvar_inv"])
        structures.append(propagated(batchnorm, through_batchnorm, dhpreact.shape, "the batchnorm step: "))
    return Structures(tuple(structures))


@dataclass(frozen=True)
class Structures:
    """Several structures tried in turn: the first that explains an answer says why."""

    each: tuple[Structure, ...]

    def explain(self, got: torch.Tensor, allowed: Allowed, sizes: Sizes) -> tuple[Problem, str] | None:
        for structure in self.each:
            found = structure.explain(got, allowed, sizes)
            if found is not None:
                return found
        return None
