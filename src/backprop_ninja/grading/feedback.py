"""Feedback pages that work offline and are easy to scan (``make feedback``).

nbgrader's feedback page loads MathJax from a CDN (offline, math shows as raw ``$…$``) and
lists every test as "Test cell". Here, in the pages ``student_feedback`` writes
(``feedback_class``: every student of the class, in worker processes):

* math is converted to MathML when the page is built (``safe_html.markdown_html``, with
  latex2mathml), which browsers render natively: no script, no network; the MathJax loader is
  left out; nothing the student wrote runs in the page (``safe_html``), and the page's
  Content-Security-Policy allows no script at all;
* ``TestIndex`` (a preprocessor after nbgrader's GetGrades) names each test with its points
  and, when it lost points, why — in the grader's words, from the gradebook and the status
  file (``trust.grade_reasons``), e.g. "dlogprobs 0/1 — dlogprobs on fresh inputs (…): off by
  a factor of n" — and shows that one line as the test cell's output instead of what the
  student's kernel printed there: a kernel that hooks, prints or forges cannot put a word on
  a test's verdict or the page's header;
* the top of the page gives the notebook's points, the student's total over the assignment,
  how late it was handed in (if it was), and the tests that lost points (``templates/backprop_feedback/page.html.j2``);
* ``LimitSources`` caps the code a page shows, so that no submission holds up the class's
  feedback.
"""

from __future__ import annotations

import html
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from nbconvert.preprocessors import Preprocessor
from traitlets import Bool, Int, Unicode

from ..cells import is_test
from ..course import ASSIGNMENT, NOTEBOOKS
from ..text import printable, utf8_head
from .classdir import GradingError, prepare_environment
from .lateness import lateness_text
from .status import read_status

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "backprop_feedback"


def _points(value) -> str:
    return f"{float(value or 0):g}"


def test_title(cell, reasons: dict[str, str]) -> tuple[str, str, bool]:
    """(name, "points/max — why", lost) of a test cell whose score GetGrades has set (from the
    gradebook); ``reasons``: the grader's reasons of the notebook's tests (``status.reasons``).
    Nothing of it comes from the cell's outputs, which the student's kernel wrote."""
    meta = cell.metadata["nbgrader"]
    grade_id = str(meta["grade_id"])
    name = grade_id.removeprefix("test_")
    score, points = float(meta.get("score") or 0), float(meta.get("points") or 0)
    lost = score < points
    why = ""
    if lost:
        why = reasons.get(grade_id) or "points withdrawn by a TA — see the comment on your answer"
    text = f"{_points(score)}/{_points(points)}" + (f" — {printable(why)}" if why else "")
    return name, text, lost


def grader_output(name: str, text: str, lost: bool):
    """The one output a test cell shows in feedback: the grader's verdict on it, one line."""
    from nbformat.v4 import new_output

    return new_output("stream", name="stdout", text=f"{'❌' if lost else '✅'} {name} {text}\n")


class TestIndex(Preprocessor):
    """Names every test cell (``cell.metadata.backprop_ninja``), replaces its outputs with the
    grader's verdict (``grader_output``: the kernel's own outputs of a test cell are not shown)
    and sums up the notebook and the student's assignment (``resources["backprop_ninja"]``)
    for the feedback template. Points come from the gradebook, reasons from the status file
    the grader wrote (``status_dir``), never from what the student's kernel printed."""

    enabled = Bool(True, help="nbconvert preprocessors are off unless enabled").tag(config=True)
    status_dir = Unicode("", help="the class's status folder (grading.status)").tag(config=True)

    def _reasons(self, resources) -> dict[str, str]:
        info = resources.get("nbgrader", {})
        if not (self.status_dir and info.get("student") and info.get("notebook")):
            return {}
        status = read_status(Path(self.status_dir), info["student"])
        result = status.result(info["notebook"]) if status else None
        return dict(result.reasons) if result else {}

    def preprocess(self, nb, resources):
        lost = []
        reasons = self._reasons(resources)
        for cell in nb.cells:
            if not is_test(cell):
                continue
            if "score" not in cell.metadata.get("nbgrader", {}):
                cell.outputs = []  # not graded: nothing the kernel said about it is shown
                continue
            name, text, lost_points = test_title(cell, reasons)
            cell.metadata["backprop_ninja"] = {"name": name, "result": text}
            cell.outputs = [grader_output(name, text, lost_points)]
            if lost_points:
                lost.append({"id": cell.metadata["nbgrader"]["grade_id"], "name": name, "result": text})
        summary: dict = {"lost": lost}
        info = resources.get("nbgrader", {})
        if {"db_url", "assignment", "student"} <= set(info):
            from nbgrader.api import Gradebook, MissingEntry

            with Gradebook(info["db_url"]) as gb:
                try:
                    submission = gb.find_submission(info["assignment"], info["student"])
                    summary["total"], summary["max_total"] = submission.score, submission.max_score
                    summary["late"] = lateness_text(submission.total_seconds_late)
                except MissingEntry:
                    pass
        resources["backprop_ninja"] = summary
        return nb, resources


class LimitSources(Preprocessor):
    """Cell sources shown in a feedback page, capped: highlighting code costs nbconvert ~80 µs
    a byte, so one cell of megabytes would hold ``make feedback`` for hours. A cell shows its
    first ``max_cell_bytes``; once the page has shown ``max_notebook_bytes`` of sources, a
    cell shows only a line saying so. (A course notebook is 7-33 KiB of sources.)"""

    enabled = Bool(True, help="nbconvert preprocessors are off unless enabled").tag(config=True)
    max_cell_bytes = Int(16 * 1024, help="bytes of one cell's source a page shows").tag(config=True)
    max_notebook_bytes = Int(128 * 1024, help="bytes of sources a page shows").tag(config=True)

    def preprocess(self, nb, resources):
        shown = 0
        for cell in nb.cells:
            source = cell.get("source", "")
            size = len(source.encode())
            comment = "# " if cell.get("cell_type") == "code" else ""
            if shown + min(size, self.max_cell_bytes) > self.max_notebook_bytes:
                cell.source = f"{comment}[not shown in feedback: the notebook's cells are over {self.max_notebook_bytes // 1024} KiB]"
            elif size > self.max_cell_bytes:
                head = utf8_head(source, self.max_cell_bytes)
                cell.source = f"{head}\n{comment}[{(size - len(head.encode())) // 1024} KiB more of this cell not shown in feedback]"
            shown += len(cell.source.encode())
        return nb, resources


def generate(course, student: str) -> dict:
    """``generate_feedback`` for one student with the course's template: nbgrader's API forces
    its own template, so its GenerateFeedback converter is run here as the API runs it."""
    from nbgrader.apps import NbGraderAPI
    from nbgrader.converters import GenerateFeedback
    from nbgrader.utils import capture_log, temp_attrs

    config = course.config()
    configure(config)
    config.TestIndex.status_dir = str(course.status)  # the grader's reasons, by test
    api = NbGraderAPI(config=config)
    with temp_attrs(api.coursedir, assignment_id=ASSIGNMENT, student_id=student):
        app = GenerateFeedback(coursedir=api.coursedir, parent=api)
        app.force = True
        return capture_log(app)


def configure(config) -> None:
    """Our feedback template (named tests, totals, math as MathML) on nbgrader's config, for
    ``generate`` only (in nbgrader_config.py it would replace the Formgrader's own)."""
    import nbgrader

    nbgrader_templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    config.HTMLExporter.template_name = TEMPLATE
    config.HTMLExporter.template_file = "page.html.j2"  # it extends nbgrader's index.html.j2
    config.HTMLExporter.extra_template_basedirs = [str(TEMPLATES), str(nbgrader_templates)]


# ------------------------------------------------------------------------ the class's pages
def feedback_class(course, *, workers: int = 2, students: list[str] | None = None) -> list[Path]:
    """Feedback HTML for every student (each test's verdict in the grader's words),
    plus a page for each notebook that could not be graded. Returns the pages written; a
    student whose feedback fails is reported on stderr and the others carry on. Nothing graded
    yet (no student has a status) is a ``GradingError``: there is nothing to give feedback on."""
    import multiprocessing

    students = list(students) if students else course.students()
    if not any(read_status(course.status, student) for student in students):
        raise GradingError(
            f"nothing has been autograded in {course.class_dir} yet: run `make autograde` first"
        )
    pages: list[Path] = []
    failures: list[str] = []
    context = multiprocessing.get_context("spawn")  # a clean process: no threads inherited
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(students))), mp_context=context) as pool:
        futures = {pool.submit(student_feedback, course, student): student for student in students}
        for future in as_completed(futures):
            try:
                pages.extend(future.result())
            except Exception as error:
                failures.append(f"{futures[future]}: {error}")
    for failure in sorted(failures):
        print(f"feedback FAILED for {failure}", file=sys.stderr)
    return sorted(pages)


def student_feedback(course, student: str) -> list[Path]:
    """``nbgrader generate_feedback`` for one student, then the pages of ungraded notebooks."""
    import warnings

    from sqlalchemy.exc import SAWarning

    from .job import UNSANDBOXED_NOTE

    warnings.filterwarnings("ignore", category=SAWarning)
    shutil.rmtree(course.feedback / student / ASSIGNMENT, ignore_errors=True)
    if any(course.autograded_notebook(student, nb).exists() for nb in NOTEBOOKS):
        prepare_environment()
        outcome = generate(course, student)  # tests named, totals at the top, math as MathML
        if not outcome["success"]:
            raise GradingError(
                f"generate_feedback failed for {student}:\n{outcome.get('log', '')}{outcome.get('error', '')}"
            )
    status = read_status(course.status, student)
    pages = []
    for nb in NOTEBOOKS:
        page = course.feedback_page(student, nb)
        if not page.exists():
            result = status.result(nb) if status else None
            reason = result.messages()[0] if result and result.messages() else "not graded yet"
            _write_page(page, student, nb, reason)
        pages.append(page)
    if status and any(UNSANDBOXED_NOTE in r.notes for r in status.notebooks):
        for page in pages:
            _add_banner(page, UNSANDBOXED_NOTE)
    return pages


def _add_banner(page: Path, text: str) -> None:
    """A notice at the top of a feedback page (right after <body>)."""
    content = page.read_text(encoding="utf-8")
    at = content.find(">", content.find("<body")) + 1
    banner = f"\n<p class='grading-notice'><strong>Note:</strong> {html.escape(text)}.</p>\n"
    page.write_text(content[:at] + banner + content[at:], encoding="utf-8")


def _write_page(page: Path, student: str, notebook: str, reason: str) -> None:
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(
        "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
        f"<title>{html.escape(notebook)} — feedback</title></head><body>\n"
        f"<h1>{html.escape(notebook)}</h1>\n<p>Student: {html.escape(student)}</p>\n"
        f"<p><strong>This notebook was not graded automatically:</strong> {html.escape(reason)}</p>\n"
        "<p>Your other notebooks were graded as usual. Ask your teaching assistant if you "
        "think this is a mistake.</p>\n</body></html>\n",
        encoding="utf-8",
    )
