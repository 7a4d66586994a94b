"""nbgrader's exchange on the hub: its folders with nbgrader's documented permissions, the
four notebooks released into it, and the course's feedback pages released the way
``nbgrader fetch_feedback`` finds them.

    <root>/                        1777: everyone may create (nbgrader's docs), no one removes others'
    <root>/backprop_ninja/outbound 0755: the released notebooks, readable by all
    <root>/backprop_ninja/inbound  3733: students write submissions; cannot list or remove others'
    <root>/backprop_ninja/feedback 0711: a page is read only by whoever knows its name (a hash of
                                   the submission's secret, which only the submitter holds)
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..course import ASSIGNMENT
from ..grading.classdir import Course, GradingError

ROOT_MODE = 0o1777
INBOUND_MODE = 0o3733  # nbgrader's 2733 (setgid) plus the sticky bit
FEEDBACK_MODE = 0o711
PAGE_MODE = 0o644


def prepare_exchange(root: Path) -> Path:
    """Create the exchange root (mode 1777) if needed; return the course's folder in it."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(ROOT_MODE)
    return root / ASSIGNMENT


def release_assignment(course: Course, root: Path, duedate: str | None = None) -> Path:
    """``nbgrader release_assignment`` of the four student notebooks (notebooks/) into the
    exchange, with the due date (e.g. ``2026-12-24 23:59:00 UTC``) that marks late submissions."""
    course_folder = prepare_exchange(root)
    course.class_dir.mkdir(parents=True, exist_ok=True)
    add = ["db", "assignment", "add", ASSIGNMENT] + ([f"--duedate={duedate}"] if duedate else [])
    if course.run_nbgrader(*add).returncode != 0:
        raise GradingError("nbgrader could not record the assignment (see above)")
    release = ("release_assignment", ASSIGNMENT, "--force", f"--Exchange.root={root}")
    if course.run_nbgrader(*release).returncode != 0:
        raise GradingError("nbgrader release_assignment failed (see above)")
    (course_folder / "inbound").chmod(INBOUND_MODE)
    return course_folder / "outbound" / ASSIGNMENT


def release_feedback(course: Course, root: Path) -> list[Path]:
    """Every feedback page of the class (``make feedback``'s: the grader's verdict on each test) into the
    exchange's feedback folder, named as ``nbgrader fetch_feedback`` looks for it: the md5 of
    the submission's secret and the notebook's name. Returns the pages released."""
    from nbgrader.utils import notebook_hash

    folder = prepare_exchange(root) / "feedback"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(FEEDBACK_MODE)
    released = []
    for student in course.students():
        secret_file = course.submitted / student / ASSIGNMENT / "submission_secret.txt"
        pages = sorted((course.feedback / student / ASSIGNMENT).glob("*.html"))
        if not secret_file.is_file() or not pages:
            continue  # collected from an LMS zip, or no feedback written yet
        secret = secret_file.read_text()
        for page in pages:
            target = folder / f"{notebook_hash(secret=secret, notebook_id=page.stem)}.html"
            partial = target.with_suffix(".tmp")
            shutil.copyfile(page, partial)
            partial.chmod(PAGE_MODE)
            os.replace(partial, target)  # a student fetching now sees the old page or the new
            released.append(target)
    return released
