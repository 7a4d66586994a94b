"""Students anywhere (fast part): the course's files wherever the package runs, the
`backprop-ninja` command, the student Lab's configuration, the Colab install cell, and the
self-check's reading of a notebook."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest
from helpers import make_commands

from backprop_ninja import resources
from backprop_ninja.cells import grade_id, read_notebook
from backprop_ninja.course import (
    INSTALL_CELL_ID,
    INSTALL_SOURCE_VARIABLE,
    NAMES_SHA256,
    NOTEBOOKS,
    PACKAGE_SOURCE,
    RELEASE_DIR,
    REPO_ROOT,
    SOLUTIONS_DIR,
    VERDICT_MIME,
    colab_url,
)
from backprop_ninja.judge.problems import Problem
from backprop_ninja.student import cli, selfcheck
from backprop_ninja.student import lab as studentlab


# ---------------------------------------------------------------- files and `notebooks DIR`
def test_bundle_into_writes_the_four_notebooks_and_a_verified_names_txt(tmp_path):
    written = resources.bundle_into(tmp_path / "bundled")
    assert sorted(p.name for p in written) == sorted([f"{n}.ipynb" for n in NOTEBOOKS] + ["names.txt"])
    assert resources.sha256_of(tmp_path / "bundled" / "names.txt") == NAMES_SHA256
    for name in NOTEBOOKS:
        assert (tmp_path / "bundled" / f"{name}.ipynb").read_bytes() == (
            RELEASE_DIR / f"{name}.ipynb"
        ).read_bytes()


def test_bundle_into_refuses_a_names_txt_with_the_wrong_sha256(tmp_path):
    root = tmp_path / "checkout"
    root.mkdir()
    (root / "notebooks").symlink_to(REPO_ROOT / "notebooks", target_is_directory=True)
    (root / "data").mkdir()
    (root / "data" / "names.txt").write_text("emma\nolivia\n")
    with pytest.raises(resources.DataError, match="sha256"):
        resources.bundle_into(tmp_path / "bundled", root)
    assert not (tmp_path / "bundled" / "names.txt").exists()


def test_a_checkout_reads_its_own_data_and_notebooks():
    assert not resources.BUNDLED_DIR.exists()  # never built into the source tree
    assert resources.default_names_path() == REPO_ROOT / "data" / "names.txt"
    assert resources.student_notebooks() == [RELEASE_DIR / f"{n}.ipynb" for n in NOTEBOOKS]
    assert resources.splits_cache_dir(REPO_ROOT / "data" / "names.txt") == REPO_ROOT / "data" / ".cache"


def test_notebooks_command_copies_and_never_overwrites_a_students_work(tmp_path, capsys):
    assert cli.main(["notebooks", str(tmp_path / "work")]) == 0
    mine = tmp_path / "work" / f"{NOTEBOOKS[0]}.ipynb"
    mine.write_text("my answers")
    assert cli.main(["notebooks", str(tmp_path / "work")]) == 0
    assert mine.read_text() == "my answers"
    out = capsys.readouterr().out
    assert f"kept your {mine} (already there, not overwritten)" in out
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == sorted(f"{n}.ipynb" for n in NOTEBOOKS)


@pytest.mark.parametrize(
    ("where", "says"),
    [
        ("a file", "is a file, not a folder — give a folder to copy the notebooks into"),
        ("under a file", "(Not a directory) — give a folder you can write"),
    ],
)
def test_notebooks_into_a_place_that_cannot_hold_them_is_one_line(tmp_path, capsys, where, says):
    file = tmp_path / "notes.txt"
    file.write_text("mine")
    target = file if where == "a file" else file / "work"
    assert cli.main(["notebooks", str(target)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("error: ")
    assert says in err
    assert "Errno" not in err
    assert file.read_text() == "mine"


def test_unknown_options_are_refused_except_for_lab(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["notebooks", "x", "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


# ---------------------------------------------------------------- the Colab install cell
def install_cell(notebook_path):
    code = [c for c in read_notebook(notebook_path).cells if c.cell_type == "code"]
    return code[0]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_student_notebook_opens_with_the_locked_colab_install_cell(name):
    cell = install_cell(RELEASE_DIR / f"{name}.ipynb")
    meta = cell.metadata["nbgrader"]
    assert grade_id(cell) == INSTALL_CELL_ID
    assert meta["locked"]
    assert not meta["solution"]
    assert not meta["grade"]
    assert cell.metadata["editable"] is False
    assert cell.metadata["deletable"] is False
    # The ONE configured location, overridable by the environment variable.
    assert f'os.environ.get("{INSTALL_SOURCE_VARIABLE}", "{PACKAGE_SOURCE}")' in cell.source
    assert 'find_spec("google.colab")' in cell.source
    assert cell.source == install_cell(SOLUTIONS_DIR / f"{name}.ipynb").source
    assert len(cell.source.splitlines()) <= 15  # short


def test_readme_has_an_open_in_colab_badge_per_notebook():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in NOTEBOOKS:
        badge = (
            f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(name)})"
        )
        assert badge in readme, name


# ---------------------------------------------------------------- the student Lab
def test_student_config_hides_every_instructor_tool_without_an_exchange():
    files = studentlab.student_config(None)
    server = files["jupyter_server_config.json"]["ServerApp"]["jpserver_extensions"]
    assert server == {
        "nbgrader.server_extensions.formgrader": False,
        "nbgrader.server_extensions.course_list": False,
        "nbgrader.server_extensions.assignment_list": False,
        "nbgrader.server_extensions.validate_assignment": False,
        "backprop_ninja.student.validation": True,  # Validate answered by the self-check
    }
    disabled = files["labconfig/page_config.json"]["disabledExtensions"]
    assert set(disabled) == {
        "@jupyter/nbgrader:formgrader",
        "@jupyter/nbgrader:course-list",
        "@jupyter/nbgrader:create-assignment",
        "@jupyter/nbgrader:menu",
        "@jupyter/nbgrader:assignment-list",
        "@jupyterlab/apputils-extension:announcements",
    }
    assert "@jupyter/nbgrader:validate-assignment" not in disabled
    assert "nbgrader_config.json" not in files


def test_an_exchange_brings_the_assignment_list_back(tmp_path):
    assert studentlab.exchange_root({"BACKPROP_NINJA_EXCHANGE": str(tmp_path)}) == tmp_path
    files = studentlab.student_config(tmp_path)
    assert files["jupyter_server_config.json"]["ServerApp"]["jpserver_extensions"][
        "nbgrader.server_extensions.assignment_list"
    ]
    assert (
        "@jupyter/nbgrader:assignment-list" not in files["labconfig/page_config.json"]["disabledExtensions"]
    )
    assert files["nbgrader_config.json"] == {"Exchange": {"root": str(tmp_path)}}


def test_the_config_folder_jupyter_reads_is_written(tmp_path):
    folder = studentlab.write_config(studentlab.config_dir({"XDG_CONFIG_HOME": str(tmp_path)}), None)
    assert folder == tmp_path / "backprop-ninja" / "jupyter"
    assert '"@jupyter/nbgrader:formgrader": true' in (folder / "labconfig" / "page_config.json").read_text()


def test_a_server_on_the_folder_or_above_it_is_reused(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    other = {"root_dir": str(tmp_path / "elsewhere"), "url": "http://localhost:8889/", "token": "b"}
    above = {"root_dir": str(tmp_path), "url": "http://localhost:8888/", "token": "a"}
    assert studentlab.server_covering(work, [other]) is None
    assert studentlab.server_covering(work, [other, above]) is above
    assert studentlab.server_url(above, work) == "http://localhost:8888/lab/tree/work?token=a"
    assert studentlab.server_url({**above, "token": ""}, tmp_path) == "http://localhost:8888/lab/tree/"


def test_the_lab_runs_as_root_only_when_it_must(tmp_path):
    assert "--allow-root" in studentlab.lab_command(tmp_path, [], as_root=True)
    command = studentlab.lab_command(tmp_path, ["--port=9999"], as_root=False)
    assert "--allow-root" not in command
    assert command[-1] == "--port=9999"
    assert f"--ServerApp.root_dir={tmp_path.resolve()}" in command


# ---------------------------------------------------------------- reading a checked notebook
def executed_notebook(*cells):
    nb = nbformat.v4.new_notebook()
    for gid, points, error in cells:
        cell = nbformat.v4.new_code_cell("...")
        cell.metadata["nbgrader"] = {"grade_id": gid, "grade": points is not None, "solution": False}
        if points is not None:
            cell.metadata["nbgrader"]["points"] = points
        if error:
            cell.outputs = [nbformat.v4.new_output("error", ename=error[0], evalue=error[1], traceback=[])]
        nb.cells.append(cell)
    return nb


def test_outcomes_are_read_from_the_test_cells_only():
    nb = executed_notebook(
        ("setup", None, None),
        ("test_dlogprobs", 1, None),
        ("test_dprobs", 1, ("GradeFailure", "dprobs on this batch: wrong sign\n(flip it)")),
        ("test_dW1", 2, ("NameError", "name 'grad_W1' is not defined")),
    )
    outcomes = selfcheck.outcomes_of(nb)
    lines = [o.line() for o in outcomes]
    assert lines == [
        "✅ test_dlogprobs (1/1)",
        "❌ test_dprobs (0/1): dprobs on this batch: wrong sign (flip it)",
        "❌ test_dW1 (0/2): name 'grad_W1' is not defined — run the cell that defines it (did it raise an error?)",
    ]
    check = selfcheck.NotebookCheck(REPO_ROOT / "x.ipynb", outcomes)
    assert not check.passed
    assert check.lines()[-1] == "x.ipynb: 1/4 points — 1/3 tests pass"
    assert selfcheck.setup_problem(nb) == ""


def test_a_failed_setup_cell_is_the_one_reason_given():
    nb = executed_notebook(("setup", None, ("ModuleNotFoundError", "No module named 'backprop_ninja'")))
    assert selfcheck.setup_problem(nb) == (
        "the setup cell failed with ModuleNotFoundError: No module named 'backprop_ninja'"
    )


def test_the_courses_own_messages_reach_the_student_without_their_class_name():
    reason = selfcheck.failure_reason("StudentMessage", "`f` is not defined: run the answer cell above first")
    assert reason == "`f` is not defined: run the answer cell above first"
    assert (
        selfcheck.failure_reason("ZeroDivisionError", "division by zero")
        == "ZeroDivisionError: division by zero"
    )


def course_notebook(tmp_path, name="2_fused_cross_entropy.ipynb"):
    path = tmp_path / name
    path.write_bytes((RELEASE_DIR / name).read_bytes())
    return path


def another_courses_notebook():
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("assert answer() == 42")
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "grade_id": "test_42", "points": 1}
    nb.cells.append(cell)
    return nbformat.writes(nb)


def make_bad_input(tmp_path, kind: str):
    """A path to something that is not one of the course's notebooks, of the given kind."""
    path = tmp_path / "x.ipynb"
    if kind == "folder":
        (tmp_path / "work").mkdir()
        return tmp_path / "work"
    if kind == "folder named .ipynb":
        path.mkdir()
    elif kind == "dangling link":  # unreadable even as root: the file it names is gone
        path.symlink_to(tmp_path / "gone" / "x.ipynb")
    elif kind == "non-UTF-8":
        path.write_bytes(b"\xff\xfe{\x00\x00 cells")
    elif kind == "cut off":
        path.write_bytes(course_notebook(tmp_path, "2_fused_cross_entropy.ipynb").read_bytes()[:500])
    elif kind == "another course":
        path.write_text(another_courses_notebook())
    elif kind == "nested deep":  # valid JSON that Python's parser gives up on
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "absent":
        pass
    else:
        path.write_text({"empty": "", "blank": "  \n", "1": "1", "[]": "[]", "{}": "{}"}[kind])
    return path


BAD_INPUTS = {
    "absent": "no such file — give the path of one of the course's notebooks",
    "folder": "is a folder, not a notebook — give the notebooks in it: backprop-ninja check",
    "folder named .ipynb": "is a folder, not a notebook",
    "dangling link": "is a link to ",
    "empty": "is empty — the save or the download did not finish?",
    "blank": "is empty",
    "non-UTF-8": "is not a notebook: it is not UTF-8 text",
    "cut off": "is not a notebook: its text is not valid JSON (line ",
    "1": "is JSON but not a Jupyter notebook (it holds a number)",
    "[]": "is JSON but not a Jupyter notebook (it holds an empty list)",
    "{}": "is JSON but not a Jupyter notebook (it holds an empty object)",
    "another course": "is not one of this course's notebooks — give one of the course's notebooks (1_atomic",
    "nested deep": "is not a notebook: its JSON is nested thousands of levels deep",
}


@pytest.mark.parametrize("kind", BAD_INPUTS)
def test_every_bad_input_to_check_is_one_plain_line(tmp_path, capsys, kind):
    path = make_bad_input(tmp_path, kind)
    status = cli.main(["check", str(path)])
    out, err = capsys.readouterr()
    assert status == 1
    (line,) = [line for line in out.splitlines() if line.startswith("❌")]
    assert line.startswith(f"❌ {path.name}: {BAD_INPUTS[kind]}"), line
    assert " — " in line  # what it is — what to do
    for internal in ("Traceback", "Error", "object has no", "not iterable", "('", "nbformat"):
        assert internal not in out + err, (internal, out)


def test_a_fault_of_the_tool_itself_is_one_line_never_a_traceback(tmp_path, capsys, monkeypatch):
    """Whatever nobody foresaw inside the student's command (here a fault put into it) ends as
    one line that says it is not the student's code, and exit 2."""

    def broken(*_):
        raise KeyError("cells")

    monkeypatch.setattr(cli, "cmd_check", broken)
    status = cli.main(["check", str(course_notebook(tmp_path))])
    out, err = capsys.readouterr()
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert "something went wrong inside the course's tool (KeyError: 'cells') — not your code's fault" in err
    assert "Traceback" not in err


def test_a_notebook_whose_tests_were_deleted_is_named_so(tmp_path):
    path = course_notebook(tmp_path)
    nb = read_notebook(path)
    nb.cells = [cell for cell in nb.cells if not cell.metadata.get("nbgrader", {}).get("grade")]
    path.write_text(nbformat.writes(nb))
    check = selfcheck.check_notebook(path)
    assert check.lines() == [
        f"❌ {path.name}: has no graded tests left (were they deleted?) — "
        "`backprop-ninja notebooks DIR` copies fresh ones"
    ]


def test_a_bad_timeout_is_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check", "--timeout", "soon", "x.ipynb"])
    assert "'soon' is not a number of seconds (e.g. 20)" in capsys.readouterr().err


def with_answer_source(path, source: str):
    nb = read_notebook(path)
    (answer,) = [cell for cell in nb.cells if grade_id(cell) == "cross_entropy_backward"]
    answer.source = source
    path.write_text(nbformat.writes(nb))


@pytest.mark.notebooks
def test_an_endless_answer_cell_is_named_and_the_test_after_it_not_run(tmp_path):
    """Issue 28 point 2, through the command in a real kernel: the stuck cell is named."""
    import subprocess
    import sys

    path = course_notebook(tmp_path)
    with_answer_source(
        path, "def cross_entropy_backward(logits, Yb):\n    return logits\n\nwhile True:\n    pass\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "backprop_ninja.student.cli", "check", "--timeout", "20", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("❌")]
    assert lines == [
        "❌ cell 5 (cross_entropy_backward) still running after 20 s — an endless loop?",
        "❌ test_dlogits (0/5): not run: cell 5 (cross_entropy_backward) did not finish",
    ]
    assert f"{path.name}: 0/5 points — 0/1 tests pass" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert "StudentMessage" not in done.stdout


@pytest.mark.notebooks
def test_an_answer_that_kills_the_kernel_is_named(tmp_path):
    path = course_notebook(tmp_path)
    with_answer_source(path, "import os\nos._exit(1)\n")
    check = selfcheck.check_notebook(path, timeout=20)
    assert check.lines()[:2] == [
        "❌ cell 5 (cross_entropy_backward) stopped the kernel (it crashed or exited) — look for exit(), "
        "os._exit or a huge tensor",
        "❌ test_dlogits (0/5): not run: cell 5 (cross_entropy_backward) did not finish",
    ]


def test_no_module_of_the_students_command_imports_torch():
    # `backprop-ninja notebooks`/`lab` start fast and the wheel's build step imports resources.
    import subprocess
    import sys

    code = (
        "import sys; import backprop_ninja.student.cli, backprop_ninja.resources, backprop_ninja.student.lab, "
        "backprop_ninja.student.selfcheck; print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert out.stdout.strip() == "False", out.stderr


def test_make_lab_opens_the_student_lab_on_the_released_notebooks():
    (command,) = make_commands("-o", "setup", "-o", "data", "lab")
    program, *arguments = shlex.split(command)
    assert Path(program) == Path(".venv/bin/backprop-ninja")
    assert arguments[0] == "lab"
    assert (REPO_ROOT / arguments[1]).resolve() == RELEASE_DIR.resolve()


def test_make_system_packages_installs_what_is_missing_chromium_included(tmp_path):
    """`make setup` installs the Debian packages grading and the tests need, and only those
    that are missing: run for real, with an apt-get that only writes down what it was asked."""
    fake = tmp_path / "bin"
    fake.mkdir()
    asked = tmp_path / "apt-get.log"
    scripts = {"apt-get": f'echo "$@" >> {asked}', "sudo": 'exec "$@"'}
    for name, body in scripts.items():
        (fake / name).write_text(f"#!/bin/sh\n{body}\n")
        (fake / name).chmod(0o755)
    (fake / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    make = [shutil.which("make") or "make", "--no-print-directory", "system-packages"]
    subprocess.run(make, cwd=REPO_ROOT, env={"PATH": str(fake)}, check=True, capture_output=True)
    update, install = asked.read_text().splitlines()
    assert update.split()[0] == "update"
    assert install.split()[:1] == ["install"]
    assert {"bubblewrap", "postgresql", "chromium"} <= set(install.split())
    asked.unlink()
    for command in ("bwrap", "pg_ctlcluster", "chromium"):  # all there: nothing to install
        (fake / command).symlink_to(fake / "sudo")
    subprocess.run(make, cwd=REPO_ROOT, env={"PATH": str(fake)}, check=True, capture_output=True)
    assert not asked.exists()


def test_check_names_each_failure_in_the_graders_vocabulary():
    """`check` reads the problem a test cell's verdict names: the words the class report and
    the verifier use (judge.problems)."""
    nb = executed_notebook(
        ("test_dprobs", 1, ("GradeFailure", "dprobs on this batch: the sign is flipped")),
        ("test_dW1", 2, ("NameError", "name 'grad_W1' is not defined")),
        ("test_db2", 1, ("ZeroDivisionError", "division by zero")),
        ("test_dh", 1, None),
    )
    verdict = {"test": "dprobs", "passed": False, "problem": "sign", "message": "the sign is flipped"}
    nb.cells[0].outputs.insert(0, nbformat.v4.new_output("display_data", data={VERDICT_MIME: verdict}))
    problems = [o.problem for o in selfcheck.outcomes_of(nb)]
    assert problems == [Problem.SIGN, Problem.MISSING, Problem.ERROR, None]


# ---------------------------------------------------------------- Validate, answered by the self-check
def test_validate_answers_with_checks_summary_then_one_line_per_failing_test():
    from backprop_ninja.student import validation

    outcomes = (
        selfcheck.TestOutcome("test_dprobs", 1, True),
        selfcheck.TestOutcome("test_db2", 2, False, "db2: sum over dim 0"),
    )
    check = selfcheck.NotebookCheck(REPO_ROOT / "1_atomic_backprop.ipynb", outcomes)
    answer = validation.dialog_answer(validation.summary_lines(check))
    (failed,) = answer["value"]["failed"]
    assert failed["source"] == "1_atomic_backprop.ipynb: 1/3 points — 1/2 tests pass"
    assert failed["raw_error"] == "❌ test_db2 (0/2): db2: sum over dim 0"
    passing = selfcheck.NotebookCheck(REPO_ROOT / "2.ipynb", outcomes[:1])
    assert validation.summary_lines(passing) == ["✅ 2.ipynb: 1/1 points — all visible tests pass"]


def test_validate_refuses_a_path_outside_the_labs_folder(tmp_path):
    from backprop_ninja.student import validation

    (tmp_path / "lab").mkdir()
    answer = validation.validate(tmp_path / "lab", "../secret.ipynb")
    assert (
        answer["value"]["failed"][0]["source"] == "❌ ../secret.ipynb: is outside the folder this Lab serves"
    )
