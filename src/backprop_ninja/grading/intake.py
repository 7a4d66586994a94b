"""Reading a student's submission for grading: which file is which notebook, and its bytes.

Only regular files are read, each opened without following a link and at most
``MAX_NOTEBOOK_BYTES``: a link into solutions/ or a classmate's folder never is. A file whose
name differs from a course notebook's only by case, a browser's ``(1)`` / ``-1`` or a
``Copy of`` decoration, spaces, hyphens or underscores, or that sits in a subfolder, is
matched to that notebook when it is the only candidate (``match_files``); the submitted file
keeps its name (the job grades a copy under the notebook's name). Whatever cannot be matched
is said in the notebook's reason: which file was found and what name it needs.
"""

from __future__ import annotations

import functools
import operator
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..course import ASSIGNMENT, MAX_NOTEBOOK_BYTES, NOTEBOOKS

# Decorations a browser, an LMS or a file manager adds to a name: "Copy of x", "x (1)",
# "x-1", "x copy", "x_2" (a trailing number after a separator).
_PREFIX = re.compile(r"^(copy of )+")
_SUFFIX = re.compile(r"(\s*\(\d+\)|[\s_-]+\d+|[\s_-]+copy)+$")
_SEPARATORS = re.compile(r"[\s_\-.]+")


def canonical(name: str) -> str:
    """A notebook file name reduced to what identifies it: "Copy of 1_Atomic backprop (1).ipynb"
    → "1atomicbackprop"."""
    stem = name[: -len(".ipynb")] if name.lower().endswith(".ipynb") else name
    stem = _PREFIX.sub("", stem.strip().lower())
    stem = _SUFFIX.sub("", stem)
    return _SEPARATORS.sub("", stem)


_CANONICAL = {canonical(nb): nb for nb in NOTEBOOKS}


def canonical_notebook(name: str) -> str | None:
    """The course notebook a file name can only be (``canonical``), or None."""
    return _CANONICAL.get(canonical(name))


@dataclass
class Matching:
    """A student's folder: notebook → the file that is it, and the files left over."""

    files: dict[str, Path] = field(default_factory=dict)  # notebook → the file to grade
    unmatched: dict[str, str] = field(default_factory=dict)  # relative file name → why
    ambiguous: dict[str, list[str]] = field(default_factory=dict)  # notebook → candidates

    def renamed(self, folder: Path) -> dict[str, str]:
        """notebook → the submitted file's name, where it was not the notebook's own."""
        return {
            nb: str(path.relative_to(folder))
            for nb, path in self.files.items()
            if path != folder / ASSIGNMENT / f"{nb}.ipynb"
        }


def match_files(folder: Path) -> Matching:
    """Which file of a student's ``folder`` (searched without following links) is which
    notebook: <folder>/backprop_ninja/<notebook>.ipynb itself, else the one candidate."""
    matching = Matching()
    candidates: dict[str, list[Path]] = {}
    exact = {folder / ASSIGNMENT / f"{nb}.ipynb": nb for nb in NOTEBOOKS}
    for path in _notebook_files(folder):
        relative = str(path.relative_to(folder))
        if path in exact:
            matching.files[exact[path]] = path
            continue
        notebook = canonical_notebook(path.name)
        if notebook is None:
            matching.unmatched[relative] = "its name is none of the course's notebooks"
        else:
            candidates.setdefault(notebook, []).append(path)
    for notebook, paths in candidates.items():
        names = sorted(str(p.relative_to(folder)) for p in paths)
        if notebook in matching.files:
            for name in names:
                matching.unmatched[name] = f"{ASSIGNMENT}/{notebook}.ipynb itself was submitted too"
        elif len(paths) == 1:
            matching.files[notebook] = paths[0]
        else:
            matching.ambiguous[notebook] = names
            for name in names:
                matching.unmatched[name] = f"one of {len(names)} files that could be {notebook}.ipynb"
    return matching


def _notebook_files(folder: Path) -> list[Path]:
    if not folder.is_dir() or folder.is_symlink():
        return []
    return sorted(
        Path(here, name)
        for here, _, names in os.walk(folder)  # never follows a link
        for name in names
        if name.lower().endswith(".ipynb") and not name.startswith(".")
    )


def missing_reason(notebook: str, matching: Matching, folder: Path) -> str:
    """Why ``notebook`` is not graded when no file is it: what was found, what it needs."""
    if notebook in matching.ambiguous:
        names = ", ".join(matching.ambiguous[notebook])
        return f"not graded: {names} could each be {notebook}.ipynb; keep one, named {notebook}.ipynb"
    others = [
        name
        for name in matching.unmatched
        if name not in functools.reduce(operator.iadd, matching.ambiguous.values(), [])
    ]
    if others:
        return (
            f"no file named {notebook}.ipynb; found {', '.join(others[:3])}, which is none of the "
            f"course's notebooks: if it is this one, rename it to {notebook}.ipynb"
        )
    return "not submitted"


def read_submission(course, student: str) -> tuple[dict[str, bytes], dict[str, str]]:
    """The student's four notebooks as bytes, and the ones refused (or not found) with the
    reason: only regular files are read (a link into solutions/ or a classmate's folder never is)."""
    files: dict[str, bytes] = {}
    refused: dict[str, str] = {}
    folder = course.submitted / student
    matching = match_files(folder)
    for notebook in NOTEBOOKS:
        path = course.submitted_notebook(student, notebook)
        if not path.exists() and not path.is_symlink():
            if notebook in matching.files:
                path = matching.files[notebook]
            else:
                missing = missing_reason(notebook, matching, folder)
                if missing != "not submitted":
                    refused[notebook] = missing
                continue
        reason = not_a_regular_submission(course, student, notebook, path)
        data = b"" if reason else _read_regular(path, MAX_NOTEBOOK_BYTES + 1)
        if not reason and len(data) > MAX_NOTEBOOK_BYTES:
            reason = too_large(path.lstat().st_size)
        if reason:
            refused[notebook] = reason
        else:
            files[notebook] = data
    return files, refused


def submitted_notebooks(course, students: list[str]) -> set[str]:
    """The notebooks any of ``students`` handed in a file for (by its name; nothing is read):
    what a run grades, so what the grader proves itself on first."""
    found: set[str] = set()
    for student in students:
        matched = match_files(course.submitted / student).files
        found |= {
            notebook
            for notebook in NOTEBOOKS
            if notebook in matched or os.path.lexists(course.submitted_notebook(student, notebook))
        }
    return found


def too_large(size: int) -> str:
    """Why a notebook file of ``size`` bytes is not graded."""
    return (
        f"the notebook is {size / 2**20:.0f} MiB, over {MAX_NOTEBOOK_BYTES // 2**20} MiB: "
        "clear its outputs (Edit → Clear Outputs of All Cells), save and submit again"
    )


def _read_regular(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file, opened without following a link (O_NOFOLLOW)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read(limit)


def not_a_regular_submission(course, student: str, notebook: str, path: Path | None = None) -> str | None:
    """Why the submitted notebook is not graded, if it (or a folder above it, up to the
    submissions) is a link or not a regular file: grading must never follow a link into
    solutions/ or a classmate's work."""
    path = path or course.submitted_notebook(student, notebook)
    folder = course.submitted / student
    parts = [path, *(p for p in path.parents if p.is_relative_to(folder))]
    for part in parts:
        if part.is_symlink():
            return f"{part.relative_to(course.submitted)} is a link, not the student's own file: ask for the notebook itself"
    if not stat.S_ISREG(path.lstat().st_mode):
        return "the submitted notebook is not a regular file: ask for the notebook itself"
    # A link beside the notebook says someone tried: refuse rather than guess (only the
    # notebooks are ever read, but a TA should look).
    odd = [
        os.path.relpath(os.path.join(here, name), folder)
        for here, dirs, files in os.walk(folder)  # never follows a link
        for name in dirs + files
        if not (stat.S_ISREG(mode := os.lstat(os.path.join(here, name)).st_mode) or stat.S_ISDIR(mode))
    ]
    if odd:
        return (
            f"the submission folder holds links or special files ({', '.join(sorted(odd)[:3])}): remove them"
        )
    return None
