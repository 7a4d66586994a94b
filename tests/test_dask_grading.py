"""Grading on a real Dask cluster: a ``LocalCluster`` of 2 worker processes on 127.0.0.1.

The same grading jobs as the local pool, sent to Dask workers: the coordinator alone writes
the gradebook and the class's files, so the demo class must come out exactly as it does from
the local pool (the shared ``graded_demo`` fixture). A worker killed mid-job costs nothing but
a retry; a scheduler nobody runs is a one-line error before anything is graded.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time

import pytest
from helpers import VERIFY_SEED, csv_rows, grade_cells, make_course_root

from backprop_ninja.course import REPO_ROOT
from backprop_ninja.grading import Course, autograde_class, export_class
from backprop_ninja.grading.__main__ import main as classroom_main
from backprop_ninja.grading.classdir import GraderProblem, GradingError

pytestmark = [pytest.mark.dask, pytest.mark.pipeline, pytest.mark.sandbox, pytest.mark.notebooks]


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each; a task whose worker dies is retried once."""
    import dask
    from distributed import Client, LocalCluster

    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        )
    client = Client(cluster)
    yield cluster, client
    client.close()
    cluster.close()


# A graded notebook, a withdrawal by the integrity checks, notebooks nbgrader cannot grade,
# wrong answers: every kind of result, in fewer students than the whole demo class.
COMPARED = ("full_marks", "slips_dc_autograd", "broken_kernel_metadata", "slips_db2_bessel")


def test_demo_students_graded_on_dask_match_the_local_pool(cluster, graded_demo, demo_class_module, tmp_path):
    students = [demo_class_module.DEMO_BY_NAME[name] for name in COMPARED]
    course = Course.load(root=make_course_root(tmp_path))
    demo_class_module.build(course, students)
    statuses = autograde_class(
        course, dask_scheduler=cluster[0].scheduler_address, verify_seed=VERIFY_SEED, progress=False
    )
    export_class(course)
    assert demo_class_module.differences(course, students) == []
    local = {name: graded_demo["statuses"][name] for name in COMPARED}
    assert without_seconds(statuses) == without_seconds(local)
    assert {name: grade_cells(course, name) for name in COMPARED} == {
        name: graded_demo["cells"][name] for name in COMPARED
    }
    for name in ("grades.csv", "grades_by_notebook.csv"):
        assert csv_rows((course.class_dir / name).read_text()) == csv_rows(graded_demo["csv"][name], COMPARED)


def without_seconds(statuses: dict) -> dict:
    """Every state, reason, note and withdrawal; not how long grading took."""
    return {
        student: [(r.notebook, r.state, r.reason, r.notes, r.withdrawn, r.findings) for r in status.notebooks]
        for student, status in statuses.items()
    }


def test_a_worker_killed_mid_job_is_retried_and_the_gradebook_is_complete(
    cluster, demo_class_module, tmp_path
):
    students = [
        demo_class_module.DEMO_BY_NAME[name] for name in ("full_marks", "untouched", "slips_db2_bessel")
    ]
    course = Course.load(root=make_course_root(tmp_path))
    demo_class_module.build(course, students)
    local_cluster, client = cluster
    outcome: dict = {}

    def grade() -> None:
        try:
            outcome["statuses"] = autograde_class(
                course,
                dask_scheduler=local_cluster.scheduler_address,
                verify_seed=VERIFY_SEED,
                progress=False,
            )
        except BaseException as error:  # reported by the main thread
            outcome["error"] = error

    grading = threading.Thread(target=grade)
    grading.start()
    victim = _a_worker_grading(client)
    os.kill(client.run(os.getpid)[victim], signal.SIGKILL)  # mid-job: a kernel is running
    grading.join(timeout=900)
    assert "error" not in outcome, outcome.get("error")
    assert sorted(outcome["statuses"]) == sorted(s.name for s in students)
    assert demo_class_module.differences(course, students) == []  # every point, every note


def _a_worker_grading(client, timeout: float = 300) -> str:
    """The address of a worker that is running a student's grading job now (after a few seconds in)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # a student's job ("grade-…"), not a worker's proof on the model answers ("prove-…")
        busy = [
            worker for worker, keys in client.processing().items() if any("grade-" in str(k) for k in keys)
        ]
        if busy:
            time.sleep(3)  # well inside the job: its first notebook's kernel is running
            return busy[0]
        time.sleep(0.2)
    raise AssertionError("no worker started a grading job")


def test_an_unreachable_scheduler_is_one_line_before_anything_is_graded(course_root, capsys):
    course = Course.load(root=course_root)
    (course.submitted / "ann" / "backprop_ninja").mkdir(parents=True)
    with pytest.raises(GradingError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"):
        autograde_class(course, dask_scheduler="tcp://127.0.0.1:9", progress=False)
    assert not course.status.exists()  # nothing graded, nothing written
    code = classroom_main(
        ["autograde", "--root", str(course.root), "--dask-scheduler", "tcp://127.0.0.1:9", "--no-progress"]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.startswith("error: cannot reach the Dask scheduler")
    assert "\n" not in error


def test_every_dask_worker_proves_itself_and_a_broken_model_answer_grades_nobody(
    cluster, demo_class_module, tmp_path
):
    """Each worker grades the model answers before any student; here notebook 2's model answer
    is wrong, so the run stops with a grader problem and nothing is recorded."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copytree(REPO_ROOT / "solutions", root / "solutions")
    (root / "notebooks").symlink_to(REPO_ROOT / "notebooks", target_is_directory=True)
    path = root / "solutions" / "backprop_ninja" / "2_fused_cross_entropy.ipynb"
    path.write_text(
        path.read_text(encoding="utf-8").replace("dlogits /= n", "dlogits *= 1"), encoding="utf-8"
    )
    course = Course.load(root=root)
    demo_class_module.build(course, [demo_class_module.DEMO_BY_NAME["untouched"]])
    with pytest.raises(GraderProblem, match=r"on the Dask worker .*test_dlogits: 0/5"):
        autograde_class(
            course, dask_scheduler=cluster[0].scheduler_address, verify_seed=VERIFY_SEED, progress=False
        )
    assert not course.status.exists()
    assert not course.autograded.exists()
