"""What each graded exercise asks for, and the test cases that check it.

An exercise names the student's function, the tensors it is called with and how the true
answer is computed. A *case* is one set of inputs: the notebook's own batch, or a fresh one
(another seed, batch size, hidden size, dtype; arbitrary upstream gradients; large logits).
The same cases serve the notebooks' tests (in the student's kernel) and the out-of-kernel
verifier, which compares in a process the student's code never touches.

A visible test and a hidden one run the same *kinds* of fresh inputs (``FRESH_SHAPES``):
the visible with the public ``PUBLIC_SEEDS``, the hidden with secret seeds. So a ✅ in the
notebook predicts the grade, and a wrong answer that happens to fit the notebook's batch (a
hard-coded size, a missing ε that float32 cannot see) fails where the student sees it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from . import chain
from .calling import ResultError, call_student, modified_arguments, pick_result, private_copy
from .diagnosis import Candidate
from .mistakes import atomic_candidates, batchnorm_variants, cross_entropy_variants
from .model import BN_EPS, PARAM_NAMES, consumers, forward_fused, init_params
from .reference import Reference, local_gradient, reference_gradients

__all__ = ["ResultError", "call_student", "modified_arguments", "pick_result", "private_copy"]


# ----------------------------------------------------------------------------- the cases
@dataclass(frozen=True)
class CaseSpec:
    """Fresh inputs: a model drawn from ``seed`` and a random batch, in ``dtype``."""

    seed: int
    batch_size: int = 32
    n_hidden: int = 64
    dtype: torch.dtype = torch.float64
    random_upstream: bool = False  # feed arbitrary upstream gradients, not the loss's
    logit_scale: float = 1.0  # > 1 makes large logits (numerical stability)
    n_embd: int = 10
    vocab_size: int = 27
    block_size: int = 3

    def describe(self) -> str:
        parts = [
            f"seed {self.seed}",
            f"n={self.batch_size}",
            f"n_hidden={self.n_hidden}",
            f"n_embd={self.n_embd}",
            f"vocabulary {self.vocab_size}",
            f"block {self.block_size}",
            str(self.dtype).removeprefix("torch."),
        ]
        if self.random_upstream:
            parts.append("arbitrary upstream gradients")
        if self.logit_scale != 1.0:
            parts.append(f"logits ×{self.logit_scale:g}")
        return ", ".join(parts)


# The fresh inputs of every test, visible and hidden: other batch sizes (a tiny one too),
# hidden sizes, n_embd, vocabulary and block sizes — none of them the lecture's (32, 64/200,
# 10, 27, 3), so a hard-coded size fails and is named — float64 and float32, and arbitrary
# upstream gradients. The visible tests draw them from PUBLIC_SEEDS, the hidden tests from the
# seeds in their cells and the verifier from secret ones: only the seeds differ.
FRESH_SHAPES: tuple[dict[str, Any], ...] = (
    dict(batch_size=7, n_hidden=13, n_embd=4, vocab_size=11, block_size=2),
    dict(batch_size=50, n_hidden=40, n_embd=6, vocab_size=19, block_size=4, random_upstream=True),
    dict(
        batch_size=4,
        n_hidden=5,
        n_embd=2,
        vocab_size=7,
        block_size=6,
        dtype=torch.float32,
        random_upstream=True,
    ),
)
FRESH_SHAPES_FOR: dict[str, tuple[dict[str, Any], ...]] = {
    "cross_entropy_backward": (
        FRESH_SHAPES[0],
        {**FRESH_SHAPES[1], "random_upstream": False, "logit_scale": 40.0},
        # Logits in the hundreds: exp overflows float32 (past e^88) unless the softmax
        # subtracts each row's maximum first. (×150 stayed below that for every seed.)
        {**FRESH_SHAPES[2], "random_upstream": False, "logit_scale": 1000.0},
    ),
}
PUBLIC_SEEDS = (101, 102, 103)
HIDDEN_SHAPES = FRESH_SHAPES  # the name the verifier's documentation uses


def fresh_specs(function: str, seeds) -> list[CaseSpec]:
    """One case per fresh shape of the exercise that calls ``function``, the i-th with the i-th seed."""
    shapes = FRESH_SHAPES_FOR.get(function, FRESH_SHAPES)
    return [CaseSpec(seed=seed, **shape) for seed, shape in zip(seeds, shapes, strict=True)]


def hidden_specs(seeds) -> list[CaseSpec]:
    """One case per default fresh shape, the i-th with the i-th seed."""
    return fresh_specs("", seeds)


@dataclass(frozen=True)
class Case:
    """Concrete inputs and the autograd reference for them."""

    description: str
    params: dict[str, torch.Tensor]
    Xb: torch.Tensor
    Yb: torch.Tensor
    reference: Reference
    random_upstream: bool = False
    seed: int = 0

    @property
    def batch_size(self) -> int:
        return self.Xb.shape[0]

    @property
    def sizes(self) -> dict[str, int]:
        """n, H, V, D, B of the case: named in the diagnosis of a hard-coded size."""
        C, W1 = self.params["C"], self.params["W1"]
        n, block = self.Xb.shape
        return {"n": n, "H": W1.shape[1], "V": C.shape[0], "D": C.shape[1], "B": block}

    @property
    def gradient_scale(self) -> float:
        """The largest true gradient of the case: sets the tolerance's rounding-noise floor."""
        return max(float(g.abs().max()) for g in self.reference.grads.values())

    @classmethod
    def from_batch(cls, params, Xb, Yb, description="this notebook's batch") -> Case:
        """The notebook's own batch, in its own dtype, with the loss's true gradients."""
        dtype = params["W1"].dtype
        return cls(description, params, Xb, Yb, reference_gradients(params, Xb, Yb, dtype))

    @classmethod
    def fresh(cls, spec: CaseSpec) -> Case:
        g = torch.Generator().manual_seed(spec.seed)
        params = init_params(
            spec.vocab_size,
            n_embd=spec.n_embd,
            n_hidden=spec.n_hidden,
            block_size=spec.block_size,
            generator=g,
            dtype=spec.dtype,
        )
        params["W2"] = params["W2"] * spec.logit_scale
        Xb = torch.randint(0, spec.vocab_size, (spec.batch_size, spec.block_size), generator=g)
        Yb = torch.randint(0, spec.vocab_size, (spec.batch_size,), generator=g)
        reference = reference_gradients(params, Xb, Yb, spec.dtype)
        return cls(spec.describe(), params, Xb, Yb, reference, spec.random_upstream, spec.seed)

    def upstream(self, name: str) -> torch.Tensor:
        """The gradient fed in for ``name``: the loss's, or an arbitrary one of the same size."""
        true = self.reference.grad(name)
        if not self.random_upstream:
            return true
        g = torch.Generator().manual_seed(self.seed * 1009 + sum(map(ord, name)))
        scale = true.abs().max().clamp_min(1e-3)
        return torch.randn(true.shape, generator=g, dtype=true.dtype) * scale


# ------------------------------------------------------------------------ the exercises
@dataclass(frozen=True)
class Trial:
    """One call of a student function and the answer it must give."""

    target: str  # e.g. "dprobs"
    function: str  # e.g. "grad_probs"
    args: tuple  # tensors (detached) or plain values, passed positionally
    expected: torch.Tensor
    batch_size: int
    description: str
    # advice → a wrong answer; or a function that makes that dict, called only for a wrong answer
    alternatives: dict[str, Candidate] | Callable[[], dict[str, Candidate]] = field(default_factory=dict)
    pick: str | None = None  # the key to take from a dict result (manual_backward)
    scale: float | None = None  # the case's largest true gradient (see check's ``scale``)
    sizes: dict[str, int] = field(default_factory=dict)  # n, H, V, D, B (see check's ``sizes``)
    arg_names: tuple[str, ...] = ()  # the arguments' names, for messages
    siblings: dict[str, torch.Tensor] = field(default_factory=dict)  # every key's answer (pick)


@dataclass(frozen=True)
class AtomicExercise:
    """Notebook 1: ``d<target> = grad_<target>(*args)``, one step of the chain rule."""

    target: str
    args: tuple[str, ...]

    @property
    def function(self) -> str:
        return f"grad_{self.target}"

    @property
    def grade_id(self) -> str:
        return f"test_d{self.target}"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        upstream = {arg: case.upstream(arg) for arg in self.args if arg.startswith("d")}
        args = tuple(upstream[a] if a in upstream else values[a] for a in self.args)
        truth = local_gradient(self.target, values, upstream)
        alternatives: dict[str, Candidate] = {}
        if len(truth.branches) > 1:
            for consumer, branch in truth.branches.items():
                others = " and ".join(c for c in truth.branches if c != consumer)
                alternatives[
                    f"matches only the branch through {consumer}: {self.target} is also used by "
                    f"{others}, so its gradient is the sum of both branches (+=)"
                ] = branch
        alternatives.update(atomic_candidates(self.target, values, upstream))
        return Trial(
            f"d{self.target}",
            self.function,
            args,
            truth.total,
            case.batch_size,
            case.description,
            alternatives,
            scale=case.gradient_scale,
            sizes=case.sizes,
            arg_names=self.args,
        )


# The lecture's order, loss → embedding. Arguments starting with "d" are upstream gradients.
ATOMIC_EXERCISES = tuple(
    AtomicExercise(target, args)
    for target, args in (
        ("logprobs", ("logprobs", "Yb")),
        ("probs", ("probs", "dlogprobs")),
        ("counts_sum_inv", ("counts", "dprobs")),
        ("counts_sum", ("counts_sum", "dcounts_sum_inv")),
        ("counts", ("counts_sum_inv", "dprobs", "dcounts_sum")),
        ("norm_logits", ("counts", "dcounts")),
        ("logit_maxes", ("dnorm_logits",)),
        ("logits", ("logits", "dnorm_logits", "dlogit_maxes")),
        ("h", ("W2", "dlogits")),
        ("W2", ("h", "dlogits")),
        ("b2", ("dlogits",)),
        ("hpreact", ("hpreact", "h", "dh")),
        ("bngain", ("bnraw", "dhpreact")),
        ("bnbias", ("dhpreact",)),
        ("bnraw", ("bngain", "dhpreact")),
        ("bnvar_inv", ("bndiff", "dbnraw")),
        ("bnvar", ("bnvar", "dbnvar_inv")),
        ("bndiff2", ("bndiff2", "dbnvar")),
        ("bndiff", ("bndiff", "bnvar_inv", "dbnraw", "dbndiff2")),
        ("bnmeani", ("dbndiff",)),
        ("hprebn", ("hprebn", "dbndiff", "dbnmeani")),
        ("embcat", ("W1", "dhprebn")),
        ("W1", ("embcat", "dhprebn")),
        ("b1", ("dhprebn",)),
        ("emb", ("emb", "dembcat")),
        ("C", ("C", "Xb", "demb")),
    )
)
ATOMIC_BY_TARGET = {exercise.target: exercise for exercise in ATOMIC_EXERCISES}
assert all(len(consumers(e.target)) or e.target in PARAM_NAMES for e in ATOMIC_EXERCISES)


@dataclass(frozen=True)
class CrossEntropyExercise:
    """Notebook 2: ``dlogits = cross_entropy_backward(logits, Yb)`` in one expression."""

    function = "cross_entropy_backward"
    grade_id = "test_dlogits"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        with torch.enable_grad():
            logits = values["logits"].detach().requires_grad_()
            (expected,) = torch.autograd.grad(F.cross_entropy(logits, case.Yb), logits)
        return Trial(
            "dlogits",
            self.function,
            (values["logits"], case.Yb),
            expected,
            case.batch_size,
            case.description,
            dict(cross_entropy_variants(values["logits"], case.Yb)),
            scale=case.gradient_scale,
            sizes=case.sizes,
            arg_names=("logits", "Yb"),
        )


@dataclass(frozen=True)
class BatchnormExercise:
    """Notebook 3: ``dhprebn = batchnorm_backward(dhpreact, bngain, bnraw, bnvar_inv)``."""

    function = "batchnorm_backward"
    grade_id = "test_dhprebn"

    def trial(self, case: Case) -> Trial:
        values = case.reference.values
        dhpreact = case.upstream("dhpreact")
        expected = _batchnorm_vjp(values["hprebn"], values["bngain"], dhpreact, unbiased=True)
        args = (dhpreact, values["bngain"], values["bnraw"], values["bnvar_inv"])
        return Trial(
            "dhprebn",
            self.function,
            args,
            expected,
            case.batch_size,
            case.description,
            dict(batchnorm_variants(*args)),
            scale=case.gradient_scale,
            sizes=case.sizes,
            arg_names=("dhpreact", "bngain", "bnraw", "bnvar_inv"),
        )


def _batchnorm_vjp(hprebn, bngain, dhpreact, *, unbiased: bool) -> torch.Tensor:
    """dhprebn by autograd. ``unbiased=False`` keeps the forward values (Bessel's n − 1) but
    differentiates the variance as if it divided by n: the gradient a student gets who writes
    n where the forward pass has n − 1."""
    with torch.enable_grad():
        x = hprebn.detach().requires_grad_()
        mean, var = x.mean(0, keepdim=True), x.var(0, keepdim=True, unbiased=True)
        if not unbiased:
            biased = x.var(0, keepdim=True, unbiased=False)
            var = var.detach() + (biased - biased.detach())
        hpreact = bngain * (x - mean) * (var + BN_EPS) ** -0.5
        (grad,) = torch.autograd.grad(hpreact, x, grad_outputs=dhpreact)
    return grad


@dataclass(frozen=True)
class ManualBackwardExercise:
    """Notebook 4: ``grads = manual_backward(params, cache, Xb, Yb)``, graded per parameter."""

    parameter: str
    function = "manual_backward"

    @property
    def grade_id(self) -> str:
        return f"test_d{self.parameter}"

    def trial(self, case: Case) -> Trial:
        params = {k: v.detach() for k, v in case.params.items()}
        _, cache = forward_fused(params, case.Xb, case.Yb)
        # Computed only when an answer is wrong: ~25 backward passes per case.
        alternatives = functools.partial(_manual_alternatives, self.parameter, params, cache, case)
        return Trial(
            f"d{self.parameter}",
            self.function,
            (params, cache, case.Xb, case.Yb),
            case.reference.grad(self.parameter),
            case.batch_size,
            case.description,
            alternatives,
            pick=self.parameter,
            scale=case.gradient_scale,
            sizes=case.sizes,
            arg_names=("params", "cache", "Xb", "Yb"),
            siblings={p: case.reference.grad(p) for p in PARAM_NAMES},
        )


def _manual_alternatives(parameter: str, params, cache, case: Case) -> dict[str, Candidate]:
    """advice → the parameter's gradient from a backward pass with one known wrong step, and
    the parameter's own step's wrong formulas (as in notebook 1, from the true upstream)."""
    found: dict[str, Candidate] = {
        advice: grads[parameter] for advice, grads in chain.variants(params, cache, case.Xb, case.Yb).items()
    }
    upstream = {a: case.reference.grad(a) for a in ATOMIC_BY_TARGET[parameter].args if a.startswith("d")}
    found.update(atomic_candidates(parameter, case.reference.values, upstream))
    return found


MANUAL_BACKWARD_EXERCISES = tuple(ManualBackwardExercise(p) for p in PARAM_NAMES)


# --------------------------------------------------------------------- the course's layout

# For every notebook, its graded test cells (by nbgrader grade_id) and the exercise each
# checks. The training test of notebook 4 is not a gradient: it has no entry here.
GRADED_TESTS: dict[str, dict[str, Any]] = {
    "1_atomic_backprop": {exercise.grade_id: exercise for exercise in ATOMIC_EXERCISES},
    "2_fused_cross_entropy": {"test_dlogits": CrossEntropyExercise()},
    "3_fused_batchnorm": {"test_dhprebn": BatchnormExercise()},
    "4_full_training": {exercise.grade_id: exercise for exercise in MANUAL_BACKWARD_EXERCISES},
}
