"""The course's notebooks.

* The solution notebooks (solutions/) reproduce their committed outputs under nbval.
* The student notebooks (notebooks/) are exactly what `make release` (nbgrader
  generate_assignment) makes from the solutions, and carry no solution text.
* Graded by nbgrader's own validator: every solution notebook passes every test, and in every
  student notebook every graded test fails, with a message that says why.

Notebook 4 trains for ``CI_STEPS`` steps here (``BACKPROP_NINJA_STEPS``), not 200,000.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.validator import Validator

from backprop_ninja.cells import answer_cells, grade_id, is_test
from backprop_ninja.course import ASSIGNMENT, DEPENDENT_TESTS, NOTEBOOKS
from backprop_ninja.judge.exercises import GRADED_TESTS
from backprop_ninja.maintainer.notebooks import CI_STEPS, RELEASE, REPO_ROOT, SOLUTIONS, STEPS_VARIABLE

pytestmark = pytest.mark.notebooks

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
# Text that must never reach a student: nbgrader's solution and hidden-test markers, and the
# hidden tests' calls.
SOLUTION_MARKERS = (
    "BEGIN SOLUTION",
    "END SOLUTION",
    "BEGIN HIDDEN TESTS",
    "END HIDDEN TESTS",
    "test_hidden(",
)
NBGRADER = [sys.executable, "-m", "nbgrader"]
CONFIG = f"--NbGrader.config_file={REPO_ROOT / 'grader' / 'nbgrader_config.py'}"


# Kernels started by these tests inherit this environment: notebook 4 trains briefly, and
# torch uses one thread — two kernels run at once here (nbval beside the validator), and
# two-thread kernels on two busy cores wait on each other at every operation.
KERNEL_ENV = {STEPS_VARIABLE: str(CI_STEPS), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def kernel_env(monkeypatch):
    for name, value in KERNEL_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module", autouse=True)
def nbval_run(tmp_path_factory):
    """nbval on the solution notebooks, started in a subprocess as soon as this module's
    tests start, so that it runs while the validator tests below run. Its output goes to a
    file (a pipe nobody reads would fill up and stall it)."""
    log_path = tmp_path_factory.mktemp("nbval") / "nbval.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pytest",
                "--nbval",
                "--nbval-current-env",
                "--nbval-sanitize-with",
                str(SANITIZE),
                "-p",
                "no:cacheprovider",
                "-q",
                str(SOLUTIONS),
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **KERNEL_ENV},
        )
    yield process, log_path
    if process.poll() is None:  # only when the nbval test itself was deselected
        process.kill()
        process.wait()


def notebook_files(directory: Path) -> list[str]:
    return sorted(
        str(p.relative_to(directory))
        for p in directory.rglob("*")
        if p.is_file() and ".ipynb_checkpoints" not in p.parts and "__pycache__" not in p.parts
    )


# ------------------------------------------------------------------------- the release
def test_release_is_in_sync_with_the_solutions(tmp_path):
    """`make release` run now would write exactly the committed notebooks/ (regenerate with
    `make release` and commit, if this fails)."""
    release = tmp_path / "release"
    result = subprocess.run(
        [
            *NBGRADER,
            "generate_assignment",
            ASSIGNMENT,
            "--force",
            "--no-db",
            CONFIG,
            f"--CourseDirectory.release_directory={release}",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    fresh, committed = release / ASSIGNMENT, RELEASE
    assert notebook_files(fresh) == notebook_files(committed)
    stale = [
        name
        for name in notebook_files(fresh)
        if (fresh / name).read_bytes() != (committed / name).read_bytes()
    ]
    assert not stale, f"notebooks/ is out of date for {stale}: run `make release` and commit"


def test_sources_and_release_hold_only_the_four_notebooks():
    """nbgrader copies every file beside the sources into the release: a stray file (a
    solution .py, a data file) would reach the students."""
    expected = sorted(f"{name}.ipynb" for name in NOTEBOOKS)
    assert notebook_files(SOLUTIONS) == expected
    assert notebook_files(RELEASE) == expected


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_student_notebook_is_clean_and_holds_no_solution(name):
    text = (RELEASE / f"{name}.ipynb").read_text(encoding="utf-8")
    for marker in SOLUTION_MARKERS:
        assert marker not in text, f"{marker!r} in notebooks/{name}.ipynb"
    student = nbformat.reads(text, as_version=4)
    code = [cell for cell in student.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert all("execution" not in cell.metadata for cell in code)  # no recorded timings
    assert "widgets" not in student.metadata

    # No line of a solution survives in the student's code cells.
    solution = nbformat.read(str(SOLUTIONS / f"{name}.ipynb"), as_version=4)
    student_code = "\n".join(cell.source for cell in code)
    for cell in answer_cells(solution):
        body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        for line in body.splitlines():
            if len(line.strip()) > 12:  # skip trivial lines ("return d", "n = ...")
                assert line.strip() not in student_code, f"{grade_id(cell)}: {line.strip()!r}"

    # Every answer is a stub, and every graded test cell is there, with its points.
    for cell in answer_cells(student):
        assert "raise NotImplementedError()" in cell.source, grade_id(cell)
    tests = {grade_id(cell): cell.metadata["nbgrader"]["points"] for cell in student.cells if is_test(cell)}
    expected = set(GRADED_TESTS[name]) | set(DEPENDENT_TESTS.get(name, {}))
    assert set(tests) == expected


def test_points_add_up_to_the_course_plan():
    points = {}
    for name in NOTEBOOKS:
        nb = json.loads((RELEASE / f"{name}.ipynb").read_text(encoding="utf-8"))
        points[name] = sum(
            cell["metadata"].get("nbgrader", {}).get("points", 0)
            for cell in nb["cells"]
            if cell["metadata"].get("nbgrader", {}).get("grade")
        )
    assert points == {
        "1_atomic_backprop": 26,
        "2_fused_cross_entropy": 5,
        "3_fused_batchnorm": 5,
        "4_full_training": 10,
    }


# ------------------------------------------------------------- nbgrader's validator
# (`nbgrader validate` exits 0 even when tests fail, so the Python API is used instead.)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_solution_passes_every_test(name):
    results = Validator().validate(str(SOLUTIONS / f"{name}.ipynb"))
    failed = [
        cell["source"].splitlines()[0] + "\n" + cell["raw_error"][-500:] for cell in results.get("failed", [])
    ]
    assert results == {}, "\n\n".join(failed) or results


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_graded_test_fails_in_the_student_notebook(name):
    """Run the student notebook as a student receives it: every graded test cell must fail,
    and say that the function is not implemented yet (not crash on something else)."""
    path = RELEASE / f"{name}.ipynb"
    student = nbformat.read(str(path), as_version=4)
    graded = {cell.source.strip() for cell in student.cells if is_test(cell)}
    results = Validator().validate(str(path))
    assert set(results) == {"failed"}, results
    failed = {cell["source"]: cell["raw_error"] for cell in results["failed"]}
    assert set(failed) == graded
    for source, error in failed.items():
        assert "is not implemented yet" in error, f"{source}\n{error[-800:]}"


# ------------------------------------------------------------------------------- nbval
# Last in this file: it collects the run that the nbval_run fixture started at the beginning.
def test_solutions_reproduce_their_committed_outputs(nbval_run):
    """nbval re-runs every solution notebook and compares each cell's output with the committed
    one (timings and progress bars are tagged nbval-ignore-output; rounding is sanitised).
    After a deliberate change: `make solutions` re-executes them."""
    process, log_path = nbval_run
    returncode = process.wait(timeout=900)
    output = log_path.read_text()
    hint = "\n(after a deliberate change: `make solutions`, then `make release`, and commit)"
    assert returncode == 0, output[-8000:] + hint
    assert re.search(r"\d+ passed", output), output[-2000:]
