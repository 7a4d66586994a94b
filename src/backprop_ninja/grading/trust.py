"""Points nbgrader gave that the course does not trust: the integrity scan and the verifier.

nbgrader runs the student's notebook in the student's kernel: code there can patch torch or
the tests. So after autograding, every notebook that earned points is also checked by the
static integrity scan (``backprop_ninja.integrity``) and by the trusted verifier, which runs
the answer cells on fresh secret inputs in a separate process (``backprop_ninja.verify``).
A test that earned points but is voided by a finding or failed by the verifier has its
points withdrawn in the job's result (``job``); the coordinator records a manual score of 0
and a one-line comment on the answer cell (``gradebook``). The checks can only take points
away, never give any.

The hidden kinds of inputs (other sizes, dtypes, upstream gradients, large logits) run only
here, in the verifier, from seeds drawn per grading run by the grader: the student's kernel
runs the visible tests alone, so nothing it can see or print holds a secret. Why a test lost
its points is also the grader's to say (``grade_reasons``): the feedback pages quote that,
never the kernel's output.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..course import DEPENDENT_TESTS
from ..judge.exercises import GRADED_TESTS

VERIFY_TIMEOUT = 60  # seconds for the verifier's child process, per notebook


def answer_cell_of(notebook: str, test_id: str) -> str:
    """The grade_id of the answer cell whose function a test checks (= the function's name)."""
    exercise = GRADED_TESTS[notebook].get(test_id)
    return exercise.function if exercise is not None else DEPENDENT_TESTS[notebook][test_id]


@dataclass
class TrustOutcome:
    """Why tests cannot be trusted (test → one line; tests not listed are fine), and the
    verifier's verdicts with the digest of the answer cells they depend on."""

    reasons: dict[str, str]
    key: str | None
    verdicts: dict[str, tuple[bool, str]]


def untrusted_tests(
    submitted: Path,
    notebook: str,
    *,
    source: Path,
    verify_timeout: float = VERIFY_TIMEOUT,
    verify_seed: int | None = None,
    known_verdicts: dict[str, dict[str, tuple[bool, str]]] | None = None,
) -> TrustOutcome:
    """The whole integration with the integrity scan and the verifier.

    ``known_verdicts``: verdicts this grading run already has, by answers digest (many
    students submit a notebook untouched, or the same code); the coordinator keeps them in
    memory, so nothing a kernel could write decides them. ``verify_seed``: the verifier's
    fresh inputs from this seed instead of secret ones (reproducible runs, tests).
    """
    from ..integrity import SubmissionError, read_submission, scan_submission, unreadable

    try:
        submission = read_submission(submitted, source, notebook)  # read once, shared below
    except SubmissionError as error:
        return TrustOutcome(_from_findings([unreadable(error)], notebook), None, {})
    reasons = _from_findings(scan_submission(submission), notebook)
    key = answers_key(submission)
    verdicts = (known_verdicts or {}).get(key)
    if verdicts is None:
        verdicts = _verdicts(submission, verify_timeout, verify_seed)
    for test_id, (ok, message) in verdicts.items():
        if not ok:
            reasons.setdefault(test_id, f"verifier: {message}")
    return TrustOutcome(reasons, key, verdicts)


def integrity_reasons(submitted: Path, notebook: str, *, source: Path) -> dict[str, str]:
    """Test grade_id → the static scan's first finding against it (nothing runs): shown on
    failed tests too, so that a failed test says "no autograd", not only its error."""
    from ..integrity import scan_notebook

    return _from_findings(scan_notebook(submitted, source), notebook)


def _from_findings(findings, notebook: str) -> dict[str, str]:
    from ..integrity import affected_tests

    return {
        test_id: f"integrity: {found[0]}" for test_id, found in affected_tests(findings, notebook).items()
    }


def _verdicts(submission, timeout: float, seed: int | None) -> dict[str, tuple[bool, str]]:
    from ..verify import verify_submission

    return {
        test_id: (bool(v.ok), v.message)
        for test_id, v in verify_submission(submission, timeout=timeout, seed=seed).items()
    }


def answers_key(submission) -> str:
    """A digest of everything the verifier's verdict depends on: the notebook and the text
    of the submission's answer cells."""
    digest = hashlib.sha256(submission.notebook.encode())
    for cell in submission.answers:
        digest.update(b"\0" + cell.label.encode() + b"\0" + cell.source.encode())
    return digest.hexdigest()


def checked_tests(notebook: str) -> list[str]:
    """Every test of the notebook whose points the checks vouch for."""
    return [*GRADED_TESTS[notebook], *DEPENDENT_TESTS.get(notebook, {})]


# An exception's name as Python spells one: anything else in an error output the kernel sent
# is not quoted (the kernel is the student's, and so is what it says).
_ERROR_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,79}")


def cell_errors(autograded: bytes) -> dict[str, str]:
    """grade_id → the name of the error a graded cell of the executed notebook stopped with."""
    try:
        cells = json.loads(autograded).get("cells", [])
    except (ValueError, RecursionError, AttributeError):
        return {}
    errors: dict[str, str] = {}
    for cell in cells if isinstance(cells, list) else []:
        grade_id = (cell.get("metadata", {}).get("nbgrader") or {}).get("grade_id")
        names = [o.get("ename") for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        if grade_id and names:
            name = str(names[0])
            errors[str(grade_id)] = name if _ERROR_NAME.fullmatch(name) else "an error"
    return errors


def grade_reasons(tests, verdicts: dict[str, tuple[bool, str]], errors: dict[str, str]) -> dict[str, str]:
    """Test → why it did not earn its points, in the grader's words: the withdrawal or the
    integrity finding (as the class table and the gradebook comment say them), else the
    verifier's verdict on its fresh secret inputs, else how the test cell ended in the run.
    ``tests``: the notebook's ``GradedTest``s; ``verdicts``: the verifier's; ``errors``:
    ``cell_errors`` of the executed notebook. Tests that kept all their points are not listed."""
    reasons: dict[str, str] = {}
    for test in tests:
        if test.points >= test.max_points:
            continue
        ok, message = verdicts.get(test.test, (None, ""))
        if test.withdrawn:
            reasons[test.test] = f"points withdrawn — {test.withdrawn}"
        elif test.finding:
            reasons[test.test] = test.finding
        elif ok is False and message:
            reasons[test.test] = message
        else:
            stopped = f" (it stopped with {errors[test.test]})" if test.test in errors else ""
            right = (
                ": your function is right on the grader's fresh inputs, so run your notebook "
                "from the top to see what broke the test"
                if ok
                else ""
            )
            reasons[test.test] = f"the test failed when your notebook ran{stopped}{right}"
    return reasons
