"""Lateness: when a submission was handed in, against the assignment's due date.

The time is nbgrader's: the ``timestamp.txt`` that ``nbgrader submit`` writes into a
submission and ``nbgrader collect`` keeps in submitted/<student>/backprop_ninja/ (an LMS zip
has one only where the collector's regexp has a ``timestamp`` group: nbgrader's
ZipCollectApp then writes it). The due date is the gradebook's (``make hub-release
DUEDATE=…``, or ``nbgrader db assignment add backprop_ninja --duedate=…``), with any extension
nbgrader records for the student. The coordinator records the time with the student's
submission (``gradebook.record``), so the gradebook's ``total_seconds_late`` says how late it
was; the table, the CSV files, the feedback page and the class report show it.

No points are taken for lateness unless nbgrader's late-submission plugin is configured
(``c.LateSubmissionPlugin.penalty_method = "zero"``, or a plugin of the course's own as
``c.AssignLatePenalties.plugin_class``): ``assign_late_penalties`` then asks it, per notebook,
exactly as nbgrader's autograde would.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ..course import ASSIGNMENT

TIMESTAMP_FILE = "timestamp.txt"


def submission_time(folder: Path) -> datetime.datetime | None:
    """The time (naive UTC, as nbgrader stores it) in a submission folder's timestamp.txt;
    None if there is none or it cannot be read as a time (then nothing is late)."""
    from nbgrader.utils import parse_utc

    path = Path(folder) / TIMESTAMP_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()[:100]
        return parse_utc(text) if text else None
    except (OSError, ValueError, OverflowError):
        return None


def lateness_text(seconds: float | None) -> str:
    """How late, in words a person reads at a glance: ``"2 h 13 min late"``, ``"3 d 4 h late"``,
    ``"40 s late"``; ``""`` for a submission on time (or with no time or no due date)."""
    if not seconds or seconds <= 0:
        return ""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    if days:
        parts = [f"{days} d"] + ([f"{hours} h"] if hours else [])
    elif hours:
        parts = [f"{hours} h"] + ([f"{minutes} min"] if minutes else [])
    elif minutes:
        parts = [f"{minutes} min"]
    else:
        parts = [f"{max(secs, 1)} s"]
    return " ".join(parts) + " late"


def assign_late_penalties(course, gb, student: str) -> float:
    """Each notebook's late-submission penalty from the plugin the course configures
    (nbgrader's ``AssignLatePenalties.plugin_class``, by default ``LateSubmissionPlugin`` whose
    ``penalty_method`` ``none`` takes nothing), bounded by the notebook's score as nbgrader
    bounds it; returns the submission's total penalty. Not late: every penalty is cleared."""
    from nbgrader.preprocessors import AssignLatePenalties

    submission = gb.find_submission(ASSIGNMENT, student)
    late = submission.total_seconds_late
    plugin = None
    if late > 0:
        assigner = AssignLatePenalties(config=course.config())
        assigner.init_plugin()
        plugin = assigner.plugin_inst
    total = 0.0
    for notebook in submission.notebooks:
        notebook.late_submission_penalty = None
        if plugin is None:
            continue
        penalty = plugin.late_submission_penalty(student, notebook.score, late)
        if penalty is not None:
            notebook.late_submission_penalty = min(max(float(penalty), 0.0), float(notebook.score))
            total += notebook.late_submission_penalty
    return total
