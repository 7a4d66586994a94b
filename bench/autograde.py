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

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class

from .report import Row, Target
from .timing import median

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_CLASS_DIR = "grader/work/bench-class"
SECONDS_PER_SUBMISSION_BOUND = 10  # with the sandbox (issue 12)
SANDBOX_OVERHEAD_BOUND = 1.3  # sandboxed ÷ unsandboxed seconds per submission
PARALLEL_SPEEDUP_BOUND = 1.6
DASK_THROUGHPUT_BOUND = 0.9  # Dask LocalCluster (2 worker processes) ÷ the local pool (2 workers)


@cache
def demo_module():
    """grader/make_demo_class.py (a script, not a package module), imported from its path."""
    path = REPO_ROOT / "grader" / "make_demo_class.py"
    spec = importlib.util.spec_from_file_location("make_demo_class", path)
    assert spec is not None, path
    assert spec.loader is not None, path
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
    course: Course,
    workers: int,
    notebooks: tuple[str, ...],
    *,
    sandboxed: bool = True,
    dask_scheduler: str | None = None,
) -> tuple[float, float]:
    """Seconds to autograde the whole class with ``workers`` workers, and the part of them
    spent on what a run does once (registering, starting the fork server). Every submitted
    notebook must be graded (a failure would make the time meaningless)."""
    fixed: dict[str, float] = {}
    start = time.perf_counter()
    statuses = autograde_class(
        course,
        workers=workers,
        progress=False,
        fixed_seconds=fixed,
        sandboxed=sandboxed,
        dask_scheduler=dask_scheduler,
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
    from distributed import LocalCluster

    course = Course.load(root=REPO_ROOT, class_dir=class_dir)
    build_class(course, students, notebooks)
    # "1" and "2": workers, sandboxed (as graded); "1-open": 1 worker without the sandbox;
    # "2-dask": a Dask LocalCluster of 2 worker processes instead of the local pool.
    runs = {"1": (1, True), "2": (2, True), "1-open": (1, False), "2-dask": (2, True)}
    total: dict[str, list[float]] = {run: [] for run in runs}
    fixed: dict[str, list[float]] = {run: [] for run in runs}
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:
        for _ in range(repeats):  # taking turns, like every other figure
            for run, (workers, sandboxed) in runs.items():
                scheduler = cluster.scheduler_address if run == "2-dask" else None
                seconds, once = timed_autograde(
                    course, workers, notebooks, sandboxed=sandboxed, dask_scheduler=scheduler
                )
                total[run].append(seconds)
                fixed[run].append(once)
    finally:
        cluster.close()
        shutil.rmtree(course.class_dir, ignore_errors=True)
    grading = {w: [t - f for t, f in zip(total[w], fixed[w], strict=True)] for w in total}
    per_one = median(grading["1"]) / students
    per_open = median(grading["1-open"]) / students
    # Within each repeat: sandboxed ÷ unsandboxed grading time, 1 worker each.
    overhead = median([a / b for a, b in zip(grading["1"], grading["1-open"], strict=True)])
    # Within each repeat: 1 worker's grading time ÷ 2 workers'.
    speedup = median([a / b for a, b in zip(grading["1"], grading["2"], strict=True)])
    # Within each repeat: the pool's grading time ÷ Dask's (throughput of Dask ÷ the pool's).
    dask_ratio = median([a / b for a, b in zip(grading["2"], grading["2-dask"], strict=True)])
    # Dask's own cost per task: its grading time beyond the pool's, per submission.
    dask_overhead = max(0.0, (median(grading["2-dask"]) - median(grading["2"])) / students)
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
        "seconds_2_dask_workers": total["2-dask"],
        "fixed_seconds_2_dask_workers": fixed["2-dask"],
        "seconds_per_job": per_one,
        "dask_overhead_seconds_per_job": dask_overhead,
        # 10,000 submissions on 100 workers: 100 rounds of one job per worker, each job as long
        # as here plus Dask's per-task overhead (the coordinator records ~0.1 s per result
        # meanwhile, far below one job's seconds).
        "estimate_10000_on_100_workers_hours": 10_000 / 100 * (per_one + dask_overhead) / 3600,
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
        Row(
            "5d",
            "autograde throughput: Dask LocalCluster (2 processes) / local pool (2 workers)",
            dask_ratio,
            "×",
            Target(DASK_THROUGHPUT_BOUND, at_most=False),
            f"{median(grading['2-dask']):.0f} s on Dask vs {median(grading['2']):.0f} s in the pool for "
            f"the same {students} submissions; Dask's cost {dask_overhead:.2f} s per job; estimate "
            f"for 10,000 submissions on 100 workers: "
            f"{data['estimate_10000_on_100_workers_hours']:.1f} h",
            data,
        ),
    ]
