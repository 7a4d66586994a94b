"""Fixtures shared by the test modules (no test module imports another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backprop_ninja.course import REPO_ROOT

# `make test` runs the suite in parallel (pytest-xdist): a module's tests stay on one worker
# (its module fixtures are made once), and the modules that share something run on one worker
# one after the other: those that grade in the repository's own grader/ folder (the graded demo
# class in grader/section-b and grader/work, the bench's class in grader/work) and those that
# make the hub's Unix accounts. The scheduler sees only test ids, so the modules are listed
# here; collection checks the list against the fixtures and markers the tests really use.
SHARED_MODULES = {
    "repository-classes": {
        "test_bench.py", "test_dask_grading.py", "test_grading_pipeline.py",
        "test_instructor_view.py", "test_postgres_gradebook.py",
    },
    "hub": {"test_hub.py", "test_hub_culling.py"},
}  # fmt: skip
SHARED_BY = {"graded_demo": "repository-classes", "quick_results": "repository-classes", "hub": "hub"}


def parallel_group(nodeid: str) -> str:
    """The worker group of a test id: the shared group its module is in, else its module."""
    module = nodeid.split("::")[0]
    name = module.rsplit("/", 1)[-1]
    return next((group for group, modules in SHARED_MODULES.items() if name in modules), module)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """Work units of whole groups (pytest-xdist's ``loadgroup`` reads marks that pytest 9 no
    longer lets it attach to a test id, so the grouping is done here)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return parallel_group(nodeid)

    return ByGroup(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The parallel groups must hold every test that shares something (else: a usage error
    naming it). Tests marked ``sandbox`` skip, with the reason, where bubblewrap cannot start
    a sandbox (not installed, or no user namespaces); the probe runs once, and only if one
    is collected."""
    for item in items:
        for shared, group in SHARED_BY.items():
            uses = shared in getattr(item, "fixturenames", ()) or item.get_closest_marker(shared)
            if uses and parallel_group(item.nodeid) != group:
                raise pytest.UsageError(
                    f"{item.nodeid} uses {shared}: add its module to SHARED_MODULES[{group!r}] in tests/conftest.py"
                )
    sandboxed = [item for item in items if item.get_closest_marker("sandbox")]
    if not sandboxed:
        return
    from backprop_ninja.sandbox.build import problem

    reason = problem()
    if reason is not None:
        skip = pytest.mark.skip(reason=f"no sandbox here: {reason}")
        for item in sandboxed:
            item.add_marker(skip)


@pytest.fixture
def course_root(tmp_path: Path) -> Path:
    """A course root with the repository's solutions and released notebooks (linked), and
    nothing else: a class graded here writes only inside ``tmp_path``."""
    from helpers import make_course_root

    return make_course_root(tmp_path)


@pytest.fixture(scope="session")
def demo_class_module():
    """grader/make_demo_class.py (a script, not a package module): filled notebooks and the
    mutation helpers that the demo class and the tamper suite are made of."""
    from helpers import load_demo_module

    return load_demo_module()


@pytest.fixture(scope="session")
def graded_demo(demo_class_module):
    """The demo class graded once by the local pool, with feedback, CSVs and the class report
    (the slow part), shared by the pipeline tests, the instructor's view and the Dask
    comparison. It is graded where an instructor's second section would be, in this
    repository's grader/section-b, with ``git status`` taken before and after; the folder is
    removed at the end. The CSVs are also kept as text, as they were right after grading (a
    later regrade test changes the class)."""
    import shutil
    import time

    from helpers import VERIFY_SEED, WORKERS, digests, git_status, grade_cells

    from backprop_ninja.grading import Course, autograde_class, export_class, feedback_class
    from backprop_ninja.grading.class_report import write_report

    work = REPO_ROOT / "grader" / "work"
    created = [path for path in (work, work / "release") if not path.exists()]
    git_before = git_status()
    course = Course.load(class_dir="grader/section-b")
    demo_class_module.build(course)  # refuses a folder that holds a real class
    try:
        before = digests(course.submitted)
        start = time.monotonic()
        statuses = autograde_class(course, workers=WORKERS, verify_seed=VERIFY_SEED, progress=False)
        pages = feedback_class(course, workers=WORKERS)
        exported = export_class(course)
        report, lines = write_report(course)
        cells = {student: grade_cells(course, student) for student in course.students()}
        print(f"\ndemo class: graded with feedback, CSVs and report in {time.monotonic() - start:.0f} s")
        yield {
            "course": course,
            "before": before,
            "statuses": statuses,
            "pages": pages,
            "exported": exported,
            "csv": {path.name: path.read_text() for path in exported},
            "cells": cells,  # every grade cell's score, right after grading
            "report": report,
            "lines": lines,
            "git_before": git_before,
            "git_after": git_status(),
        }
    finally:
        shutil.rmtree(course.class_dir, ignore_errors=True)
        for path in reversed(created):
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL server (Debian's binaries, unix socket in a temporary folder,
    run as nobody when the tests run as root), stopped and removed at the end."""
    from postgres import Server, binaries_folder

    binaries = binaries_folder()
    assert binaries is not None, "no PostgreSQL binaries in /usr/lib/postgresql: `make system-packages`"
    server = Server(binaries).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The course's wheel, built once from this checkout as `make wheel` builds it."""
    from helpers import build_wheel

    return build_wheel(REPO_ROOT, tmp_path_factory.mktemp("dist"))
