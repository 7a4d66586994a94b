"""Points nbgrader gave that the course does not trust, and withdrawing them in the gradebook.

nbgrader runs the student's notebook in the student's kernel: code there can patch torch or
the tests. So after autograding, every notebook that earned points is also checked by the
static integrity scan (``backprop_ninja.integrity``) and by the trusted verifier, which runs
the answer cells on fresh secret inputs in a separate process (``backprop_ninja.verify``).
A test that earned points but is voided by a finding or failed by the verifier gets a
manual score of 0, and the answer cell that defines the function gets a one-line comment
(nbgrader keeps comments only on answer cells); both show in the formgrader and the feedback.
The checks can only take points away, never give any.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..course import ASSIGNMENT
from ..exercises import GRADED_TESTS
from ..text import printable

VERIFY_TIMEOUT = 60  # seconds for the verifier's child process, per notebook


def answer_cell_of(notebook: str, test_id: str) -> str:
    """The grade_id of the answer cell whose function a test checks (= the function's name)."""
    from ..integrity import DEPENDENT_TESTS

    exercise = GRADED_TESTS[notebook].get(test_id)
    return exercise.function if exercise is not None else DEPENDENT_TESTS[notebook][test_id]


def untrusted_tests(
    submitted: Path,
    notebook: str,
    *,
    source: Path,
    verify_timeout: float = VERIFY_TIMEOUT,
    verify_seed: int | None = None,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """Test grade_id → one line saying why its points cannot be trusted (tests not listed are fine).

    The whole integration with the integrity scan and the verifier is here. ``cache_dir``:
    verifier verdicts of identical answer cells are reused within one grading run (many
    students submit a notebook untouched, or the same code). ``verify_seed``: the verifier's
    fresh inputs from this seed instead of secret ones (reproducible runs, tests).
    """
    reasons = integrity_reasons(submitted, notebook, source=source)
    verdicts = _verdicts(submitted, notebook, source, verify_timeout, verify_seed, cache_dir)
    for test_id, (ok, message) in verdicts.items():
        if not ok:
            reasons.setdefault(test_id, f"verifier: {message}")
    return reasons


def integrity_reasons(submitted: Path, notebook: str, *, source: Path) -> dict[str, str]:
    """Test grade_id → the integrity scan's first finding against it (static: nothing runs)."""
    from ..integrity import affected_tests, scan_notebook

    return {
        test_id: f"integrity: {findings[0]}"
        for test_id, findings in affected_tests(scan_notebook(submitted, source), notebook).items()
    }


def _verdicts(
    submitted: Path, notebook: str, source: Path, timeout: float, seed: int | None, cache_dir: Path | None
) -> dict[str, tuple[bool, str]]:
    from ..verify import verify_notebook

    key = _answers_key(submitted, notebook, source)
    cached = cache_dir / f"{key}.json" if cache_dir is not None and key else None
    if cached is not None and cached.exists():
        return {k: tuple(v) for k, v in json.loads(cached.read_text()).items()}
    verdicts = {
        test_id: (bool(v.ok), v.message)
        for test_id, v in verify_notebook(
            submitted, notebook, timeout=timeout, seed=seed, source_path=source
        ).items()
    }
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps(verdicts))
        partial.replace(cached)  # atomic: parallel workers may write the same key
    return verdicts


def _answers_key(submitted: Path, notebook: str, source: Path) -> str | None:
    """A digest of everything the verifier's verdict depends on: the notebook and the text
    of the submission's answer cells. None if the submission cannot be read."""
    from ..integrity import SubmissionError, load_submission

    try:
        cells, _ = load_submission(submitted, source, notebook)
    except SubmissionError:
        return None
    digest = hashlib.sha256(notebook.encode())
    for cell in cells:
        if cell.role == "answer":
            digest.update(b"\0" + cell.label.encode() + b"\0" + cell.source.encode())
    return digest.hexdigest()


def checked_tests(notebook: str) -> list[str]:
    """Every test of the notebook whose points the checks vouch for."""
    from ..integrity import DEPENDENT_TESTS

    return [*GRADED_TESTS[notebook], *DEPENDENT_TESTS.get(notebook, {})]


def withdraw_points(
    gradebook, student: str, notebook: str, reasons: dict[str, str], *, needs_review: bool = False
) -> dict[str, str]:
    """Set the manual score of every test in ``reasons`` that earned points to 0 and explain
    it on the answer cell. Returns the tests whose points were withdrawn, with the reason."""
    from nbgrader.api import MissingEntry

    withdrawn: dict[str, str] = {}
    comments: dict[str, list[str]] = {}
    for test_id, reason in sorted(reasons.items()):
        try:
            grade = gradebook.find_grade(test_id, notebook, ASSIGNMENT, student)
        except MissingEntry:
            continue
        if not grade.auto_score:
            # It earned nothing: nothing to take away, but an integrity finding is still
            # shown (issue 13), so that a failed test says "no autograd", not only its error.
            if reason.startswith("integrity:"):
                comments.setdefault(answer_cell_of(notebook, test_id), []).append(f"{test_id}: {reason}")
            continue
        grade.manual_score = 0.0
        grade.needs_manual_grade = needs_review  # True: the formgrader lists it for a TA
        withdrawn[test_id] = reason
        comments.setdefault(answer_cell_of(notebook, test_id), []).append(
            f"{test_id}: {grade.auto_score:g} point(s) withdrawn — {reason}"
        )
    for cell, lines in comments.items():
        try:
            comment = gradebook.find_comment(cell, notebook, ASSIGNMENT, student)
        except MissingEntry:
            continue
        comment.manual_comment = printable("\n".join(lines))
    gradebook.db.commit()
    return withdrawn
