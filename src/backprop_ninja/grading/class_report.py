"""The class report: what a class got wrong, not only who got what (``make report``).

One self-contained HTML file per class (figures embedded as SVG, no network needed): the
score distribution per notebook and in total, the pass rate of every test along the backward
pass, the most frequent diagnoses of each test with the students concerned, integrity
findings, notebooks that were not graded, late submissions, and how long grading took.

Everything is read from what grading recorded, never re-parsed from text: scores per test
from the gradebook (withdrawn points and manual grades included); states, reasons, withdrawn
tests and seconds from status/<student>.json; diagnoses from the verdicts that the test cells
displayed in the autograded notebooks (``VERDICT_MIME`` outputs, see testing.show_verdict).
Those verdicts come from the student's own kernel: informative, not a grade.
"""

from __future__ import annotations

import html
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..cells import grade_id, is_test, read_notebook
from ..course import ASSIGNMENT, NOTEBOOKS, VERDICT_MIME
from ..judge.problems import NOT_MISTAKES, Problem
from ..text import printable
from .report_figures import pass_rate_figure, score_histograms_figure, svg_image
from .status import FAILED, GRADED, MISSING, STOPPED, StudentStatus, read_status, replaced_atomically
from .table import Row, class_rows, short_name

TOP_DIAGNOSES = 3  # per test
EXAMPLES = 3  # distinct example lines per diagnosis
NOT_GRADED = "notebook not graded"
NO_VERDICT = "no verdict shown (the cell stopped before its test ran)"


@dataclass(frozen=True)
class Verdict:
    """One verdict a test cell displayed: the structured part and the line the student read."""

    test: str
    passed: bool
    problem: str | None
    message: str
    line: str


@dataclass
class Diagnosis:
    """Why some students lost a test's points: one problem, its most frequent message."""

    problem: str
    message: str
    students: list[str] = field(default_factory=list)
    examples: list[str] = field(default_factory=list)


@dataclass
class GradedTest:
    notebook: str
    test_id: str
    points: float
    passed: list[str] = field(default_factory=list)
    submitted: int = 0  # students who submitted the notebook
    diagnoses: list[Diagnosis] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.test_id.removeprefix("test_")

    @property
    def pass_rate(self) -> float:
        return len(self.passed) / self.submitted if self.submitted else 0.0


@dataclass
class ClassReport:
    rows: list[Row]
    statuses: dict[str, StudentStatus | None]
    tests: list[GradedTest]

    def results(self):
        """(student, notebook result) of every status file."""
        return [(s.student, r) for s in self.statuses.values() if s for r in s.notebooks]

    def seconds(self, notebook: str) -> list[float]:
        return [r.seconds for _, r in self.results() if r.notebook == notebook and r.state == GRADED]

    def flags(self) -> list[tuple[str, str, str]]:
        """(student, notebook, line): points withdrawn by the integrity checks, and their
        findings on tests that earned nothing."""
        return [
            (s, r.notebook, f"{test}: {why}")
            for s, r in self.results()
            for test, why in [*r.withdrawn.items(), *r.findings.items()]
        ]

    def not_graded(self) -> list[tuple[str, str, str]]:
        return [
            (s, r.notebook, f"{r.state}: {r.reason}")
            for s, r in self.results()
            if r.state in (FAILED, STOPPED)
        ]


# ------------------------------------------------------------------------------ reading
def tests_in_order(course, notebook: str) -> list[tuple[str, float]]:
    """The notebook's tests (id, points) in the order of its cells: along the backward pass."""
    cells = read_notebook(course.source_notebook(notebook)).cells
    return [
        (str(grade_id(cell)), float(cell.metadata["nbgrader"]["points"])) for cell in cells if is_test(cell)
    ]


def cell_verdicts(autograded: Path) -> dict[str, list[Verdict]]:
    """Every test cell's displayed verdicts, by grade_id ({} without an autograded copy)."""
    if not autograded.exists():
        return {}
    found: dict[str, list[Verdict]] = {}
    for cell in read_notebook(autograded).cells:
        if not is_test(cell):
            continue
        verdicts = found.setdefault(str(grade_id(cell)), [])
        outputs = cell.get("outputs", [])
        for i, output in enumerate(outputs):
            verdict = output.get("data", {}).get(VERDICT_MIME)
            if isinstance(verdict, dict):
                # A failure's line is the traceback of the error right after it (testing.py).
                after = outputs[i + 1] if i + 1 < len(outputs) else {}
                line = output["data"].get("text/plain") or "".join(after.get("traceback", []))
                problem, message = verdict.get("problem"), str(verdict.get("message", ""))
                verdicts.append(
                    Verdict(str(verdict.get("test", "")), bool(verdict.get("passed")), problem, message, line)
                )
    return found


def scores_per_test(course, students: list[str]) -> dict[tuple[str, str, str], float | None]:
    """(student, notebook, test id) → points, from the gradebook."""
    from nbgrader.api import MissingEntry

    scores: dict[tuple[str, str, str], float | None] = {}
    with course.gradebook() as gb:
        for student in students:
            for nb in NOTEBOOKS:
                try:
                    grades = gb.find_submission_notebook(nb, ASSIGNMENT, student).grades
                except MissingEntry:
                    continue
                for grade in grades:
                    scores[(student, nb, grade.name)] = grade.score
    return scores


def anonymised(line: str, students: list[str]) -> str:
    for student in sorted(students, key=len, reverse=True):
        line = line.replace(student, "‹student›")
    return printable(line)


def build(course) -> ClassReport:
    rows = class_rows(course)
    students = [row.student for row in rows]
    statuses = {student: read_status(course.status, student) for student in students}
    scores = scores_per_test(course, students)
    tests = []
    for nb in NOTEBOOKS:
        verdicts = {s: cell_verdicts(course.autograded_notebook(s, nb)) for s in students}
        for test_id, points in tests_in_order(course, nb):
            summary = GradedTest(nb, test_id, points)
            reasons: dict[tuple[str, str], Diagnosis] = {}
            for row in (r for r in rows if r.states[nb] != MISSING):
                summary.submitted += 1
                status = statuses[row.student]
                result = status.result(nb) if status else None
                withdrawn = result.withdrawn.get(test_id) if result else None
                score = scores.get((row.student, nb, test_id))
                why = lost_because(
                    row.states[nb], score, points, withdrawn, verdicts[row.student].get(test_id, [])
                )
                if why is None:
                    summary.passed.append(row.student)
                    continue
                diagnosis = reasons.setdefault(why[:2], Diagnosis(*why[:2]))
                diagnosis.students.append(row.student)
                if why[2]:
                    diagnosis.examples.append(anonymised(why[2], students))
            summary.diagnoses = _grouped(reasons.values())
            tests.append(summary)
    return ClassReport(rows, statuses, tests)


def lost_because(state: str, score, points: float, withdrawn: str | None, verdicts: list[Verdict]):
    """None if the test earned its points, else (problem, message, example line)."""
    if withdrawn:
        return Problem.WITHDRAWN, f"points withdrawn — {withdrawn}", ""
    if state != GRADED:
        return Problem.NOT_GRADED, NOT_GRADED, ""
    if score is not None and score >= points - 1e-9:
        return None
    failing = [v for v in verdicts if not v.passed]
    if failing:
        return failing[0].problem or "?", failing[0].message, failing[0].line
    return Problem.NO_VERDICT, NO_VERDICT, ""


def _grouped(diagnoses) -> list[Diagnosis]:
    """One diagnosis per problem (its most frequent message), most students first."""
    by_problem: dict[str, list[Diagnosis]] = {}
    for d in diagnoses:
        by_problem.setdefault(d.problem, []).append(d)
    merged = []
    for problem, group in by_problem.items():
        top = max(group, key=lambda d: len(d.students))
        students = sorted(s for d in group for s in d.students)
        examples = list(dict.fromkeys(e for d in group for e in d.examples))[:EXAMPLES]
        merged.append(Diagnosis(problem, top.message, students, examples))
    return sorted(merged, key=lambda d: (-len(d.students), d.problem))


# ---------------------------------------------------------------------------- figures
def score_histograms(report: ClassReport) -> str:
    return svg_image(score_histograms_figure(report))


def pass_rate_chart(report: ClassReport) -> str:
    return svg_image(pass_rate_figure(report))


# ------------------------------------------------------------------------------- output
def summary_lines(report: ClassReport) -> list[str]:
    """The five lines the terminal prints."""
    rows = report.rows
    totals = [r.total for r in rows]
    max_total = rows[0].max_total if rows else 0
    states = Counter(r.states[nb] for r in rows for nb in NOTEBOOKS)
    line1 = (
        f"class report: {len(rows)} students, total median {_num(statistics.median(totals) if totals else 0)}"
        f"/{_num(max_total)} (mean {_num(statistics.fmean(totals) if totals else 0)})"
    )
    ranked = sorted(
        (t for t in report.tests if t.submitted), key=lambda t: (t.pass_rate, NOTEBOOKS.index(t.notebook))
    )
    hardest = ", ".join(f"{t.name} {t.pass_rate:.0%}" for t in ranked[:3]) or "—"
    line2 = f"lowest pass rates: {hardest}"
    common = sorted(
        ((d, t) for t in report.tests for d in t.diagnoses if d.problem not in NOT_MISTAKES),
        key=lambda dt: -len(dt[0].students),
    )
    line3 = (
        f"most frequent diagnosis: {common[0][1].name}: {len(common[0][0].students)} of "
        f"{common[0][1].submitted} — {_short(common[0][0].message)}"
        if common
        else "most frequent diagnosis: —"
    )
    line4 = (
        f"integrity: {len(report.flags())} test(s) flagged; not graded: "
        f"{states[FAILED] + states[STOPPED]} notebooks; not submitted: {states[MISSING]}"
    )
    medians = [
        f"{short_name(nb)} {statistics.median(s):.1f} s" for nb in NOTEBOOKS if (s := report.seconds(nb))
    ]
    line5 = "median grading time per notebook: " + (", ".join(medians) or "—")
    return [line1, line2, line3, line4, line5]


def _num(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
vertical-align:top;text-align:left}code,.line{font-family:monospace;font-size:90%}
.note{background:#fff8e0;border-left:4px solid #e0b000;padding:.5em 1em}
img{max-width:100%}h3{margin-bottom:.2em}.pass{color:#2a7a2a}"""


def render(report: ClassReport, title: str) -> str:
    e = html.escape
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
        "<p class='note'><strong>For instructors only</strong> (it names students). The diagnoses "
        "are what each test cell displayed in the student's own kernel: informative, not a grade. "
        "Scores come from the gradebook; integrity findings and failures from the grading records.</p>",
        "<pre>" + e("\n".join(summary_lines(report))) + "</pre>",
        "<h2>Score distribution</h2>",
        score_histograms(report),
        "<h2>Pass rate per test</h2>",
        pass_rate_chart(report),
        "<h2>What went wrong, test by test</h2>",
    ]
    for t in report.tests:
        parts.append(
            f"<h3 id='{e(t.test_id)}'>{e(short_name(t.notebook))} · {e(t.name)} "
            f"<span class='pass'>{len(t.passed)}/{t.submitted} passed ({t.pass_rate:.0%})</span></h3>"
        )
        if not t.diagnoses:
            continue
        parts.append(
            "<table><tr><th>students</th><th>diagnosis</th><th>example lines (anonymised)</th><th>who</th></tr>"
        )
        for d in t.diagnoses[:TOP_DIAGNOSES]:
            share = len(d.students) / t.submitted if t.submitted else 0
            examples = "<br>".join(f"<span class='line'>{e(x)}</span>" for x in d.examples)
            parts.append(
                f"<tr><td>{len(d.students)} ({share:.0%})</td><td><code>{e(d.problem)}</code> "
                f"{e(printable(d.message))}</td><td>{examples}</td><td>{e(', '.join(d.students))}</td></tr>"
            )
        rest = t.diagnoses[TOP_DIAGNOSES:]
        if rest:
            parts.append(
                f"<tr><td colspan='4'>{sum(len(d.students) for d in rest)} more, other diagnoses</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Integrity findings (points withdrawn, or flagged on a failed test)</h2>")
    parts.append(_table(("student", "notebook", "test: why"), report.flags()))
    parts.append("<h2>Notebooks not graded</h2>")
    parts.append(_table(("student", "notebook", "why"), report.not_graded()))
    parts.append("<h2>Late submissions</h2>")
    late = [(r.student, r.lateness, f"{r.penalty:g}") for r in report.rows if r.lateness]
    parts.append(_table(("student", "handed in", "points taken (a configured penalty)"), late))
    parts.append("<h2>Grading time</h2>")
    seconds = [
        (short_name(nb), f"{statistics.median(s):.1f} s", str(len(s)))
        for nb in NOTEBOOKS
        if (s := report.seconds(nb))
    ]
    parts.append(_table(("notebook", "median seconds", "graded notebooks"), seconds))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _table(header: tuple[str, ...], rows) -> str:
    if not rows:
        return "<p>None.</p>"
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{e(printable(str(c)))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(course) -> tuple[Path, list[str]]:
    """Write the class's report.html; returns its path and the five summary lines."""
    report = build(course)
    path = course.class_report
    with replaced_atomically(path) as partial:  # a failed write keeps the previous report
        partial.write_text(
            render(report, f"{ASSIGNMENT} — class report ({course.class_dir.name})"), encoding="utf-8"
        )
    return path, summary_lines(report)
