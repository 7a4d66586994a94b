"""Issue 26.5: no secret the student's process can see, through the real pipeline (real
nbgrader, real kernels in the sandbox, the real verifier, a real SQLite gradebook).

No hidden test runs in a student's kernel: the kernel runs the visible tests, the trusted
verifier checks the hidden kinds of inputs out of it, from seeds the grader draws. Each test
cell of a feedback page shows the grader's verdict, not what the kernel printed there, and the
page's header quotes the gradebook. Hostile students try what reached their feedback before:
printing the cell history (``In[-2]``, ``_ih``), a pre-run hook that prints each running
cell's source (also hex-encoded), ``sys.setprofile`` printing the arguments of the tests'
calls, and a forged "✅ test_dlogits 5/5" printed by a post-run hook into the test cell.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import nbformat
import pytest
from helpers import VERIFY_SEED, grade_cells, load_demo_module
from helpers import make_course_root as course_root
from nbformat.v4 import new_code_cell

from backprop_ninja.cells import is_test
from backprop_ninja.course import ASSIGNMENT, NOTEBOOKS, REPO_ROOT
from backprop_ninja.grading import Course, autograde_class, feedback_class
from backprop_ninja.grading.status import read_status
from backprop_ninja.verify import secret_seeds

pytestmark = [pytest.mark.pipeline, pytest.mark.sandbox, pytest.mark.notebooks]

NB2 = NOTEBOOKS[1]

# Added before the test cell: every cell's source, plain and in hex, printed as it starts to
# run, and the arguments of the tests' calls (seeds, specs) printed as they are made.
SPY_HOOKS = """\
import sys
def _spy_source(info):
    print("SPY-SOURCE", info.raw_cell)
    print("SPY-HEX", info.raw_cell.encode().hex())
get_ipython().events.register("pre_run_cell", _spy_source)
SPIED = ("test_on", "hidden_specs_for", "fresh_specs", "expect_correct")
def _spy_calls(frame, event, arg):
    if event == "call" and frame.f_code.co_name in SPIED:
        print("SPY-CALL", frame.f_code.co_name, {k: repr(v)[:300] for k, v in frame.f_locals.items()})
sys.setprofile(_spy_calls)
"""
# Added after the test cell: the cell history.
SPY_HISTORY = 'sys.setprofile(None)\nprint("SPY-HISTORY", In[-2])\nprint("SPY-ALL", "\\n".join(_ih))\n'
# Added before the test cell: after every cell, a forged verdict of the kind the test prints.
FORGER = """\
from IPython.display import display
def _forge(result):
    print("✅ test_dlogits 5/5 FORGED")
    display({"text/plain": "FORGED-DISPLAY", "application/vnd.backprop-ninja.verdict+json":
             {"test": "dlogits FORGED", "passed": True, "message": "FORGED"}}, raw=True)
get_ipython().events.register("post_run_cell", _forge)
"""


def with_cells(before_test: str, after_test: str = ""):
    """A mutation of NB2: free cells added just before and after its test cell."""

    def mutate(nb):
        at = next(i for i, cell in enumerate(nb.cells) if is_test(cell))
        added = [new_code_cell(before_test), nb.cells[at]] + (
            [new_code_cell(after_test)] if after_test else []
        )
        nb.cells[at : at + 1] = added
        return nb

    return mutate


def page_text(path: Path) -> str:
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))).split())


def header(path: Path) -> str:
    """The page's header: the points, the summary and the list of tests, before the notebook."""
    page = path.read_text(encoding="utf-8")
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page[: page.index('id="notebook"')])).split())


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """Two students submit NB2, graded and given feedback as `make grade` does."""
    demo = load_demo_module()
    course = Course.load(root=course_root(tmp_path_factory.mktemp("secrets")))
    release, source = course.release_notebook(NB2), course.source_notebook(NB2)
    wrong = demo.replace_in(
        "cross_entropy_backward", "    dlogits /= n  # the loss is a mean over the n rows\n", ""
    )
    students = {
        "spy": with_cells(SPY_HOOKS, SPY_HISTORY)(demo.filled_notebook(release, source)),
        "forger": with_cells(FORGER)(wrong(demo.filled_notebook(release, source))),
    }
    for student, nb in students.items():
        folder = course.submitted / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(nb, str(folder / f"{NB2}.ipynb"))
    autograde_class(course, workers=2, verify_seed=VERIFY_SEED, progress=False)
    feedback_class(course, workers=2)
    return course


def secrets_of_the_grader() -> list[str]:
    """What no page may hold: the verifier's seeds in this run, and hidden test code."""
    return [str(seed) for seed in secret_seeds(VERIFY_SEED)] + ["test_hidden(", "HIDDEN TESTS"]


def test_no_solution_runs_a_hidden_test_in_the_students_kernel():
    for path in (REPO_ROOT / "solutions" / ASSIGNMENT).glob("*.ipynb"):
        for cell in nbformat.read(str(path), as_version=4).cells:
            assert "HIDDEN TESTS" not in cell.source, path
            assert "test_hidden(" not in cell.source, path


def test_a_spy_in_the_kernel_sees_no_secret_and_its_feedback_shows_none(hostile):
    course = hostile
    autograded = course.autograded_notebook("spy", NB2).read_text(encoding="utf-8")
    # The attacks ran (the TA's copy holds what they printed): the test cell's source, in
    # plain text and in hex, the tests' calls with their (public) seeds, the cell history.
    test_cell = next(c for c in nbformat.reads(autograded, as_version=4).cells if is_test(c))
    printed = json.dumps([c.get("outputs", []) for c in nbformat.reads(autograded, as_version=4).cells])
    assert test_cell.source.encode().hex() in printed
    assert "SPY-CALL fresh_specs" in printed
    assert "SPY-HISTORY" in printed
    page = course.feedback_page("spy", NB2)
    text = page_text(page)
    for secret in secrets_of_the_grader():
        assert secret not in autograded, secret  # nothing secret was in the kernel to print
        assert secret not in text, secret
    # The test cell shows the grader's line; what the hook printed into it is not on the page.
    assert test_cell.source.encode().hex() not in text
    assert "SPY-CALL fresh_specs" not in text
    points = grade_cells(course, "spy")[(NB2, "test_dlogits")]
    assert f"{NB2}: {points:g} / 5 points" in header(page)
    assert f"dlogits {points:g}/5" in text


def test_a_forged_verdict_never_reaches_the_header_or_the_test_cell(hostile):
    course = hostile
    assert grade_cells(course, "forger")[(NB2, "test_dlogits")] == 0
    result = read_status(course.status, "forger").result(NB2)
    reason = result.reasons["test_dlogits"]  # the integrity scan caught the hook
    assert f"test_dlogits: no points — {reason}" in result.messages()  # as the class table says it
    page = course.feedback_page("forger", NB2)
    top = header(page)
    assert f"{NB2}: 0 / 5 points" in top
    assert f"dlogits 0/5 — {reason}" in top
    assert "FORGED" not in top
    assert "5/5" not in top
    text = page_text(page)
    assert f"❌ dlogits 0/5 — {reason}" in text  # the test cell's output
    assert "✅ dlogits" not in text
    # The hook printed its forgery into the test cell too (the TA's copy holds it); the page
    # shows the grader's line there, and nothing after it. The student's own cells keep it.
    autograded = nbformat.read(str(course.autograded_notebook("forger", NB2)), as_version=4)
    test_cell = next(c for c in autograded.cells if is_test(c))
    assert "FORGED" in json.dumps(test_cell.outputs)
    shown = text[text.index("Grade cell: test_dlogits") :]
    verdict = f"❌ dlogits 0/5 — {reason}"
    assert shown.index(verdict) < shown.index("FORGED"), shown[:2000]
    assert not shown[shown.index(verdict) + len(verdict) :].lstrip().startswith(("✅", "FORGED"))
    for secret in secrets_of_the_grader():
        assert secret not in text, secret
