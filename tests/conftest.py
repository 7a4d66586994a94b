"""Fixtures shared by the test modules (no test module imports another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backprop_ninja.course import REPO_ROOT


@pytest.fixture
def course_root(tmp_path: Path) -> Path:
    """A course root with the repository's solutions and released notebooks (linked), and
    nothing else: a class graded here writes only inside ``tmp_path``."""
    root = tmp_path / "course"
    root.mkdir()
    for folder in ("solutions", "notebooks"):
        (root / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    return root


@pytest.fixture(scope="session")
def demo_class_module():
    """grader/make_demo_class.py (a script, not a package module): filled notebooks and the
    mutation helpers that the demo class and the tamper suite are made of."""
    from helpers import load_demo_module

    return load_demo_module()


@pytest.fixture(scope="session")
def graded_demo(tmp_path_factory, demo_class_module):
    """The demo class graded once by the local pool, with feedback and CSVs (the slow part),
    shared by the pipeline tests and the Dask comparison. The CSVs are also kept as text, as
    they were right after grading (a later regrade test changes the class)."""
    import time

    from helpers import VERIFY_SEED, WORKERS, digests, make_course_root

    from backprop_ninja.classroom import Course, autograde_class, export_class, feedback_class

    course = Course.load(root=make_course_root(tmp_path_factory.mktemp("grading")))
    demo_class_module.build(course)
    before = digests(course.submitted)
    start = time.monotonic()
    statuses = autograde_class(course, workers=WORKERS, verify_seed=VERIFY_SEED, progress=False)
    pages = feedback_class(course, workers=WORKERS)
    exported = export_class(course)
    print(f"\ndemo class: graded with feedback and CSVs in {time.monotonic() - start:.0f} s")
    csv = {path.name: path.read_text() for path in exported}
    return dict(course=course, before=before, statuses=statuses, pages=pages, exported=exported, csv=csv)
