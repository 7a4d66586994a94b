"""Notebook 4's training test, its second half: a fresh model trained with the student's
backward pass only (``testing.test_training`` checks every gradient first)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..data import load_splits
from ..model import LECTURE_SEED, calibrate_batchnorm, init_params, split_loss
from ..training import train
from . import messages
from .calling import warnings_to_stdout
from .verdicts import AlreadyPrinted, GradeFailure, show_verdict

# Captured when this module is imported, before any student cell runs (see testing.py).
_train = train
_load_splits = load_splits

# A fresh model (n_hidden 200, the lecture's seed) trained for TRAINING_STEPS minibatches on
# the real training set must reach a calibrated validation loss of at most TRAINING_BOUND.
# Measured with the reference backward pass: 2.369 (about 1 s on one core); zero gradients
# leave it at 3.686 and a flipped sign drives it past 10,000. The bound leaves room for the
# rounding differences of any correct formula.
TRAINING_STEPS = 2000
TRAINING_BOUND = 2.45


@dataclass(frozen=True)
class TrainingResult(AlreadyPrinted):
    """What ``test_training`` measured: calibrated validation losses before and after."""

    steps: int
    initial_loss: float
    final_loss: float
    bound: float

    def __str__(self) -> str:
        return (
            f"✅ training: validation loss {self.initial_loss:.4f} → {self.final_loss:.4f} "
            f"after {self.steps} steps (bound {self.bound})"
        )


def check_training(
    backward: Callable,
    *,
    steps: int = TRAINING_STEPS,
    bound: float = TRAINING_BOUND,
    n_hidden: int = 200,
    seed: int = LECTURE_SEED,
) -> TrainingResult:
    """Train a fresh model with ``backward`` only; its validation loss must fall to ``bound``.

    Prints and returns the losses; raises ``GradeFailure`` saying what went wrong.
    """
    splits = _load_splits()
    g = torch.Generator().manual_seed(seed)
    params = init_params(len(splits.vocab), n_hidden=n_hidden, generator=g)

    def val_loss() -> float:
        return split_loss(params, calibrate_batchnorm(params, splits.Xtr), splits.Xdev, splits.Ydev)

    initial = val_loss()
    name = getattr(backward, "__name__", "the backward function")

    def checked_backward(params, cache, Xb, Yb):
        grads = backward(params, cache, Xb, Yb)
        if not isinstance(grads, dict):
            raise GradeFailure(messages.not_a_dict(name, type(grads).__name__))
        for key, value in params.items():
            got = grads.get(key)
            if not isinstance(got, torch.Tensor) or got.shape != value.shape:
                what = (
                    "nothing"
                    if got is None
                    else (
                        f"shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
                    )
                )
                raise GradeFailure(
                    f"{name}'s result has {what} for {key!r}, expected a "
                    f"gradient of shape {tuple(value.shape)}"
                )
        return grads

    try:
        with warnings_to_stdout():
            _train(params, splits.Xtr, splits.Ytr, checked_backward, steps=steps, generator=g, progress=False)
    except GradeFailure:
        raise
    except NotImplementedError:
        raise GradeFailure(messages.not_implemented(name)) from None
    except Exception as error:  # the student's function raised, or returned unusable gradients
        raise GradeFailure(f"training with {name} raised {type(error).__name__}: {error}") from None
    final = val_loss()
    where = f"after {steps} training steps the validation loss is {final:.4g}"
    if not math.isfinite(final):
        raise GradeFailure(f"{where}: training diverged — a gradient with the wrong sign or far too large?")
    if final > initial:
        raise GradeFailure(
            f"{where}, up from {initial:.4g} at initialisation: the loss rose, "
            f"so some gradient points the wrong way (a flipped sign?)"
        )
    if final > initial - 0.05:
        raise GradeFailure(
            f"{where}, {initial:.4g} at initialisation: the model barely "
            f"learned — are the gradients (nearly) zero?"
        )
    if final > bound:
        raise GradeFailure(
            f"{where}, above the bound {bound}: it learns, but too slowly — "
            f"is a gradient too small or missing a term?"
        )
    result = TrainingResult(steps, initial, final, bound)
    show_verdict("training", True, None, "ok", str(result))
    return result
