"""The bench's training figures (1, 1a–c, 2; figures 3 and 4 are in ``fused``). Each function
measures one comparison and returns rows of the table.

All course-side code runs with the training thread count (``TRAINING_THREADS``); the
lecture's loop runs with torch's default, as it does in the lecture, and once more with the
training thread count so that the table shows how much of the difference threads explain.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from backprop_ninja import model
from backprop_ninja.data import Splits
from backprop_ninja.training import TRAINING_THREADS, torch_threads, train

from . import tuned as tuned_answer
from .autograd_loop import autograd_train
from .lecture import lecture_training_loop
from .report import Row, Target
from .timing import interleaved_seconds, median, median_ratio

N_HIDDEN = 200  # the lecture's exercise-4 model
BATCH_SIZE = 32
LECTURE_STEPS = 200_000
FINAL_TRAIN_BOUND = 2.08
FINAL_VAL_BOUND = 2.12


def copy_params(params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in params.items()}


@dataclass(frozen=True)
class Start:
    """The lecture's starting point: its initial parameters and the generator state after
    drawing them (the lecture keeps drawing minibatches from the same generator)."""

    params: dict[str, torch.Tensor]
    generator_state: torch.Tensor

    @classmethod
    def lecture(cls, vocab_size: int) -> Start:
        g = torch.Generator().manual_seed(model.LECTURE_SEED)
        params = model.init_params(vocab_size, n_hidden=N_HIDDEN, generator=g)
        return cls(params, g.get_state())

    def generator(self) -> torch.Generator:
        g = torch.Generator()
        g.set_state(self.generator_state)
        return g


# ------------------------------------------------------------------ figures 1 and 2: training
def training_loops(splits: Splits, manual_backward: Callable, *, steps: int, repeats: int) -> list[Row]:
    """µs per training step of five loops over the same minibatches, taking turns.

    Figure 1: the course's loop (``train`` + the solution's ``manual_backward``) against the
    lecture's exercise-4 loop; 1t: the same loop with ``bench/tuned.py``'s ``manual_backward``
    (the same gradient written for speed), which separates the answer's cost from the loop's.
    Figure 2: the course loop against itself with ``loss.backward()`` instead of ``manual_backward``.
    """
    start = Start.lecture(len(splits.vocab))
    Xtr, Ytr = splits.Xtr, splits.Ytr
    losses: dict[str, list[float]] = {}

    def course():
        losses["course"] = train(
            copy_params(start.params),
            Xtr,
            Ytr,
            manual_backward,
            steps=steps,
            batch_size=BATCH_SIZE,
            generator=start.generator(),
            progress=False,
        ).losses

    def tuned():
        losses["tuned"] = train(
            copy_params(start.params),
            Xtr,
            Ytr,
            tuned_answer.manual_backward,
            steps=steps,
            batch_size=BATCH_SIZE,
            generator=start.generator(),
            progress=False,
        ).losses

    def autograd():
        losses["autograd"] = autograd_train(
            copy_params(start.params),
            Xtr,
            Ytr,
            steps=steps,
            batch_size=BATCH_SIZE,
            generator=start.generator(),
        )

    def lecture():
        losses["lecture"] = lecture_training_loop(
            start.params, Xtr, Ytr, max_steps=steps, batch_size=BATCH_SIZE, generator=start.generator()
        )

    def lecture_training_threads():
        with torch_threads(TRAINING_THREADS):
            lecture_training_loop(
                start.params, Xtr, Ytr, max_steps=steps, batch_size=BATCH_SIZE, generator=start.generator()
            )

    seconds = interleaved_seconds(
        {
            "course": course,
            "lecture": lecture,
            "lecture_training_threads": lecture_training_threads,
            "autograd": autograd,
            "tuned": tuned,
        },
        repeats=repeats,
    )
    us = {name: median(values) / steps * 1e6 for name, values in seconds.items()}

    def max_difference(a: str, b: str) -> float:
        return max(abs(x - y) for x, y in zip(losses[a], losses[b], strict=True))

    same = (
        f"same minibatches; losses differ by ≤ {max_difference('course', 'lecture'):.1e} over {steps} steps"
    )
    threads = torch.get_num_threads()
    training = Row(
        "1",
        "training µs/step: course loop / lecture's ex-4 loop",
        median_ratio(seconds, "course", "lecture"),
        "×",
        Target(0.15, at_most=True),
        f"course {us['course']:.0f} µs ({TRAINING_THREADS} thread) vs lecture {us['lecture']:.0f} µs "
        f"({threads} threads); {same}",
        {
            "course_us_per_step": us["course"],
            "lecture_us_per_step": us["lecture"],
            "lecture_threads": threads,
            "course_threads": TRAINING_THREADS,
            "steps": steps,
            "repeats": repeats,
            "max_loss_difference": max_difference("course", "lecture"),
            "seconds": seconds,
        },
    )
    context = Row(
        "1'",
        f"  the same, lecture's loop also on {TRAINING_THREADS} thread",
        median_ratio(seconds, "course", "lecture_training_threads"),
        "×",
        None,
        f"lecture {us['lecture_training_threads']:.0f} µs/step on {TRAINING_THREADS} thread "
        f"(how much of figure 1 is the thread count alone)",
        {"lecture_us_per_step": us["lecture_training_threads"]},
    )
    tuned_row = Row(
        "1t",
        "  the same, with bench/tuned.py's manual_backward (not the model answer)",
        median_ratio(seconds, "tuned", "lecture"),
        "×",
        None,
        f"tuned {us['tuned']:.0f} µs vs model answer {us['course']:.0f} µs, same loop "
        f"(model answer ÷ tuned {median_ratio(seconds, 'course', 'tuned'):.2f}×); "
        f"losses differ by ≤ {max_difference('tuned', 'lecture'):.1e}",
        {
            "tuned_us_per_step": us["tuned"],
            "model_answer_over_tuned": median_ratio(seconds, "course", "tuned"),
            "max_loss_difference": max_difference("tuned", "lecture"),
        },
    )
    manual = Row(
        "2",
        "training µs/step: manual backward / loss.backward()",
        median_ratio(seconds, "course", "autograd"),
        "×",
        Target(0.6, at_most=True),
        f"manual {us['course']:.0f} µs vs autograd {us['autograd']:.0f} µs, same loop and "
        f"forward; losses differ by ≤ {max_difference('course', 'autograd'):.1e}",
        {
            "manual_us_per_step": us["course"],
            "autograd_us_per_step": us["autograd"],
            "max_loss_difference": max_difference("course", "autograd"),
        },
    )
    return [training, context, tuned_row, manual]


def thread_choice(splits: Splits, manual_backward: Callable, *, steps: int, repeats: int) -> list[Row]:
    """The course's loop on torch's default thread count against ``TRAINING_THREADS``.

    Kept apart from ``training_loops`` with fewer steps: on a busy machine every parallel
    region waits for a thread that is not running, and a step can take 100 ms.
    """
    start = Start.lecture(len(splits.vocab))

    def course(threads):
        return lambda: train(
            copy_params(start.params),
            splits.Xtr,
            splits.Ytr,
            manual_backward,
            steps=steps,
            batch_size=BATCH_SIZE,
            generator=start.generator(),
            progress=False,
            threads=threads,
        )

    seconds = interleaved_seconds(
        {"training": course(TRAINING_THREADS), "default": course(None)}, repeats=repeats
    )
    us = {name: median(values) / steps * 1e6 for name, values in seconds.items()}
    threads = torch.get_num_threads()
    return [
        Row(
            "1''",
            f"  course loop on {threads} threads (torch's default) / on {TRAINING_THREADS}",
            median_ratio(seconds, "default", "training"),
            "×",
            None,
            f"{us['default']:.0f} vs {us['training']:.0f} µs/step over {steps} steps: why training "
            f"sets {TRAINING_THREADS} thread",
            {
                "default_threads": threads,
                "default_us_per_step": us["default"],
                "training_us_per_step": us["training"],
                "steps": steps,
                "seconds": seconds,
            },
        )
    ]


def full_run(
    splits: Splits, manual_backward: Callable, *, steps: int = LECTURE_STEPS, progress: bool = False
) -> list[Row]:
    """The course's loop trained like the lecture (``steps`` steps) and its final losses."""
    start = Start.lecture(len(splits.vocab))
    params = copy_params(start.params)
    began = time.perf_counter()
    train(
        params,
        splits.Xtr,
        splits.Ytr,
        manual_backward,
        steps=steps,
        batch_size=BATCH_SIZE,
        generator=start.generator(),
        progress=progress,
    )
    wall = time.perf_counter() - began
    stats = model.calibrate_batchnorm(params, splits.Xtr)
    train_loss = model.split_loss(params, stats, splits.Xtr, splits.Ytr)
    val_loss = model.split_loss(params, stats, splits.Xdev, splits.Ydev)
    full = steps == LECTURE_STEPS
    note = "" if full else f" (quick: {steps} steps; the targets are for {LECTURE_STEPS:,})"
    data = {"steps": steps, "wall_seconds": wall, "train_loss": train_loss, "val_loss": val_loss}
    return [
        Row(
            "1a",
            f"final train loss after {steps:,} steps",
            train_loss,
            "",
            Target(FINAL_TRAIN_BOUND, at_most=True, unit=""),
            "calibrated batchnorm" + note,
            data,
            target_applies=full,
        ),
        Row(
            "1b",
            f"final val loss after {steps:,} steps",
            val_loss,
            "",
            Target(FINAL_VAL_BOUND, at_most=True, unit=""),
            "calibrated batchnorm" + note,
            data,
            target_applies=full,
        ),
        Row(
            "1c",
            "wall time of that run",
            wall,
            "s",
            None,
            f"{wall / steps * 1e6:.0f} µs/step incl. progress bar",
            data,
        ),
    ]
