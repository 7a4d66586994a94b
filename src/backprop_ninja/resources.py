"""The course's files wherever the package runs: a checkout of the repository, or an installed
wheel that carries them as package data (torch-free: the wheel's build step imports it).

An installed wheel has ``backprop_ninja/bundled/`` with the four student notebooks and
names.txt (put there by ``bundle_into`` when the wheel is built, never committed to git). A
checkout (an editable install) has no such folder and uses the repository's ``data/`` and
``notebooks/`` instead.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from .course import ASSIGNMENT, COMMAND, NAMES_SHA256, NAMES_URL, NOTEBOOKS, REPO_ROOT

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
REPO_NAMES_PATH = REPO_ROOT / "data" / "names.txt"
REPO_NOTEBOOKS_DIR = REPO_ROOT / "notebooks" / ASSIGNMENT


class DataError(RuntimeError):
    """names.txt is missing or is not the file the course was built on."""

    def _render_traceback_(self):  # in a notebook: the one line that says what to do
        return [f"❌ {self}"]


def sha256_of(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def fetch_names(
    dest: Path,
    *,
    local_copy: Path | None = None,
    url: str = NAMES_URL,
    sha256: str = NAMES_SHA256,
) -> Path:
    """Put names.txt at ``dest``: copied from ``local_copy`` if it exists, else downloaded.

    Either way the file's sha256 must match, or nothing is left at ``dest`` and a
    ``DataError`` says what to do. An already verified ``dest`` is kept as it is.
    """
    dest = Path(dest)
    if dest.exists() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(".part")
    if local_copy is not None and Path(local_copy).exists():
        source = str(local_copy)
        shutil.copyfile(local_copy, partial)
    else:
        source = url
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as error:
            partial.unlink(missing_ok=True)
            raise DataError(
                f"could not download {url}: {error}. Download it by hand and save it as {dest}."
            ) from error
    actual = sha256_of(partial)
    if actual != sha256:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{source} has sha256 {actual}, expected {sha256}: it is not makemore's names.txt. "
            f"Delete it and run `make data` again, or save the right file as {dest}."
        )
    partial.replace(dest)
    return dest


def default_names_path() -> Path:
    """names.txt as the notebooks read it: the wheel's copy if installed, else the checkout's."""
    bundled = BUNDLED_DIR / "names.txt"
    return bundled if bundled.exists() else REPO_NAMES_PATH


def user_cache_dir() -> Path:
    """The user's cache folder for the course (``$XDG_CACHE_HOME/backprop-ninja``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / COMMAND


def splits_cache_dir(names_path: Path) -> Path:
    """Where the tensors built from ``names_path`` are cached: beside it in a checkout, in the
    user's cache for the wheel's copy (an installed package's folder is not written to)."""
    names_path = Path(names_path)
    if names_path.parent.resolve() == BUNDLED_DIR:
        return user_cache_dir()
    return names_path.parent / ".cache"


def student_notebooks_dir() -> Path:
    """The folder holding the four student notebooks: the wheel's copy, else the checkout's."""
    return BUNDLED_DIR if (BUNDLED_DIR / f"{NOTEBOOKS[0]}.ipynb").exists() else REPO_NOTEBOOKS_DIR


def student_notebooks() -> list[Path]:
    """The four student notebooks, in course order (``DataError`` if any is missing)."""
    folder = student_notebooks_dir()
    paths = [folder / f"{name}.ipynb" for name in NOTEBOOKS]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise DataError(f"{', '.join(missing)} missing from {folder}: reinstall the package.")
    return paths


def copy_notebooks(dest: Path) -> list[tuple[Path, bool]]:
    """Copy the student notebooks into ``dest``; never overwrite one that is already there
    (it may hold a student's work). Returns (path in dest, copied?) per notebook."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    done = []
    for source in student_notebooks():
        target = dest / source.name
        copied = not target.exists()
        if copied:
            shutil.copyfile(source, target)
        done.append((target, copied))
    return done


def generate_release(root: Path, folder: Path) -> Path | None:
    """The student notebooks generated from ``root``/solutions by ``nbgrader generate_assignment``
    into ``folder`` (its own throwaway gradebook; notebooks/ is never read): the folder that
    holds them, or None where nbgrader is not installed (an isolated build from a git clone,
    whose committed notebooks/ is the release already)."""
    if importlib.util.find_spec("nbgrader") is None:
        return None
    root, folder = Path(root).resolve(), Path(folder).resolve()
    shutil.rmtree(folder, ignore_errors=True)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # alembic
    with tempfile.TemporaryDirectory(prefix="release-") as scratch:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "nbgrader",
                "generate_assignment",
                ASSIGNMENT,
                "--force",
                f"--NbGrader.config_file={root / 'grader' / 'nbgrader_config.py'}",
                f"--CourseDirectory.root={root}",
                f"--CourseDirectory.release_directory={folder}",
                f"--CourseDirectory.db_url=sqlite:///{Path(scratch) / 'gradebook.db'}",
                "--log-level=WARN",
            ],
            check=True,
            cwd=root,
            env=env,
        )
    return folder / ASSIGNMENT


def bundle_into(
    folder: Path, root: Path = REPO_ROOT, *, names_copy: Path | None = None, release: Path | None = None
) -> list[Path]:
    """What the wheel's build step runs: the student notebooks (from ``release``, a folder
    ``generate_release`` made from the solutions, else the checkout's notebooks/) and a
    verified names.txt (``root``/data/names.txt, else ``names_copy``, else downloaded) into
    ``folder``. Returns the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    notebooks = Path(release) if release is not None else Path(root) / "notebooks" / ASSIGNMENT
    written = []
    for name in NOTEBOOKS:
        source = notebooks / f"{name}.ipynb"
        shutil.copyfile(source, folder / source.name)
        written.append(folder / source.name)
    local = Path(root) / "data" / "names.txt"
    written.append(fetch_names(folder / "names.txt", local_copy=local if local.exists() else names_copy))
    return written
