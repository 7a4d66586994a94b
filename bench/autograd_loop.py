"""The course's training loop with ``loss.backward()`` in place of a manual backward pass.

Figure 2 compares a manual step with an autograd step, so this mirrors
``backprop_ninja.training.train`` — the same minibatch chunks, forward pass, update and
thread count — and differs where the gradients come from: autograd needs each step's loss
to go backward from, which ``train`` computes once per chunk for the record.
"""

from __future__ import annotations

import torch

from backprop_ninja.model import PARAM_NAMES, forward_fused
from backprop_ninja.training import TRAINING_THREADS, lecture_learning_rate, minibatch_chunks, torch_threads


def autograd_train(
    params: dict[str, torch.Tensor],
    Xtr: torch.Tensor,
    Ytr: torch.Tensor,
    *,
    steps: int,
    generator: torch.Generator,
    batch_size: int = 32,
    threads: int | None = TRAINING_THREADS,
) -> list[float]:
    """SGD on ``params`` (updated in place) with gradients from autograd; the losses."""
    tensors = [params[name].requires_grad_() for name in PARAM_NAMES]
    losses: list[float] = []
    step = 0
    with torch_threads(threads):
        for batches in minibatch_chunks(Xtr, Ytr, steps=steps, batch_size=batch_size, generator=generator):
            chunk = []
            for Xb, Yb in batches:
                loss, _ = forward_fused(params, Xb, Yb)
                for p in tensors:
                    p.grad = None
                loss.backward()
                with torch.no_grad():
                    torch._foreach_add_(
                        tensors,
                        [p.grad for p in tensors],  # type: ignore[misc]  # all set by backward()
                        alpha=-lecture_learning_rate(step),
                    )
                chunk.append(loss.detach())
                step += 1
            losses.extend(torch.stack(chunk).tolist())
    for p in tensors:
        p.requires_grad_(False)
        p.grad = None
    return losses
