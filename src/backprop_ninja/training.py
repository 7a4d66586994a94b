"""Training the MLP with a manual backward pass (no autograd), as in exercise 4."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from tqdm.auto import tqdm

from .model import PARAM_NAMES, forward_fused

# manual_backward(params, cache, Xb, Yb) -> {parameter name: gradient}
Backward = Callable[[dict, dict, torch.Tensor, torch.Tensor], dict]


def lecture_learning_rate(step: int) -> float:
    """0.1, then 0.01 from step 100,000 on."""
    return 0.1 if step < 100_000 else 0.01


@dataclass
class TrainingRun:
    """What ``train`` returns: the loss of every step's minibatch."""

    losses: list[float] = field(default_factory=list)


@torch.no_grad()
def train(
    params: dict[str, torch.Tensor],
    Xtr: torch.Tensor,
    Ytr: torch.Tensor,
    backward: Backward,
    *,
    steps: int,
    batch_size: int = 32,
    learning_rate: Callable[[int], float] = lecture_learning_rate,
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> TrainingRun:
    """SGD on ``params`` (updated in place) with gradients from ``backward`` only.

    Runs under ``torch.no_grad()``: autograd could not help even if it were asked to.
    """
    g = generator if generator is not None else torch.Generator().manual_seed(42)
    run = TrainingRun()
    bar = tqdm(range(steps), disable=not progress, mininterval=0.5, desc="training")
    for step in bar:
        ix = torch.randint(0, Xtr.shape[0], (batch_size,), generator=g)
        Xb, Yb = Xtr[ix], Ytr[ix]
        loss, cache = forward_fused(params, Xb, Yb)
        grads = backward(params, cache, Xb, Yb)
        lr = learning_rate(step)
        for name in PARAM_NAMES:
            params[name] -= lr * grads[name]
        run.losses.append(loss.item())
        if step % 1000 == 0:
            bar.set_postfix(loss=f"{run.losses[-1]:.4f}")
    return run
