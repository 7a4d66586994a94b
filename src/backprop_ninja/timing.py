"""How much faster is a hand-written backward pass? Small timing helpers for the notebooks.

Each comparison times two zero-argument functions the same way (best of several rounds, so
that a busy machine slows neither side more than the other) and reports the ratio. The
numbers depend on the machine; the notebooks print them but never test them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .course import NBGRADER_EXECUTION_VARIABLE
from .course import QUICK_TIMING_VARIABLE as QUICK_VARIABLE
from .model import FORWARD_STEPS, PARAM_NAMES, forward_fused

# Set (to 1) by automatic runs — grading, CI — that need the timing cells to run, not their
# numbers: one short round instead of five, which saves a grader about a second a notebook.


def quick() -> bool:
    """One short round: grading, CI, and nbgrader's Validate (which must take seconds)."""
    return os.environ.get(QUICK_VARIABLE) == "1" or bool(os.environ.get(NBGRADER_EXECUTION_VARIABLE))


def seconds_per_call(
    fn: Callable[[], object],
    *,
    rounds: int = 5,
    min_round_seconds: float = 0.05,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The best, over ``rounds``, of the mean time of one call of ``fn``.

    Each round repeats ``fn`` enough times to last about ``min_round_seconds``, so that the
    clock's resolution does not matter for fast functions. In a quick run (``quick()``): one
    round of a few milliseconds. ``clock``: seconds now (tests give a clock of their own).
    """
    if quick():
        rounds, min_round_seconds = 1, min(min_round_seconds, 0.005)
    fn()  # warm up (first-call allocations, lazy initialisation)
    start = clock()
    fn()
    once = max(clock() - start, 1e-7)
    number = max(1, int(min_round_seconds / once))
    best = float("inf")
    for _ in range(rounds):
        start = clock()
        for _ in range(number):
            fn()
        best = min(best, (clock() - start) / number)
    return best


@dataclass(frozen=True)
class SpeedComparison:
    """Seconds per call of two ways of computing the same thing, and their ratio."""

    fast_name: str
    fast_seconds: float
    slow_name: str
    slow_seconds: float

    @property
    def speedup(self) -> float:
        return self.slow_seconds / self.fast_seconds

    def __str__(self) -> str:
        width = max(len(self.fast_name), len(self.slow_name))
        return (
            f"{self.slow_name:{width}s}: {self.slow_seconds * 1e6:9.1f} µs per call\n"
            f"{self.fast_name:{width}s}: {self.fast_seconds * 1e6:9.1f} µs per call\n"
            f"speedup: {self.speedup:.1f}×"
        )


@contextmanager
def one_thread() -> Iterator[None]:
    """Run the block with one torch thread, then restore the previous setting.

    The tensors timed here are tiny: a second thread saves nothing, and on a busy machine
    every parallel region can wait milliseconds for the other core, which makes timings
    meaningless.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def compare_speed(
    fast: Callable[[], object], slow: Callable[[], object], *, fast_name: str, slow_name: str, rounds: int = 5
) -> SpeedComparison:
    """Time ``fast`` and ``slow`` alike (on one thread) and return the comparison; print it
    to see it."""
    with one_thread():
        return SpeedComparison(
            fast_name, seconds_per_call(fast, rounds=rounds), slow_name, seconds_per_call(slow, rounds=rounds)
        )


# ------------------------------------------------------------- the atomic chain, by autograd
def run_steps(values: dict[str, torch.Tensor], first: str, last: str) -> dict[str, torch.Tensor]:
    """Run the exploded forward pass from step ``first`` to step ``last`` (both included).

    ``values`` must hold every input those steps read; the result holds them and every
    intermediate computed.
    """
    names = [step.name for step in FORWARD_STEPS]
    values = dict(values)
    for step in FORWARD_STEPS[names.index(first) : names.index(last) + 1]:
        values[step.name] = step.compute(*(values[name] for name in step.inputs))
    return values


def autograd_chain(
    values: dict[str, torch.Tensor], wrt: str, first: str, last: str, grad_output: torch.Tensor | None = None
) -> Callable[[], torch.Tensor]:
    """A function that backpropagates, with autograd, from ``last`` to ``wrt`` through the
    exploded steps ``first`` … ``last``.

    The steps run once, here, to build the graph; the returned function only runs the
    backward pass (one small kernel per atomic step, as in notebook 1), so timing it times
    the atomic chain. ``grad_output`` is the gradient arriving at ``last`` (1 for the loss).
    """
    with torch.enable_grad():
        x = values[wrt].detach().requires_grad_()
        out = run_steps({**values, wrt: x}, first, last)[last]
    grad_output = torch.ones_like(out) if grad_output is None else grad_output

    def backward() -> torch.Tensor:
        (grad,) = torch.autograd.grad(out, x, grad_outputs=grad_output, retain_graph=True)
        return grad

    return backward


# ----------------------------------------------------------------- a whole training step
def training_step_speed(
    params: dict[str, torch.Tensor],
    Xb: torch.Tensor,
    Yb: torch.Tensor,
    manual_backward: Callable,
    *,
    rounds: int = 5,
) -> SpeedComparison:
    """Forward + backward of one minibatch: ``manual_backward`` against ``loss.backward()``.

    Both sides run the same fused forward pass; the manual side runs it under
    ``torch.no_grad()`` (no graph to record), the autograd side records the graph and calls
    ``loss.backward()``. Neither side updates the parameters.
    """
    leaves = {name: params[name].detach().clone().requires_grad_() for name in PARAM_NAMES}
    frozen = {name: params[name].detach().clone() for name in PARAM_NAMES}

    @torch.enable_grad()
    def with_autograd():
        for p in leaves.values():
            p.grad = None
        loss, _ = forward_fused(leaves, Xb, Yb)
        loss.backward()

    @torch.no_grad()
    def by_hand():
        _, cache = forward_fused(frozen, Xb, Yb)
        return manual_backward(frozen, cache, Xb, Yb)

    return compare_speed(
        by_hand,
        with_autograd,
        fast_name="manual backward (no autograd)",
        slow_name="loss.backward() (autograd)",
        rounds=rounds,
    )
