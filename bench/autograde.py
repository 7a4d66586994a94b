"""Figure 5: how long the grading pipeline takes per submission, and how well it parallelises.

The class graded here is made of identical full-marks submissions — the released notebooks
with the solution's answers filled in, built by grader/make_demo_class.py's own
``submission_texts`` — so every run does the same work and the time per submission is that
of a student whose notebooks all run to the end (the common case; a notebook stopped at
the cell timeout would measure the timeout). It lives in its own class directory and
gradebook (grader/work/bench-class), never touching a real class or the demo.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import time
from functools import cache
from pathlib import Path

from backprop_ninja.classroom import Course, autograde_class
from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS

from .report import Row, Target
from .timing import median

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLASS_DIR = "grader/work/bench-class"
SECONDS_PER_SUBMISSION_BOUND = 10  # with the sandbox (issue 12)
SANDBOX_OVERHEAD_BOUND = 1.3  # sandboxed ÷ unsandboxed seconds per submission
PARALLEL_SPEEDUP_BOUND = 1.6


@cache
def demo_module():
    """grader/make_demo_class.py (a script, not a package module), imported from its path."""
    path = REPO_ROOT / "grader" / "make_demo_class.py"
    spec = importlib.util.spec_from_file_location("make_demo_class", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def build_class(course: Course, students: int, notebooks: tuple[str, ...] = NOTEBOOKS) -> list[str]:
    """``students`` identical full-marks submissions of ``notebooks`` in ``course.submitted``."""
    demo = demo_module()
    texts = demo.submission_texts(demo.DEMO_BY_NAME["full_marks"], course.root)
    shutil.rmtree(course.class_dir, ignore_errors=True)
    names = [f"student_{i + 1:02d}" for i in range(students)]
    for name in names:
        folder = course.submitted / name / ASSIGNMENT
        folder.mkdir(parents=True)
        for notebook in notebooks:
            (folder / f"{notebook}.ipynb").write_text(texts[notebook], encoding="utf-8")
    return names


def timed_autograde(
    course: Course, workers: int, notebooks: tuple[str, ...], *, sandboxed: bool = True
) -> tuple[float, float]:
    """Seconds to autograde the whole class with ``workers`` workers, and the part of them
    spent on what a run does once (registering, starting the fork server). Every submitted
    notebook must be graded (a failure would make the time meaningless)."""
    fixed: dict[str, float] = {}
    start = time.perf_counter()
    statuses = autograde_class(
        course, workers=workers, progress=False, fixed_seconds=fixed, sandboxed=sandboxed
    )
    seconds = time.perf_counter() - start
    failed = [
        f"{student}/{r.notebook}: {r.state} {r.reason}"
        for student, status in statuses.items()
        for r in status.notebooks
        if r.notebook in notebooks and not r.graded
    ]
    if failed:
        raise RuntimeError("the bench class was not fully graded: " + "; ".join(failed[:3]))
    return seconds, sum(fixed.values())


def autograde_speed(
    *, students: int, repeats: int, notebooks: tuple[str, ...] = NOTEBOOKS, class_dir: str = BENCH_CLASS_DIR
) -> list[Row]:
    """Figure 5: seconds per submission with one worker, and 1-worker / 2-worker throughput.

    Every ``autograde_class`` run first registers the assignment and starts the fork server
    (fixed seconds, paid once per class, however large); the figures are per submission, so
    each run's own fixed seconds (as the pipeline times them) are taken out. The JSON keeps
    the raw totals.
    """
    course = Course.load(root=REPO_ROOT, class_dir=class_dir)
    build_class(course, students, notebooks)
    # "1" and "2": workers, sandboxed (as graded); "1-open": 1 worker without the sandbox.
    runs = {"1": (1, True), "2": (2, True), "1-open": (1, False)}
    total: dict[str, list[float]] = {run: [] for run in runs}
    fixed: dict[str, list[float]] = {run: [] for run in runs}
    try:
        for _ in range(repeats):  # taking turns, like every other figure
            for run, (workers, sandboxed) in runs.items():
                seconds, once = timed_autograde(course, workers, notebooks, sandboxed=sandboxed)
                total[run].append(seconds)
                fixed[run].append(once)
    finally:
        shutil.rmtree(course.class_dir, ignore_errors=True)
    grading = {w: [t - f for t, f in zip(total[w], fixed[w], strict=True)] for w in total}
    per_one = median(grading["1"]) / students
    per_open = median(grading["1-open"]) / students
    # Within each repeat: sandboxed ÷ unsandboxed grading time, 1 worker each.
    overhead = median([a / b for a, b in zip(grading["1"], grading["1-open"], strict=True)])
    # Within each repeat: 1 worker's grading time ÷ 2 workers'.
    speedup = median([a / b for a, b in zip(grading["1"], grading["2"], strict=True)])
    one, two = median(total["1"]), median(total["2"])
    size = f"{len(notebooks)}-notebook"
    what = f"{students} identical full-marks {size} submissions"
    data = {
        "students": students,
        "notebooks": list(notebooks),
        "repeats": repeats,
        "seconds_1_worker": total["1"],
        "seconds_2_workers": total["2"],
        "seconds_1_worker_no_sandbox": total["1-open"],
        "fixed_seconds_1_worker": fixed["1"],
        "fixed_seconds_2_workers": fixed["2"],
        "fixed_seconds_1_worker_no_sandbox": fixed["1-open"],
    }
    return [
        Row(
            "5",
            f"autograde s per {size} submission, sequential",
            per_one,
            "s",
            Target(SECONDS_PER_SUBMISSION_BOUND, at_most=True, unit=" s"),
            f"{what}, sandboxed: {one:.0f} s with 1 worker, of which {median(fixed['1']):.0f} s "
            f"registering the assignment and starting the fork server (once per class, not counted)",
            data,
        ),
        Row(
            "5s",
            "autograde s per submission: sandboxed / without the sandbox",
            overhead,
            "×",
            Target(SANDBOX_OVERHEAD_BOUND, at_most=True),
            f"{per_one:.1f} s sandboxed vs {per_open:.1f} s with --no-sandbox, 1 worker, same run",
            data,
        ),
        Row(
            "5'",
            "autograde throughput: 2 workers / 1 worker",
            speedup,
            "×",
            Target(PARALLEL_SPEEDUP_BOUND, at_most=False),
            f"{median(grading['1']):.0f} s of grading with 1 worker vs {median(grading['2']):.0f} s "
            f"with 2 for the same {students} submissions (raw ratio with the fixed costs "
            f"{one / two:.2f}×)",
            data,
        ),
    ]
