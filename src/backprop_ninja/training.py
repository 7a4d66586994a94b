"""Training the MLP with a manual backward pass (no autograd), as in exercise 4.

The loop does what the lecture's loop does — draw a minibatch, forward, manual backward,
SGD step — but arranged for speed on a CPU, where a step is ~50 small tensor operations and
their fixed overhead, not arithmetic, is what costs time (bench/README.md has the
measurements behind each choice):

* ``torch.inference_mode()`` rather than ``torch.no_grad()``: no autograd bookkeeping
  (version counters, view tracking) on any tensor made in the loop, ~25 µs a step;
* one thread: on an idle machine a second thread gains nothing (no tensor here is big
  enough to split), and on a busy one — a class graded in parallel, CI — every parallel
  region waits for a thread that is not running: 1–100 ms a step instead of 0.2;
* minibatch indices drawn ``CHUNK_STEPS`` steps at a time — the same numbers, in the same
  order, as one ``torch.randint`` per step, so a generator gives the lecture's minibatches;
* the SGD update as one ``torch._foreach_add_`` instead of seven multiply-and-subtract pairs;
* the losses computed once per chunk of steps, from each step's logits: a manual step needs
  the loss for nothing but the record (``model.forward_to_logits`` stops at the logits), and
  one cross-entropy over a chunk costs less than two operations a step did (2–4 % of a step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import PARAM_NAMES, forward_to_logits

# manual_backward(params, cache, Xb, Yb) -> {parameter name: gradient}
Backward = Callable[[dict, dict, torch.Tensor, torch.Tensor], dict]

# Steps whose minibatches are drawn (and whose losses are collected) in one go. Large enough
# to make the per-chunk work negligible, small enough to keep the indices in a few hundred KB
# and to refresh the progress bar a few times a second.
CHUNK_STEPS = 1000
# Threads for the tensor operations while training; None keeps torch's current setting.
TRAINING_THREADS = 1


def lecture_learning_rate(step: int) -> float:
    """0.1, then 0.01 from step 100,000 on."""
    return 0.1 if step < 100_000 else 0.01


@dataclass
class TrainingRun:
    """What ``train`` returns: the loss of every step's minibatch."""

    losses: list[float] = field(default_factory=list)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads, then restore the previous setting."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if count is not None:
            torch.set_num_threads(previous)


def minibatch_chunks(
    Xtr: torch.Tensor,
    Ytr: torch.Tensor,
    *,
    steps: int,
    batch_size: int,
    generator: torch.Generator,
    chunk_steps: int = CHUNK_STEPS,
):
    """Per chunk of steps: the list of that chunk's ``(Xb, Yb)`` minibatches.

    Drawing ``k·batch_size`` indices at once yields exactly the numbers that ``k`` calls of
    ``torch.randint(0, len(Xtr), (batch_size,), generator=generator)`` would, and leaves the
    generator in the same state (tests/test_training.py checks both).
    """
    for start in range(0, steps, chunk_steps):
        count = min(chunk_steps, steps - start)
        ix = torch.randint(0, Xtr.shape[0], (count, batch_size), generator=generator)
        yield list(zip(Xtr[ix].unbind(0), Ytr[ix].unbind(0)))


def minibatch_losses(logits: torch.Tensor, targets: torch.Tensor) -> list[float]:
    """``F.cross_entropy(logits[i], targets[i])`` for every step ``i`` of a chunk, in one call.

    ``logits`` is (steps, n, V) and ``targets`` (steps, n). The same numbers as one call per
    step, to float32 rounding (each minibatch's mean is summed in another order: a few units
    in the last place); tests/test_training.py checks.
    """
    per_example = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
    return per_example.view(targets.shape).mean(1).tolist()


@torch.inference_mode()
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
    threads: int | None = TRAINING_THREADS,
) -> TrainingRun:
    """SGD on ``params`` (updated in place) with gradients from ``backward`` only.

    Runs under ``torch.inference_mode()``: autograd could not help even if it were asked
    to, and the tensors ``backward`` receives (cache, minibatch) are inference tensors. The
    same generator state gives the same minibatches, hence the same losses, on every run.
    ``threads`` is the number of torch threads used while training (restored afterwards).
    """
    g = generator if generator is not None else torch.Generator().manual_seed(42)
    tensors = [params[name] for name in PARAM_NAMES]  # updated in place, in this order
    run = TrainingRun()
    step = 0
    with (
        torch_threads(threads),
        tqdm(total=steps, disable=not progress, desc="training", mininterval=0.5) as bar,
    ):
        # Each step's logits, copied into a slot of one buffer before backward could change
        # them: the losses are computed once per chunk (a step needs them only for the record).
        buffer = torch.empty(0)
        slots: tuple[torch.Tensor, ...] = ()
        for batches in minibatch_chunks(Xtr, Ytr, steps=steps, batch_size=batch_size, generator=g):
            for i, (Xb, Yb) in enumerate(batches):
                cache = forward_to_logits(params, Xb)
                if not slots:
                    buffer = cache["logits"].new_empty((CHUNK_STEPS, *cache["logits"].shape))
                    slots = buffer.unbind(0)
                slots[i].copy_(cache["logits"])
                grads = backward(params, cache, Xb, Yb)
                # p += -lr * grad for all seven parameters in one call.
                torch._foreach_add_(
                    tensors, [grads[name] for name in PARAM_NAMES], alpha=-learning_rate(step)
                )
                step += 1
            targets = torch.stack([Yb for _, Yb in batches])
            run.losses.extend(minibatch_losses(buffer[: len(batches)], targets))
            bar.update(len(batches))
            bar.set_postfix(loss=f"{sum(run.losses[-len(batches) :]) / len(batches):.4f}")
    return run


# ------------------------------------------------------------------ how long notebook 4 trains
LECTURE_STEPS = 200_000
VALIDATE_STEPS = 1_000  # under nbgrader's Validate, which must answer within seconds


def steps_for_this_run() -> tuple[int, str]:
    """Notebook 4's training steps and why: the lecture's 200,000 when the student runs the
    notebook, ``BACKPROP_NINJA_STEPS`` when set (grading, CI, ``make train``), a few under
    nbgrader's Validate (it sets ``NBGRADER_EXECUTION``; the tests, not the training, decide)."""
    import os

    from .course import NBGRADER_EXECUTION_VARIABLE, STEPS_VARIABLE

    if os.environ.get(STEPS_VARIABLE):
        return int(os.environ[STEPS_VARIABLE]), f"{STEPS_VARIABLE} is set"
    if os.environ.get(NBGRADER_EXECUTION_VARIABLE):
        return VALIDATE_STEPS, "a short run under nbgrader; run the notebook yourself for the full 200,000"
    return LECTURE_STEPS, "the lecture's schedule"
