"""The instructor's view (issue 16): the class report, the Formgrader, Canvas grades, offline
feedback with named tests, and student data that never reaches git.

The slow tests grade the demo class for real in the repository's own grader/section-b (a
second class folder, as grader/README.md suggests), check what grading left there, and remove
it afterwards; they never touch a grader/section-b that was there before (they skip).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
from helpers import free_port, wait_for_json

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS, REPO_ROOT, VERDICT_MIME
from backprop_ninja.grading import Course
from backprop_ninja.grading.class_report import (
    NOT_MISTAKES,
    build,
    lost_because,
    summary_lines,
)
from backprop_ninja.grading.class_report import Verdict as RecordedVerdict
from backprop_ninja.grading.collect import collect_zip
from backprop_ninja.grading.formgrader import config_text
from backprop_ninja.grading.formgrader import start as start_formgrader
from backprop_ninja.grading.lms import CANVAS_FIELDS, POINTS_POSSIBLE, canvas_rows, read_ids, record_id
from backprop_ninja.grading.safe_html import mathml

NB1, NB2, NB3, NB4 = NOTEBOOKS
CHROMIUM = Path("/usr/bin/chromium")


# ----------------------------------------------------------------------------- fast
def test_math_becomes_mathml_but_code_keeps_its_dollars():
    rendered = (
        "<p>Mean over $n$ rows, $a&lt;b$:</p><p>$$\\frac{1}{n}\\sum_i x_i$$</p><code>echo $HOME $PATH</code>"
    )
    out = mathml(rendered)
    assert out.count("<math") == 3
    assert 'display="block"' in out
    assert "<mfrac>" in out
    assert "<code>echo $HOME $PATH</code>" in out
    assert "$n$" not in out


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_formula_of_the_notebooks_becomes_mathml_and_the_words_between_keep_their_spaces(name):
    """Issue 28 point 5: inline math that wraps onto the next line (notebook 2's derivation,
    the tolerance sentences) was left raw, and the words up to the next formula became math."""
    import nbformat
    from nbconvert.filters.markdown import markdown2html_mistune

    nb = nbformat.read(str(REPO_ROOT / "notebooks" / ASSIGNMENT / f"{name}.ipynb"), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        out = mathml(markdown2html_mistune(cell.source))
        prose = re.sub(
            r"<math\b.*?</math>", " ", re.sub(r"<(code|pre)\b.*?</\1>", " ", out, flags=re.S), flags=re.S
        )
        assert "$" not in prose, re.findall(r".{0,60}\$.{0,60}", prose)
        assert out.count("<math") == len(re.findall(r"\$\$.+?\$\$|\$[^$]+?\$", cell.source, re.S))
    if name == NB2:
        derivation = mathml(markdown2html_mistune(nb.cells[3].source))
        assert "Differentiate the two terms of" in derivation
        assert "<mi>D</mi>" not in derivation
    assert mathml("<p>costs $5 and $10</p>") == "<p>costs $5 and $10</p>"


def small_class_report():
    """Three students, two notebooks submitted: counts of 0-3 students, small enough for
    matplotlib to put ticks at 0.5 unless told to count in whole numbers."""
    from backprop_ninja.grading.class_report import ClassReport, GradedTest
    from backprop_ninja.grading.table import Row

    max_points = {NB1: 26.0, NB2: 5.0, NB3: 5.0, NB4: 10.0}
    rows = [
        Row(
            f"s{i}",
            {NB1: p1, NB2: p2, NB3: None, NB4: None},
            max_points,
            {NB1: "graded", NB2: "graded", NB3: "missing", NB4: "missing"},
        )
        for i, (p1, p2) in enumerate([(26.0, 5.0), (25.0, 0.0), (26.0, 5.0)])
    ]
    tests = [
        GradedTest(NB1, "test_dlogprobs", 1, ["s0", "s1", "s2"], 3),
        GradedTest(NB1, "test_db2", 1, ["s0", "s2"], 3),
        GradedTest(NB2, "test_dlogits", 5, ["s0", "s2"], 3),
    ]
    return ClassReport(rows, {}, tests)


def test_the_class_reports_charts_have_legends_and_count_in_whole_students():
    """Issue 28 point 6, read from the figures themselves (legends, tick values), not pixels."""
    from backprop_ninja.grading.report_figures import pass_rate_figure, score_histograms_figure
    from backprop_ninja.grading.table import short_name

    report = small_class_report()
    bars = pass_rate_figure(report)
    (axes,) = bars.axes
    legend = axes.get_legend()
    assert legend is not None
    assert legend.get_title().get_text() == "notebook"
    assert [t.get_text() for t in legend.get_texts()] == [short_name(NB1), short_name(NB2)]
    bar_colours = {tuple(p.get_facecolor()) for p in axes.patches}
    assert {tuple(h.get_facecolor()) for h in legend.legend_handles} == bar_colours
    assert "colour: notebook" not in axes.get_title()

    histograms = score_histograms_figure(report)
    assert len(histograms.axes) == len(NOTEBOOKS) + 1
    for axes in histograms.axes:
        axes.figure.canvas.draw()  # ticks are chosen when drawn
        ticks = [t for t in axes.get_yticks() if axes.get_ylim()[0] <= t <= axes.get_ylim()[1]]
        assert ticks, (axes.get_title(), ticks)
        assert all(float(t).is_integer() for t in ticks), (axes.get_title(), ticks)
        assert all(float(t).is_integer() for t in axes.get_xticks())
        assert axes.get_legend() is not None
    legends = [[t.get_text() for t in a.get_legend().get_texts()] for a in histograms.axes]
    assert legends == [
        ["3 students submitted"],
        ["3 students submitted"],
        ["0 students submitted"],
        ["0 students submitted"],
        ["3 students"],
    ]


def test_a_verdict_outside_a_notebook_is_printed(capsys):
    from backprop_ninja.testing import show_verdict

    assert show_verdict("db2", True, None, "ok", "✅ db2 ok") is False
    assert capsys.readouterr().out == "✅ db2 ok\n"


def test_a_lost_test_is_explained_by_the_first_failing_verdict_or_by_grading():
    failing = RecordedVerdict("db2", False, "shape", "sum over dim 0", "❌ db2: sum over dim 0")
    passing = RecordedVerdict("db2", True, None, "ok", "✅ db2")
    assert lost_because("graded", 1.0, 1.0, None, [passing]) is None
    assert lost_because("graded", 0.0, 1.0, None, [passing, failing]) == (
        "shape",
        "sum over dim 0",
        failing.line,
    )
    assert lost_because("graded", 0.0, 1.0, "integrity: autograd", [passing])[0] == "withdrawn"
    assert lost_because("failed", None, 1.0, None, [])[0] == "not_graded"
    assert lost_because("graded", 0.0, 1.0, None, [])[0] == "no_verdict"


def test_canvas_rows_match_by_lms_id_or_by_login():
    rows = canvas_rows({"bob": 40.0, "smithalice": 31.5}, 46.0, {"smithalice": {"user_id": "1001"}}, "BN (7)")
    assert list(rows[0]) == [*CANVAS_FIELDS, "BN (7)"]
    assert rows[0]["Student"] == POINTS_POSSIBLE
    assert rows[0]["BN (7)"] == "46"
    alice = next(r for r in rows if r["Student"] == "smithalice")
    bob = next(r for r in rows if r["Student"] == "bob")
    assert (alice["ID"], alice["SIS Login ID"], alice["BN (7)"]) == ("1001", "", "31.5")
    assert (bob["ID"], bob["SIS Login ID"], bob["BN (7)"]) == ("", "bob", "40")


def test_lms_ids_add_up_over_collections(tmp_path):
    path = tmp_path / "lms_ids.json"
    record_id(path, "ann", "11", "ann")
    record_id(path, "bob", "12", "bob")
    record_id(path, "ann", "13", "ann")
    assert read_ids(path) == {
        "ann": {"user_id": "13", "login": "ann"},
        "bob": {"user_id": "12", "login": "bob"},
    }


def test_collecting_a_canvas_zip_keeps_each_students_user_id(course_root):
    course = Course.load(root=course_root)
    archive = course_root / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(f"smithalice_1001_555001_{NB1}.ipynb", "{}")
        zf.writestr(f"jonesbob_LATE_1002_555002_{NB2}-1.ipynb", "{}")
    collect_zip(course, archive)
    assert {s: v["user_id"] for s, v in read_ids(course.lms_ids).items()} == {
        "smithalice": "1001",
        "jonesbob": "1002",
    }


def test_the_formgrader_config_moves_the_course_config_to_the_class(tmp_path):
    from traitlets.config.loader import PyFileConfigLoader

    course = Course.load(root=tmp_path, class_dir="grader/fall")
    (tmp_path / "nbgrader_config.py").write_text(config_text(course))
    config = PyFileConfigLoader("nbgrader_config.py", path=str(tmp_path)).load_config()
    assert config.CourseDirectory.root == str(tmp_path)
    assert config.CourseDirectory.submitted_directory == "grader/fall/submitted"
    assert config.CourseDirectory.db_url == course.db_url
    assert config.Execute.timeout == 30  # the rest is grader/nbgrader_config.py's


# ----------------------------------------------------------------------------- slow
@pytest.fixture
def section_b(graded_demo):
    """The demo class graded, given feedback, exported and reported in grader/section-b."""
    return graded_demo


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_grading_a_class_in_section_b_leaves_git_status_as_it_was(section_b):
    course = section_b["course"]
    written = [p for p in course.class_dir.rglob("*") if p.is_file()]
    assert len(written) > 100
    assert (course.class_dir / "gradebook.db").exists()
    assert section_b["git_after"] == section_b["git_before"]


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_verdict_is_one_display_data_output_with_its_json(section_b):
    import nbformat

    course = section_b["course"]
    nb = nbformat.read(str(course.autograded_notebook("slips_db2_bessel", NB1)), as_version=4)
    (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_db2"]
    verdicts = [o for o in cell.outputs if o.output_type == "display_data"]
    assert len(verdicts) == 1
    assert [o.output_type for o in cell.outputs] == ["display_data", "error"]
    (line,) = cell.outputs[1].traceback  # the line the student reads, once: the error's
    assert line.startswith("❌ db2 on this notebook's batch: shape (32, 27)")
    assert verdicts[0].data["text/plain"] == ""
    assert verdicts[0].data[VERDICT_MIME] == {
        "test": "db2",
        "passed": False,
        "problem": "shape",
        "message": line.split(": ", 1)[1],
    }
    (passed,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_dprobs"]
    assert [o.output_type for o in passed.outputs] == ["display_data"]  # the visible test only
    assert passed.outputs[0].data["text/plain"].startswith("✅ dprobs")
    assert passed.outputs[0].data[VERDICT_MIME]["passed"] is True


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_the_class_report_is_self_contained_and_says_what_went_wrong(section_b):
    course = section_b["course"]
    page = section_b["report"].read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)
    assert "<script" not in page
    assert page.count("data:image/svg+xml;base64,") == 2  # the histograms and the pass-rate chart
    assert "$" not in re.sub(r"<[^>]+>", " ", page)  # no raw TeX: the report's text has no math
    assert "student's own kernel" in page
    assert "not a grade" in page
    report = build(course)
    tests = {(t.notebook, t.name): t for t in report.tests}
    assert [t.name for t in report.tests][:3] == ["dlogprobs", "dprobs", "dcounts_sum_inv"]
    assert len(report.tests) == 26 + 1 + 1 + 8

    def diagnosis(notebook, name, problem):
        (found,) = [d for d in tests[(notebook, name)].diagnoses if d.problem == problem]
        return found

    assert diagnosis(NB1, "db2", "shape").students == ["slips_db2_bessel"]
    assert diagnosis(NB1, "dcounts", "alternative").students == ["slips_dcounts_dlogits"]
    assert "divide by n" in diagnosis(NB2, "dlogits", "factor").message
    assert diagnosis(NB2, "dlogits", "autograd").students == ["slips_dc_autograd"]
    assert diagnosis(NB3, "dhprebn", "alternative").students == ["slips_db2_bessel"]
    assert tests[(NB2, "dlogits")].passed == ["full_marks", "slips_db2_bessel"]
    assert "slips_db2_bessel" not in " ".join(diagnosis(NB1, "db2", "shape").examples)
    for line in ("db2", "slips_db2_bessel", "sum its gradient over dim 0", "invalid JSON", "uses autograd"):
        assert line in page, line
    assert [s for s, nb, _ in report.not_graded()] == ["broken_json_endless"] + ["broken_kernel_metadata"] * 2
    lines = section_b["lines"]
    assert len(lines) == 5
    assert lines == summary_lines(report)
    assert "lowest pass rates: dlogits 29%" in lines[1]
    assert not any(p in lines[2] for p in NOT_MISTAKES)


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_grades_canvas_csv_has_the_canvas_columns_and_every_total(section_b, demo_class_module):
    import csv

    course = section_b["course"]
    with open(course.canvas_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [*CANVAS_FIELDS, ASSIGNMENT]
    assert rows[0]["Student"] == POINTS_POSSIBLE
    assert rows[0][ASSIGNMENT] == "46"
    totals = {r["SIS Login ID"]: r[ASSIGNMENT] for r in rows[1:]}
    # A student with a notebook NOT GRADED has an empty cell (Canvas keeps what it had), never 0.
    assert totals == {
        s.name: "" if any("NOT GRADED" in s.notes(nb) for nb in NOTEBOOKS) else f"{s.total:g}"
        for s in demo_class_module.DEMO
    }
    assert totals["broken_kernel_metadata"] == ""
    assert totals["untouched"] == "0"


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_feedback_names_each_test_and_gives_the_totals(section_b):
    course = section_b["course"]
    page = course.feedback_page("slips_db2_bessel", NB1).read_text(encoding="utf-8")
    text = " ".join(re.sub(r"<[^>]+>", " ", page).split())
    assert "Test cell" not in text
    assert "cdnjs" not in page
    assert "MathJax.js" not in page
    assert "Your total for the assignment: 40 / 46" in text
    # Why, in the grader's words: the verifier's verdict on its fresh inputs (VERIFY_SEED).
    assert (
        "db2 0/1 — db2 on fresh inputs (n=7, n_hidden=13, n_embd=4, vocabulary 11, block 2, "
        "float64): shape (7, 11), expected (11,)"
    ) in text
    assert "dlogprobs 1/1" in text
    assert page.count("<math") >= 20
    flagged = course.feedback_page("slips_dc_autograd", NB2).read_text(encoding="utf-8")
    assert "dlogits 0/5 — integrity: " in flagged
    assert "uses autograd" in flagged


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_the_formgrader_serves_the_class_gradebook(section_b, demo_class_module, tmp_path):
    course, port, token = section_b["course"], free_port(), "t0ken-for-this-test"
    with open(tmp_path / "server.log", "wb") as log:
        process, url = start_formgrader(course, port=port, token=token, stdout=log, stderr=subprocess.STDOUT)
    try:
        assert url == f"http://127.0.0.1:{port}/formgrader?token={token}"
        api = f"http://127.0.0.1:{port}/formgrader/api/students?token={token}"
        students, deadline = None, time.monotonic() + 120
        while students is None and time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(api, timeout=5) as response:
                    students = json.load(response)
            except OSError:
                time.sleep(1)
        assert students is not None, (tmp_path / "server.log").read_text()[-3000:]
        assert sorted(s["id"] for s in students) == sorted(s.name for s in demo_class_module.DEMO)
        assert {s["id"]: s["score"] for s in students}["slips_db2_bessel"] == 40
        # Without the token: the login page (or a refusal), never the gradebook.
        assert without_token(api.split("?")[0]) in ("login", 401, 403)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.browser
@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
def test_a_browser_offline_shows_the_feedback_math_and_named_tests(section_b):
    from playwright import sync_api

    assert CHROMIUM.exists(), f"no {CHROMIUM}: `make system-packages` installs it"
    page_path = section_b["course"].feedback_page("slips_db2_bessel", NB1)
    requested: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page()

            def offline(route):
                requested.append(route.request.url)
                if route.request.url.startswith(("file:", "data:")):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", offline)
            page.goto(page_path.as_uri())
            assert "db2 0/1 — db2 on fresh inputs" in page.inner_text("#lost-points")
            assert "40 / 46" in page.inner_text("#points-summary")
            boxes = page.eval_on_selector_all(
                "math",
                "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])",
            )
            assert len(boxes) >= 20
            assert all(w > 0 and h > 0 for w, h in boxes)
            assert "$$" not in page.inner_text("body")  # no raw TeX left
            # Issue 28: notebook 2's derivation and notebook 4's tolerance sentence were raw.
            for notebook, words in (
                (NB2, "Differentiate the two terms of"),
                (NB4, "or rounding noise if larger"),
            ):
                page.goto(section_b["course"].feedback_page("slips_db2_bessel", notebook).as_uri())
                text = page.inner_text("#notebook-container")
                assert words in text, notebook
                assert "\\dfrac" not in text, notebook
                assert "\\text{" not in text, notebook
        finally:
            browser.close()
    assert [u for u in requested if not u.startswith(("file:", "data:"))] == []


def without_token(url: str) -> str | int:
    """Where a request without the Formgrader's token ends: "login", another page, or the
    HTTP error code it was refused with."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return "login" if "/login" in response.geturl() else response.geturl()
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
@pytest.mark.browser
def test_the_formgrader_offline_renders_math_and_flags_the_integrity_findings(section_b, tmp_path):
    """Issue 28 point 5: the Formgrader's grading page shows its math with the network off
    (no CDN request leaves the machine), and its "Flagged?" column is nbgrader's flag, set
    for the submission the integrity scan flagged (slips_dc_autograd's notebook 2)."""
    from playwright import sync_api

    course, port, token = section_b["course"], free_port(), "t0ken-offline"
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        process, _ = start_formgrader(course, port=port, token=token, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        api = f"{base}/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{NB2}?token={token}"
        submissions = {s["student"]: s for s in wait_for_json(api, process, log)}
        assert submissions["slips_dc_autograd"]["flagged"] is True
        assert [s for s, row in submissions.items() if row["flagged"]] == ["slips_dc_autograd"]

        page_url = f"{base}/formgrader/submissions/{submissions['full_marks']['id']}/?token={token}"
        left: list[str] = []
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:  # the token on every request: the Formgrader's scripts call its API
                page = browser.new_page(extra_http_headers={"Authorization": f"token {token}"})

                def loopback_only(route):
                    host = urllib.parse.urlsplit(route.request.url).hostname
                    if route.request.url.startswith("data:") or host == "127.0.0.1":
                        route.continue_()
                    else:
                        left.append(route.request.url)
                        route.abort()

                page.route("**/*", loopback_only)
                page.goto(page_url)
                page.wait_for_selector("#notebook-container math")
                boxes = page.eval_on_selector_all(
                    "#notebook-container math",
                    "els => els.map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height])",
                )
                assert len(boxes) >= 10
                assert all(w > 0 and h > 0 for w, h in boxes)
                text = page.inner_text("#notebook-container")
                assert "\\dfrac" not in text
                assert "$$" not in text
                assert "Differentiate the two terms of" in text
                flagged_page = f"{base}/formgrader/gradebook/{ASSIGNMENT}/{NB2}?token={token}"
                page.goto(flagged_page)
                row = page.locator("tr", has_text="slips_dc_autograd")
                row.locator(".glyphicon-flag").wait_for(timeout=60_000)  # the Flagged? column's mark
                assert page.locator("tr .glyphicon-flag").count() == 1
            finally:
                browser.close()
        assert left == []  # nothing asked for leaves the machine
    finally:
        process.terminate()
        process.wait(timeout=30)
