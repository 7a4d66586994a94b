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
from functools import lru_cache
from pathlib import Path

from backprop_ninja import forkserver
from backprop_ninja.classroom import Course, autograde_class, register_assignment
from backprop_ninja.classroom.course import grading_environment
from backprop_ninja.exercises import ASSIGNMENT, NOTEBOOKS

from .report import Row, Target
from .timing import median

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLASS_DIR = "grader/work/bench-class"
SECONDS_PER_SUBMISSION_BOUND = 12
PARALLEL_SPEEDUP_BOUND = 1.6


@lru_cache(maxsize=None)
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


def timed_autograde(course: Course, workers: int, notebooks: tuple[str, ...]) -> float:
    """Seconds to autograde the whole class with ``workers`` workers; every submitted
    notebook must be graded (a failure would make the time meaningless)."""
    start = time.perf_counter()
    statuses = autograde_class(course, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    failed = [f"{student}/{r.notebook}: {r.state} {r.reason}" for student, status in statuses.items()
              for r in status.notebooks if r.notebook in notebooks and not r.graded]
    if failed:
        raise RuntimeError("the bench class was not fully graded: " + "; ".join(failed[:3]))
    return seconds


def timed_fixed_costs(course: Course) -> float:
    """Seconds of what every ``autograde_class`` run does once, however large the class:
    registering the assignment and starting (and stopping) the fork server."""
    start = time.perf_counter()
    register_assignment(course)
    server = forkserver.start(grading_environment())
    if server is not None:
        server.stop()
    return time.perf_counter() - start


def autograde_speed(*, students: int, repeats: int,
                    notebooks: tuple[str, ...] = NOTEBOOKS,
                    class_dir: str = BENCH_CLASS_DIR) -> list[Row]:
    """Figure 5: seconds per submission with one worker, and 1-worker / 2-worker throughput.

    Every ``autograde_class`` run first registers the assignment and starts the fork server
    (fixed seconds, paid once per class, however large); the figures are per submission, so
    those fixed costs are timed on their own and taken out. The JSON keeps the raw totals.
    """
    course = Course.load(root=REPO_ROOT, class_dir=class_dir)
    build_class(course, students, notebooks)
    seconds: dict[str, list[float]] = {"fixed": [], "1": [], "2": []}
    try:
        for _ in range(repeats):  # taking turns, like every other figure
            seconds["fixed"].append(timed_fixed_costs(course))
            for workers in (1, 2):
                seconds[str(workers)].append(timed_autograde(course, workers, notebooks))
    finally:
        shutil.rmtree(course.class_dir, ignore_errors=True)
    fixed = median(seconds["fixed"])
    one, two = median(seconds["1"]), median(seconds["2"])
    per_one = (one - fixed) / students
    # Within each repeat: (1 worker − fixed costs) ÷ (2 workers − fixed costs).
    speedup = median([(a - r) / (b - r) for r, a, b in
                      zip(seconds["fixed"], seconds["1"], seconds["2"], strict=True)])
    size = f"{len(notebooks)}-notebook"
    what = f"{students} identical full-marks {size} submissions"
    data = {"students": students, "notebooks": list(notebooks), "repeats": repeats,
            "seconds_fixed": seconds["fixed"], "seconds_1_worker": seconds["1"],
            "seconds_2_workers": seconds["2"]}
    return [
        Row("5", f"autograde s per {size} submission, sequential", per_one, "s",
            Target(SECONDS_PER_SUBMISSION_BOUND, at_most=True, unit=" s"),
            f"{what}: {one:.0f} s with 1 worker, of which {fixed:.0f} s registering the "
            f"assignment and starting the fork server (once per class, not counted)", data),
        Row("5'", "autograde throughput: 2 workers / 1 worker", speedup, "×",
            Target(PARALLEL_SPEEDUP_BOUND, at_most=False),
            f"{one:.0f} s with 1 worker vs {two:.0f} s with 2 for the same {students} "
            f"submissions (raw ratio {one / two:.2f}×)", data),
    ]
