"""What a student writes reaches an instructor's page as text, never as a running script.

The Formgrader shows a submission in the instructor's own Jupyter server, so a script in a
student's markdown or outputs would run with the instructor's session (read the gradebook,
change grades, run code). Fast tests render hostile notebooks with the course's configuration;
the slow one grades a hostile submission through the real pipeline and opens its Formgrader
page and its feedback page in a real browser (grading/safe_html.py)."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from helpers import free_port, wait_for_json
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS
from backprop_ninja.grading import Course, autograde_class, feedback_class
from backprop_ninja.grading.classdir import CONFIG_FILE, read_config
from backprop_ninja.grading.formgrader import offline_pages
from backprop_ninja.grading.formgrader import start as start_formgrader
from backprop_ninja.grading.safe_html import REMOVED_NOTICE, SafeOutputs, clean, markdown_html, mathml

NB2 = NOTEBOOKS[1]
CHROMIUM = Path("/usr/bin/chromium")
URL_ATTRIBUTES = ("href", "src", "action", "formaction", "xlink:href", "data")
ACTIVE_TAGS = ("script", "iframe", "object", "embed", "style", "link", "meta", "base", "form", "svg")


class ActiveParts(HTMLParser):
    """The parts of a page that could run or load something: active elements, event-handler
    attributes, javascript: or data: URLs (data: images excepted)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._tag: str | None = None

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            url = (value or "").strip().lower() if name in URL_ATTRIBUTES else ""
            script_url = url.startswith(("javascript:", "vbscript:"))
            data_not_image = url.startswith("data:") and not (tag == "img" and url.startswith("data:image/"))
            if name.startswith("on") or script_url or data_not_image:
                self.found.append(f"<{tag} {name}={value}>")
        if tag in ACTIVE_TAGS:
            self._tag = tag
            self.found.append(f"<{tag} {dict(attrs)}>")

    def handle_data(self, data):
        if self._tag:
            self.found[-1] += data
            self._tag = None


def meta_tags(page: str) -> list[dict]:
    """The attributes of every <meta> of ``page``."""
    found: list[dict] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: found.append(dict(attrs)) if tag == "meta" else None  # type: ignore[method-assign]
    parser.feed(page)
    return found


def active_parts(page: str, marker: str = "") -> list[str]:
    parser = ActiveParts()
    parser.feed(page)
    return [part for part in parser.found if marker in part]


# What a student who read nbconvert's templates would put in a notebook; each carries XSS.
MARKDOWN_ATTACKS = [
    '<script>alert("XSS")</script>',
    "<img src=x onerror=\"alert('XSS')\">",
    "<a href=\"javascript:alert('XSS')\">click</a>",
    "<a href=\" jAvAsCrIpT:alert('XSS')\">click</a>",
    "<svg onload=\"alert('XSS')\"></svg>",
    '<iframe src="https://example.org/XSS"></iframe>',
    "<object data=\"javascript:alert('XSS')\"></object>",
    '<style>body { background: url("https://example.org/XSS") }</style>',
    "<math><mtext><img src=x onerror=\"alert('XSS')\"></mtext></math>",
    "<a href=\"data:text/html,<script>alert('XSS')</script>\">data</a>",
    "<div onmouseover=\"alert('XSS')\">hover</div>",
    '<form action="https://example.org/XSS"><button>go</button></form>',
    '<meta http-equiv="refresh" content="0; url=https://example.org/XSS">',
    r"$\text{<script>alert('XSS')</script>}$",
    r"$\href{javascript:alert('XSS')}{x}$",
    r"$$\text{<img src=x onerror=alert('XSS')>}$$",
    "<!--><script>alert('XSS')</script>-->",
]


@pytest.mark.parametrize("attack", MARKDOWN_ATTACKS)
def test_markdown_keeps_nothing_that_runs(attack):
    page = markdown_html({"cell": {}, "resources": {}}, f"Some words. {attack} More words.")
    assert active_parts(page) == [], page
    assert page.startswith(REMOVED_NOTICE) or "XSS" not in page  # a TA is told what went
    assert "Some words." in page
    assert "More words." in page


def test_what_markdown_means_survives_cleaning():
    source = (
        "# A heading\n\nSome *emphasis*, `code $x$`, a [link](https://example.org) and "
        "$\\dfrac{\\partial L}{\\partial x_i} = p_i - 1$.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "![plot](attachment:plot.png)\n"
    )
    cell = {"attachments": {"plot.png": {"image/png": "iVBORw0KGgo="}}}
    page = markdown_html({"cell": cell, "resources": {}}, source)
    for kept in (
        "<h1>",
        "<em>emphasis</em>",
        "<code>code $x$</code>",
        'href="https://example.org"',
        "<table>",
        "<math",
        "<mfrac>",
    ):
        assert kept in page, (kept, page)
    assert 'src="data:image/png;base64,iVBORw0KGgo="' in page
    assert active_parts(page) == []
    assert REMOVED_NOTICE not in page  # nothing was removed from a well-meant cell


def test_math_is_cleaned_after_it_becomes_mathml():
    """latex2mathml copies \\text{…} through as it is: cleaning comes last."""
    assert "<script>" in mathml(r"<p>$\text{<script>x</script>}$</p>")  # the converter alone
    assert active_parts(clean(mathml(r"<p>$\text{<script>x</script>}$</p>"))) == []


def hostile_notebook() -> nbformat.NotebookNode:
    nb = new_notebook()
    nb.cells.append(new_markdown_cell("\n\n".join(MARKDOWN_ATTACKS)))
    code = new_code_cell("shown()", execution_count=1)
    code.outputs = [
        new_output("display_data", data={"text/html": '<script>alert("XSS")</script><b>bold</b>'}),
        new_output("display_data", data={"application/javascript": 'alert("XSS")'}),
        new_output("display_data", data={"text/markdown": "<img src=x onerror=\"alert('XSS')\">"}),
        new_output("display_data", data={"image/png": "x\" onerror=\"alert('XSS')"}),
        new_output(
            "display_data",
            data={"image/png": "iVBORw0KGgo="},
            metadata={"image/png": {"width": "1 onerror=alert('XSS')", "height": 20}},
        ),
        new_output("display_data", data={"image/svg+xml": "<svg onload=\"alert('XSS')\"/>"}),
        new_output("stream", name="stdout\" onmouseover=\"alert('XSS')", text="printed"),
        new_output(
            "execute_result", data={"text/plain": "</pre><script>alert('XSS')</script>"}, execution_count=1
        ),
    ]
    nb.cells.append(code)
    nb.cells.append(new_raw_cell("<script>alert('XSS')</script>", metadata={"raw_mimetype": "text/html"}))
    grade_id = "\"><script>alert('XSS')</script>"
    meta = {"grade": True, "grade_id": grade_id, "points": 1, "solution": False, "locked": True}
    nb.cells.append(new_code_cell("pass", metadata={"nbgrader": meta}))
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {"x": "</script><script>alert('XSS')</script>"}
        }
    }
    return nb


def formgrader_exporter(course_page: bool):
    """The HTMLExporter the Formgrader builds from the course's config: with the course's page
    (``make formgrader``) or nbgrader's own (an instructor's Lab on the hub)."""
    import nbgrader
    from nbconvert import HTMLExporter

    config = read_config(CONFIG_FILE)
    templates = Path(nbgrader.__file__).parent / "server_extensions" / "formgrader" / "templates"
    config.HTMLExporter.template_name = "formgrade"  # as nbgrader's FormgradeExtension sets them
    config.HTMLExporter.extra_template_basedirs = [str(templates)]
    if course_page:
        config.HTMLExporter.template_file = offline_pages()[0].split(" = ", 1)[1].strip("'")
    return HTMLExporter(config=config)


FORMGRADER_RESOURCES = {
    "assignment_id": ASSIGNMENT, "notebook_id": NB2, "submission_id": "s1", "index": 0, "total": 1,
    "base_url": "/", "student": "mallory", "last_name": "", "first_name": "", "notebook_path": "x",
}  # fmt: skip


@pytest.mark.parametrize("course_page", [True, False], ids=["make formgrader", "on a hub"])
def test_the_formgrader_page_of_a_hostile_notebook_runs_none_of_it(course_page):
    exporter = formgrader_exporter(course_page)
    page, _ = exporter.from_notebook_node(hostile_notebook(), resources=dict(FORMGRADER_RESOURCES))
    assert active_parts(page, "XSS") == []
    assert page.count(REMOVED_NOTICE) >= 4  # the markdown, HTML and markdown outputs, raw cell
    assert "<b>bold</b>" in page  # harmless HTML output still renders
    assert page.count("<math") >= 3  # the markdown's math, as MathML on either page
    assert 'height="20" src="data:image/png;base64,iVBORw0KGgo="' in page  # a plot keeps its size


def test_safe_outputs_keeps_known_shapes_only():
    nb, _ = SafeOutputs().preprocess(hostile_notebook(), {})
    outputs = nb.cells[1].outputs
    kinds = [next(iter(o.get("data", {"stream": 0}))) for o in outputs]
    assert kinds == [
        "text/html",
        "text/plain",
        "text/markdown",
        "text/plain",
        "image/png",
        "image/svg+xml",
        "stream",
        "text/plain",
    ]
    assert outputs[1].data["text/plain"] == "[an output of a kind this page does not show]"  # the script
    assert outputs[4].metadata == {"image/png": {"height": 20}}
    assert outputs[6].name == "stdout"
    assert "<script>" not in nb.cells[3].metadata["nbgrader"]["grade_id"]
    assert "widgets" not in nb.metadata
    # A well-formed notebook passes unchanged.
    plain = new_notebook(
        cells=[new_code_cell("1", metadata={"nbgrader": {"grade_id": "test_dlogits", "points": 5}})]
    )
    assert SafeOutputs().preprocess(nbformat.from_dict(plain), {})[0] == plain


# ----------------------------------------------------------------------------- slow, for real
STUDENT = "mallory"
BROWSER_ATTACKS = [  # each would add its name to window.__xss if it ran
    '<img src="missing.png" onerror="(window.__xss = window.__xss || []).push(\'markdown img\')">',
    "<script>(window.__xss = window.__xss || []).push('markdown script')</script>",
    r"$\text{<img src=missing.png onerror=\"(window.__xss = window.__xss || []).push('math')\">}$",
]
HOSTILE_OUTPUT_CELL = """
from IPython.display import HTML, Javascript, Markdown, display
display(HTML('<img src="missing.png" onerror="(window.__xss = window.__xss || []).push(\\'html output\\')">'))
display(Javascript("(window.__xss = window.__xss || []).push('javascript output')"))
display(Markdown('<img src="missing.png" onerror="(window.__xss = window.__xss || []).push(\\'markdown output\\')">'))
"""


REMOVED_TEXT = "[markup that could run in this page was removed from what follows]"


def ran_in_browser(url: str, headers: dict | None = None) -> tuple[list, str, str]:
    """In chromium: what the page's hostile parts pushed to window.__xss, the page's text, and
    ``typeof jQuery`` (the Formgrader's own scripts still run)."""
    from playwright import sync_api

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(extra_http_headers=headers or {})
            page.goto(url)
            page.wait_for_load_state("load")
            page.wait_for_timeout(1000)  # an image's onerror fires after its request fails
            found = page.evaluate("[window.__xss || [], typeof window.jQuery]")
            return found[0], page.inner_text("body"), found[1]
        finally:
            browser.close()


@pytest.mark.pipeline
@pytest.mark.sandbox
@pytest.mark.notebooks
@pytest.mark.browser
def test_a_hostile_submission_runs_nothing_in_the_formgrader_or_its_feedback(course_root, tmp_path):
    assert CHROMIUM.exists(), f"no {CHROMIUM}: `make system-packages` installs it"
    course = Course.load(root=course_root)
    notebook = nbformat.read(course.release_notebook(NB2), as_version=4)
    notebook.cells += [new_markdown_cell("\n\n".join(BROWSER_ATTACKS)), new_code_cell(HOSTILE_OUTPUT_CELL)]
    path = course.submitted_notebook(STUDENT, NB2)
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, path)
    autograde_class(course, workers=1, verify_seed=1, progress=False)
    autograded = nbformat.read(course.autograded_notebook(STUDENT, NB2), as_version=4)
    kinds = {
        mime
        for c in autograded.cells
        if c.cell_type == "code"
        for o in c.outputs
        for mime in o.get("data", {})
    }
    assert {"text/html", "application/javascript", "text/markdown"} <= kinds  # the kernel made them

    feedback_class(course, workers=1, students=[STUDENT])
    head = course.feedback_page(STUDENT, NB2).read_text(encoding="utf-8").split("<body", 1)[0]
    policies = [
        m.get("content", "") for m in meta_tags(head) if m.get("http-equiv") == "Content-Security-Policy"
    ]
    assert policies == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"]
    pushed, text, _ = ran_in_browser(course.feedback_page(STUDENT, NB2).as_uri())
    assert pushed == []
    assert REMOVED_TEXT in text  # the page says what it left out

    port, token, log = free_port(), "t0ken-safe-pages", tmp_path / "server.log"
    with open(log, "wb") as out:
        process, _ = start_formgrader(course, port=port, token=token, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        api = f"{base}/formgrader/api/submitted_notebooks/{ASSIGNMENT}/{NB2}?token={token}"
        submission = {s["student"]: s for s in wait_for_json(api, process, log)}[STUDENT]
        page = f"{base}/formgrader/submissions/{submission['id']}/?token={token}"
        pushed, text, jquery = ran_in_browser(page, {"Authorization": f"token {token}"})
        assert pushed == []
        assert jquery == "function"  # the Formgrader's own scripts run
        assert REMOVED_TEXT in text
        assert "Differentiate the two terms of" in text  # the notebook itself is there
    finally:
        process.terminate()
        process.wait(timeout=30)
