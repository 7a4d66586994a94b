"""The test cases: one set of inputs each, the notebook's own batch or a fresh one (another
seed, batch size, hidden, vocabulary, block and embedding size, dtype; arbitrary upstream
gradients; large logits), with the autograd reference for them.

A visible test and a hidden one run the same *kinds* of fresh inputs (``FRESH_SHAPES``):
the visible with the public ``PUBLIC_SEEDS``, the hidden with secret seeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .model import init_params
from .reference import Reference, reference_gradients


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
    {"batch_size": 7, "n_hidden": 13, "n_embd": 4, "vocab_size": 11, "block_size": 2},
    {
        "batch_size": 50,
        "n_hidden": 40,
        "n_embd": 6,
        "vocab_size": 19,
        "block_size": 4,
        "random_upstream": True,
    },
    {
        "batch_size": 4,
        "n_hidden": 5,
        "n_embd": 2,
        "vocab_size": 7,
        "block_size": 6,
        "dtype": torch.float32,
        "random_upstream": True,
    },
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


def fresh_specs(function: str, seeds) -> list[CaseSpec]:
    """One case per fresh shape of the exercise that calls ``function``, the i-th with the i-th seed."""
    shapes = FRESH_SHAPES_FOR.get(function, FRESH_SHAPES)
    return [CaseSpec(seed=seed, **shape) for seed, shape in zip(seeds, shapes, strict=True)]


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
