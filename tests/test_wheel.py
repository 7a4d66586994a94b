"""Students anywhere (slow part): the wheel, installed where no checkout is, and the Colab
install cell run as on Colab."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest
from helpers import build_wheel

from backprop_ninja.cells import grade_id, is_answer
from backprop_ninja.course import (
    COMMAND,
    INSTALL_CELL_ID,
    INSTALL_SOURCE_VARIABLE,
    NAMES_SHA256,
    NOTEBOOKS,
    RELEASE_DIR,
    REPO_ROOT,
    SOLUTIONS_DIR,
)

pytestmark = [pytest.mark.pipeline, pytest.mark.notebooks]

CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def test_the_wheel_carries_the_notebooks_a_verified_names_txt_and_the_command(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for notebook in NOTEBOOKS:
            member = f"backprop_ninja/bundled/{notebook}.ipynb"
            assert archive.read(member) == (RELEASE_DIR / f"{notebook}.ipynb").read_bytes()
        assert hashlib.sha256(archive.read("backprop_ninja/bundled/names.txt")).hexdigest() == NAMES_SHA256
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert f"{COMMAND} = backprop_ninja.student.cli:main" in archive.read(entry_points).decode()
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        text = archive.read(metadata).decode()
    assert "Requires-Dist: torch>=2.1" in text
    assert "Requires-Python: >=3.10" in text
    assert not any("solutions" in n or n.startswith("tests/") for n in names)


def install_cell_source(notebook: str) -> str:
    nb = nbformat.read(str(RELEASE_DIR / f"{notebook}.ipynb"), as_version=4)
    (cell,) = [c for c in nb.cells if grade_id(c) == INSTALL_CELL_ID]
    return cell.source


def run_install_cell(tmp_path: Path, wheel: Path, *, on_colab: bool):
    """The notebook's install cell, run by this Python with pip installing into a --target
    folder (no dependencies: torch is here already), with or without a stand-in Colab."""
    stand_in = tmp_path / "stand_in"
    if on_colab:
        (stand_in / "google" / "colab").mkdir(parents=True)
        (stand_in / "google" / "colab" / "__init__.py").write_text("# stand-in for Colab\n")
    target = tmp_path / "target"
    env = {
        **CLEAN_ENV,
        "PYTHONPATH": str(stand_in),
        INSTALL_SOURCE_VARIABLE: str(wheel),
        "PIP_TARGET": str(target),
        "PIP_NO_DEPS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", install_cell_source(NOTEBOOKS[0])],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, target


def test_the_colab_cell_installs_the_package_on_colab(tmp_path, wheel):
    done, target = run_install_cell(tmp_path, wheel, on_colab=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"✅ installed the course's package from {wheel}"
    assert (target / "backprop_ninja" / "bundled" / "names.txt").exists()
    assert (target / "backprop_ninja" / "testing.py").exists()


def test_the_colab_cell_does_nothing_elsewhere(tmp_path, wheel):
    done, target = run_install_cell(tmp_path, wheel, on_colab=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
    assert done.stderr == ""
    assert not target.exists()


# ---------------------------------------------------------------- outside the repository
@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory, wheel) -> Path:
    """A new venv (no system site-packages) with only the wheel, installed as a student would
    with the course's constraints (torch from the local 2.13.0 wheel)."""
    venv = tmp_path_factory.mktemp("student") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=CLEAN_ENV)
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            str(wheel),
            "-c",
            str(REPO_ROOT / "constraints.txt"),
        ],
        check=True,
        env=CLEAN_ENV,
        cwd=venv.parent,
        timeout=1800,
    )
    return venv


def with_answers(student: Path, replacements: dict[str, str] | None = None) -> None:
    """Fill the student notebook's answer cells from the solutions (or ``replacements``)."""
    nb = nbformat.read(str(student), as_version=4)
    solution = nbformat.read(str(SOLUTIONS_DIR / student.name), as_version=4)
    answers = {grade_id(c): c.source for c in solution.cells if is_answer(c)}
    answers.update(replacements or {})
    for cell in nb.cells:
        if is_answer(cell):
            cell.source = answers[grade_id(cell)]
    nbformat.write(nb, str(student))


def backprop_ninja(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**CLEAN_ENV, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}", "HOME": str(cwd)}
    return subprocess.run(
        [str(venv / "bin" / COMMAND), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900
    )


WRONG_DLOGITS = '''def cross_entropy_backward(logits, Yb):
    """The softmax minus one at the targets — but the mean's 1/n is forgotten."""
    dlogits = F.softmax(logits, dim=1)
    dlogits[torch.arange(logits.shape[0]), Yb] -= 1
    return dlogits
'''


def test_a_student_without_a_checkout_copies_fills_and_checks_a_notebook(fresh_venv, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert REPO_ROOT not in home.parents
    # The package in the venv is the wheel's, not this checkout.
    where = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import backprop_ninja.data as d; print(d.DEFAULT_NAMES_PATH)",
        ],
        cwd=home,
        env=CLEAN_ENV,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip().startswith(str(fresh_venv)), where.stderr

    copied = backprop_ninja(fresh_venv, "notebooks", "work", cwd=home)
    assert copied.returncode == 0, copied.stderr
    notebook = home / "work" / "2_fused_cross_entropy.ipynb"
    with_answers(notebook)
    passed = backprop_ninja(fresh_venv, "check", "work/2_fused_cross_entropy.ipynb", cwd=home)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "✅ test_dlogits (5/5)" in passed.stdout
    assert "2_fused_cross_entropy.ipynb: 5/5 points — all visible tests pass" in passed.stdout

    with_answers(notebook, {"cross_entropy_backward": WRONG_DLOGITS})
    failed = backprop_ninja(fresh_venv, "check", str(notebook), cwd=home)
    assert failed.returncode != 0
    (line,) = [line for line in failed.stdout.splitlines() if line.startswith("❌ test_dlogits (0/5): ")]
    assert "times too large — the loss is a mean over the batch" in line, line
    assert "divide by n" in line, line
    assert "Traceback" not in failed.stdout + failed.stderr


def test_the_wheel_is_built_from_the_solutions_never_from_what_notebooks_holds(tmp_path):
    """Answers typed into `make lab` (here: notebook 2's model answer and a marker, written into
    a copy of the checkout's notebooks/) never reach the wheel: its notebooks are generated from
    solutions/ by nbgrader, and carry no solution text and no hidden test."""
    import shutil

    checkout = tmp_path / "checkout with space"
    tracked = (
        subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    for name in [n for n in tracked if n] + ["data/names.txt"]:
        target = checkout / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if (REPO_ROOT / name).is_file():
            shutil.copy2(REPO_ROOT / name, target)
    model_line = "dlogits /= n  # the loss is a mean over the n rows"
    edited = checkout / "notebooks" / "backprop_ninja" / f"{NOTEBOOKS[1]}.ipynb"
    nb = nbformat.read(str(edited), as_version=4)
    for cell in nb.cells:
        if is_answer(cell):
            cell.source = f"# TYPED INTO MAKE LAB\n{model_line}\n"
    nbformat.write(nb, str(edited))
    built = build_wheel(checkout, tmp_path / "dist")
    with zipfile.ZipFile(built) as archive:
        for notebook in NOTEBOOKS:
            text = archive.read(f"backprop_ninja/bundled/{notebook}.ipynb").decode()
            for leak in ("TYPED INTO MAKE LAB", model_line, "BEGIN SOLUTION", "BEGIN HIDDEN TESTS"):
                assert leak not in text, (notebook, leak)
            # exactly what `make release` makes of the solutions (the committed notebooks/)
            assert text.encode() == (RELEASE_DIR / f"{notebook}.ipynb").read_bytes(), notebook
