"""Where the training loop's time went: each speed-up of ``training.train``, one at a time.

    python -m bench.ablation [--steps 3000] [--repeats 3] [--quick]

Starts from the loop as it was first written (one ``randint``, ``.item()`` and seven
``p -= lr * grad`` per step, ``Tensor.var`` in the forward pass, ``torch.no_grad()``) and
adds the changes in the order ``train`` made them, all on one thread with the solution's
``manual_backward``. Times are CPU seconds of this thread (``time.thread_time``), which a
busy machine disturbs much less than wall time; the loops are single-threaded, so for them
the two agree on a quiet machine. Interleaved repeats, the best of them: the variants differ
by 5–20 %, less than this virtual machine's own drift from one second to the next, which the
median did not remove (the main bench's figures are ratios within a repeat instead).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from backprop_ninja.data import load_splits
from backprop_ninja.model import BN_EPS, PARAM_NAMES, forward_fused, forward_to_logits
from backprop_ninja.training import CHUNK_STEPS, minibatch_chunks, minibatch_losses, torch_threads

from .figures import Start
from .solutions import load_solution


def first_forward(params, Xb, Yb):
    """``model.forward_fused`` as first written: the lecture's lines, ``Tensor.var`` included."""
    emb = params["C"][Xb]
    embcat = emb.view(emb.shape[0], -1)
    hprebn = embcat @ params["W1"] + params["b1"]
    bnmean = hprebn.mean(0, keepdim=True)
    bnvar = hprebn.var(0, keepdim=True, unbiased=True)
    bnvar_inv = (bnvar + BN_EPS) ** -0.5
    bnraw = (hprebn - bnmean) * bnvar_inv
    hpreact = params["bngain"] * bnraw + params["bnbias"]
    h = torch.tanh(hpreact)
    logits = h @ params["W2"] + params["b2"]
    loss = F.cross_entropy(logits, Yb)
    return loss, {
        "emb": emb,
        "embcat": embcat,
        "hprebn": hprebn,
        "bnraw": bnraw,
        "bnvar_inv": bnvar_inv,
        "hpreact": hpreact,
        "h": h,
        "logits": logits,
    }


def per_step_loop(forward: Callable, foreach: bool) -> Callable:
    """One ``randint`` and one ``.item()`` per step; the update per parameter or foreach."""

    def loop(params, Xtr, Ytr, backward, steps, g):
        tensors = [params[name] for name in PARAM_NAMES]
        losses = []
        for _ in range(steps):
            ix = torch.randint(0, Xtr.shape[0], (32,), generator=g)
            Xb, Yb = Xtr[ix], Ytr[ix]
            loss, cache = forward(params, Xb, Yb)
            grads = backward(params, cache, Xb, Yb)
            if foreach:
                torch._foreach_add_(tensors, [grads[name] for name in PARAM_NAMES], alpha=-0.1)
            else:
                for name in PARAM_NAMES:
                    params[name] -= 0.1 * grads[name]
            losses.append(loss.item())
        return losses

    return loop


def chunked_loop(params, Xtr, Ytr, backward, steps, g):
    """Minibatches per chunk, losses read once per chunk (``train``'s loop until 2026-12-07)."""
    tensors = [params[name] for name in PARAM_NAMES]
    losses = []
    for batches in minibatch_chunks(Xtr, Ytr, steps=steps, batch_size=32, generator=g):
        chunk = []
        for Xb, Yb in batches:
            loss, cache = forward_fused(params, Xb, Yb)
            grads = backward(params, cache, Xb, Yb)
            torch._foreach_add_(tensors, [grads[name] for name in PARAM_NAMES], alpha=-0.1)
            chunk.append(loss)
        losses.extend(torch.stack(chunk).tolist())
    return losses


def chunked_logits_loop(params, Xtr, Ytr, backward, steps, g):
    """``train``'s loop body: each step's logits kept in a buffer, the losses once per chunk."""
    tensors = [params[name] for name in PARAM_NAMES]
    losses = []
    buffer = torch.empty(0)
    slots: tuple[torch.Tensor, ...] = ()
    for batches in minibatch_chunks(Xtr, Ytr, steps=steps, batch_size=32, generator=g):
        for i, (Xb, Yb) in enumerate(batches):
            cache = forward_to_logits(params, Xb)
            if not slots:
                buffer = cache["logits"].new_empty((CHUNK_STEPS, *cache["logits"].shape))
                slots = buffer.unbind(0)
            slots[i].copy_(cache["logits"])
            grads = backward(params, cache, Xb, Yb)
            torch._foreach_add_(tensors, [grads[name] for name in PARAM_NAMES], alpha=-0.1)
        losses.extend(minibatch_losses(buffer[: len(batches)], torch.stack([Yb for _, Yb in batches])))
    return losses


# name → (loop, context manager); each adds one change to the one before.
VARIANTS = {
    "as first written (no_grad)": (per_step_loop(first_forward, foreach=False), torch.no_grad),
    "+ lean forward_fused (no Tensor.var)": (per_step_loop(forward_fused, foreach=False), torch.no_grad),
    "+ one _foreach_add_ update": (per_step_loop(forward_fused, foreach=True), torch.no_grad),
    "+ minibatches and losses per chunk": (chunked_loop, torch.no_grad),
    "+ inference_mode": (chunked_loop, torch.inference_mode),
    "+ losses per chunk from the logits (= train)": (chunked_logits_loop, torch.inference_mode),
}


def ablation(*, steps: int, repeats: int) -> dict[str, float]:
    """CPU µs per step of every variant (best of interleaved repeats)."""
    splits = load_splits()
    backward = load_solution("4_full_training")["manual_backward"]
    start = Start.lecture(len(splits.vocab))
    seconds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    with torch_threads(1):
        for _ in range(repeats):
            for name, (loop, context) in VARIANTS.items():
                params = {k: v.clone() for k, v in start.params.items()}
                began = time.thread_time()
                with context():
                    loop(params, splits.Xtr, splits.Ytr, backward, steps, start.generator())
                seconds[name].append(time.thread_time() - began)
    return {name: min(values) / steps * 1e6 for name, values in seconds.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ablation",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="20 steps, 1 repeat (for CI)")
    args = parser.parse_args(argv)
    steps, repeats = (20, 1) if args.quick else (args.steps, args.repeats)
    us = ablation(steps=steps, repeats=repeats)
    first = next(iter(us.values()))
    print(f"training loop, CPU µs per step (1 thread, {steps} steps, best of {repeats})")
    for name, value in us.items():
        print(f"  {name:40s} {value:7.1f}  ({value / first:.2f}× the first)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
