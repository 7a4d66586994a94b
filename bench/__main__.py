"""``python -m bench``: run every figure, print the table, write it as JSON.

python -m bench                  # the real figures (a few minutes), bench/results.json
python -m bench --quick --out X  # tiny settings, for CI: checks the bench runs, not speed
python -m bench --only training  # figures 1, 1', 1'', 1t and 2 alone; their rows replaced in results.json
python -m bench --only full-run  # figures 1a-1c alone (the lecture's 200,000 steps), likewise
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from backprop_ninja.course import NOTEBOOKS
from backprop_ninja.data import load_splits

from . import autograde, figures, fused, sandbox_start
from .report import Row, header, load_average, merge_json, table, write_json
from .solutions import SOLUTIONS_DIR, load_solution

RESULTS = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Settings:
    training_steps: int  # steps per timed training run (figures 1, 2)
    training_repeats: int
    thread_steps: int  # steps per timed run of the thread-count comparison
    full_run_steps: int  # the lecture's whole training (figure 1a–c)
    fused_calls: int  # calls per timed round (figures 3, 4)
    fused_repeats: int
    autograde_students: int  # figure 5: the bench class's size …
    autograde_notebooks: tuple[str, ...]  # … what each submits …
    autograde_repeats: int  # … and how many times it is graded with 1 and with 2 workers
    sandbox_repeats: int  # figure 5b: sandboxes started each way


FULL = Settings(
    training_steps=2000,
    training_repeats=5,
    thread_steps=400,
    full_run_steps=figures.LECTURE_STEPS,
    fused_calls=2000,
    fused_repeats=7,
    autograde_students=2,
    autograde_notebooks=NOTEBOOKS,
    autograde_repeats=3,
    sandbox_repeats=5,
)
# Notebook 2 alone is the quickest to grade; two students so that two workers have work.
QUICK = Settings(
    training_steps=20,
    training_repeats=2,
    thread_steps=10,
    full_run_steps=200,
    fused_calls=10,
    fused_repeats=2,
    autograde_students=2,
    autograde_notebooks=NOTEBOOKS[1:2],
    autograde_repeats=1,
    sandbox_repeats=1,
)


def training_rows(settings: Settings, splits, manual_backward) -> list[Row]:
    """Figures 1, 1', 1'', 1t and 2: the course's training loop against its baselines."""
    rows = figures.training_loops(
        splits, manual_backward, steps=settings.training_steps, repeats=settings.training_repeats
    )
    rows[2:2] = figures.thread_choice(
        splits, manual_backward, steps=settings.thread_steps, repeats=settings.training_repeats
    )
    return rows


def run(settings: Settings, *, solutions: Path, progress: bool) -> list[Row]:
    splits = load_splits()
    atomic = load_solution("1_atomic_backprop", solutions)
    cross_entropy = load_solution("2_fused_cross_entropy", solutions)["cross_entropy_backward"]
    batchnorm = load_solution("3_fused_batchnorm", solutions)["batchnorm_backward"]
    manual_backward = load_solution("4_full_training", solutions)["manual_backward"]

    rows = training_rows(settings, splits, manual_backward)
    rows += figures.full_run(splits, manual_backward, steps=settings.full_run_steps, progress=progress)
    rows += fused.fused_versus_atomic(
        splits, atomic, cross_entropy, batchnorm, calls=settings.fused_calls, repeats=settings.fused_repeats
    )
    rows += autograde.autograde_speed(
        students=settings.autograde_students,
        notebooks=settings.autograde_notebooks,
        repeats=settings.autograde_repeats,
    )
    rows += sandbox_start.sandbox_start(repeats=settings.sandbox_repeats)
    if settings is QUICK:  # too small for any target to mean anything
        for row in rows:
            row.target_applies = False
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings: checks that every figure runs (seconds, not minutes)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write the JSON (default bench/results.json; --quick writes none unless given)",
    )
    parser.add_argument(
        "--solutions",
        type=Path,
        default=SOLUTIONS_DIR,
        help="the directory of the solution notebooks to time",
    )
    parser.add_argument(
        "--only",
        choices=["training", "full-run"],
        default=None,
        help="training: figures 1, 1', 1'', 1t and 2 alone (a few minutes); full-run: figures "
        "1a-1c alone (about a minute); their rows replace the same figures' rows in the "
        "results, the rest of the file stays",
    )
    args = parser.parse_args(argv)
    settings = QUICK if args.quick else FULL
    out = args.out if args.out is not None else (None if args.quick else RESULTS)

    load_before = load_average()
    began = time.perf_counter()
    if args.only:
        manual_backward = load_solution("4_full_training", args.solutions)["manual_backward"]
        if args.only == "training":
            rows = training_rows(settings, load_splits(), manual_backward)
        else:
            rows = figures.full_run(
                load_splits(), manual_backward, steps=settings.full_run_steps, progress=sys.stderr.isatty()
            )
        if args.quick:
            for row in rows:
                row.target_applies = False
    else:
        rows = run(settings, solutions=args.solutions, progress=sys.stderr.isatty())
    info = header(
        quick=args.quick,
        load_before=load_before,
        load_after=load_average(),
        settings={**asdict(settings), "bench_seconds": round(time.perf_counter() - began, 1)},
    )
    if info["busy"]:  # times and ratios are printed and kept, but judged against no target
        for row in rows:
            if row.unit:  # the losses (unitless) do not depend on the load
                row.target_applies = False
    print(table(rows, info))
    if out is not None and args.only and out.exists():
        merge_json(out, rows, info)
    elif out is not None:
        write_json(out, rows, info)
        print(f"\nwritten to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
