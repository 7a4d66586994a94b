"""Opening a file a student gave to ``backprop-ninja check``: the notebook, or one plain line
that says what the file is instead and what to do.

Every way a path can fail to be one of the course's notebooks gets its own sentence: nothing
there, a dangling link, a folder, an unreadable or empty file, bytes that are not text, text
that is not JSON, JSON that is not a notebook, a notebook of another course. No exception
text reaches the student.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..cells import grade_id, is_test
from ..course import COMMAND, INSTALL_CELL_ID, NOTEBOOKS

COURSE_PACKAGE = "backprop_ninja"  # what the setup cell of every course notebook imports
FRESH_COPY = f"`{COMMAND} notebooks DIR` copies fresh ones"
WHICH = "one of the course's notebooks (" + ", ".join(f"{name}.ipynb" for name in NOTEBOOKS) + ")"


@dataclass(frozen=True)
class Opened:
    """A notebook read from a path (``nb``), or why there is none (``problem``, one line)."""

    nb: object = None
    problem: str = ""


def path_problem(path: Path) -> str:
    """What is wrong with ``path`` as a file to read, before reading it ('' when nothing)."""
    if path.is_symlink() and not path.exists():
        return f"is a link to {path.readlink()}, which does not exist — give the notebook itself"
    if not path.exists():
        return f"no such file — give the path of {WHICH}"
    if path.is_dir():
        return f"is a folder, not a notebook — give the notebooks in it: {COMMAND} check {path}/*.ipynb"
    if not path.is_file():
        return "is not a regular file (a device or a pipe?) — give the path of a saved .ipynb notebook"
    return ""


def read_text(path: Path) -> tuple[str, str]:
    """(the file's text, '') or ('', what stopped it being read as text)."""
    try:
        data = path.read_bytes()
    except PermissionError:
        return "", f"cannot be read: you have no permission to read it — try `chmod u+r {path}`"
    except OSError as error:
        reason = error.strerror or "the system refused"
        return "", f"cannot be read ({reason.lower()}) — copy it somewhere readable and check the copy"
    if not data.strip():
        return (
            "",
            f"is empty — the save or the download did not finish? Save it again in Jupyter ({FRESH_COPY})",
        )
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return "", (
            "is not a notebook: it is not UTF-8 text (a binary file, or saved in another encoding?) "
            f"— give a .ipynb saved by Jupyter ({FRESH_COPY})"
        )


def what_json(value: object) -> str:
    """A name for a JSON value that is not a notebook: 'a number', 'a list', …"""
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if value is None:
        return "null"
    return "an object without notebook cells" if value else "an empty object"


def json_problem(value: object) -> str:
    """Why a parsed JSON value is not a Jupyter notebook ('' when it has a notebook's shape)."""
    if isinstance(value, dict) and isinstance(value.get("cells"), list) and "nbformat" in value:
        return ""
    return (
        f"is JSON but not a Jupyter notebook (it holds {what_json(value)}) — give a .ipynb saved by "
        f"Jupyter ({FRESH_COPY})"
    )


def is_course_notebook(nb) -> bool:
    """One of this course's notebooks: its install cell, or a cell importing the course package."""
    return any(
        grade_id(cell) == INSTALL_CELL_ID or COURSE_PACKAGE in (cell.get("source") or "") for cell in nb.cells
    )


def open_notebook(path: Path) -> Opened:
    """The notebook at ``path`` (read only, never written), or one line on why it is none."""
    path = Path(path)
    problem = path_problem(path)
    if problem:
        return Opened(problem=problem)
    text, problem = read_text(path)
    if problem:
        return Opened(problem=problem)
    try:
        value = json.loads(text)
    except RecursionError:  # brackets nested thousands deep: no notebook looks like that
        return Opened(
            problem=f"is not a notebook: its JSON is nested thousands of levels deep — {FRESH_COPY}"
        )
    except ValueError as error:
        where = f"line {error.lineno}" if isinstance(error, json.JSONDecodeError) else "somewhere"
        return Opened(
            problem=f"is not a notebook: its text is not valid JSON ({where}; cut off, or edited by hand?) "
            f"— open it in Jupyter or take your last good copy ({FRESH_COPY})"
        )
    problem = json_problem(value)
    if problem:
        return Opened(problem=problem)
    try:
        import nbformat

        nb = nbformat.reads(text, as_version=4)
    except Exception:  # a notebook's shape, but not a form nbformat reads: say so, no internals
        return Opened(problem=f"looks like a notebook but Jupyter cannot read it — {FRESH_COPY}")
    if not is_course_notebook(nb):
        return Opened(problem=f"is not one of this course's notebooks — give {WHICH}")
    if not any(is_test(cell) for cell in nb.cells):
        return Opened(problem=f"has no graded tests left (were they deleted?) — {FRESH_COPY}")
    return Opened(nb=nb)
