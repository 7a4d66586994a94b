"""Reading a submission: its code cells, classified against the instructor's notebook
(answer, added, restored), with IPython syntax turned into Python."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ..cells import grade_id as _grade_id
from ..cells import nbgrader_meta
from ..course import SOLUTIONS_DIR
from ..text import one_line
from .rules import (
    HARMLESS_LINE_MAGICS,
    HELP,
    LINE_MAGIC,
    PYTHON_CELL_MAGICS,
    SHELL,
    TIMEIT_OPTIONS,
    TIMING_LINE_MAGICS,
)


# ------------------------------------------------------------------------- the notebook
class SubmissionError(ValueError):
    """The submitted file is not a notebook that can be read."""


@dataclass(frozen=True)
class CodeCell:
    """A code cell of the submission, as the grader will treat it.

    ``role``: "answer" (an nbgrader answer cell), "restored" (nbgrader puts the source's
    text back), "course" (an unlocked cell of the source, still exactly as the instructor
    wrote it) or "added" (any other cell: the student's text runs). Only answer and added
    cells are scanned; only answer cells are run by the verifier.
    ``python`` is the text with harmless IPython syntax neutralised (same line numbers),
    or None when it does not parse even as IPython.
    """

    index: int
    role: str
    label: str
    source: str
    python: str | None
    magic_findings: tuple[tuple[int, str], ...] = ()  # (line, what) for disallowed magics
    syntax_error: str | None = None
    too_large: bool = False  # over the code the scan reads (then ``python`` is None)


# The code of one notebook's answer and added cells that the scan parses, per cell and in all.
# A parsed tree takes ~500 times its source in memory, and the grading process is trusted and
# shared: a cell of megabytes is refused unread, and the whole notebook then waits for a TA.
MAX_CHECKED_CELL_BYTES = 64 * 1024
MAX_CHECKED_NOTEBOOK_BYTES = 512 * 1024


def default_source_path(notebook_name: str) -> Path:
    """The instructor's notebook of that name, in the repository's solutions."""
    return SOLUTIONS_DIR / f"{notebook_name}.ipynb"


def read_notebook_json(path: Path) -> dict:
    """The notebook at ``path`` as nbformat 4, read without ever opening it for writing."""
    import nbformat  # here, so that importing this module stays cheap

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode("utf-8")
        nb = nbformat.reads(text, as_version=4)
    except Exception as error:  # not UTF-8, not JSON, not a notebook
        raise SubmissionError(
            f"the notebook file cannot be read as a Jupyter notebook "
            f"({type(error).__name__}: {one_line(str(error), 120)})"
        ) from error
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError("the notebook file has no list of cells")
    return nb


def _source_text(cell) -> str | None:
    source = cell.get("source", "")
    if isinstance(source, list) and all(isinstance(s, str) for s in source):
        return "".join(source)
    return source if isinstance(source, str) else None


def _is_locked(cell) -> bool:
    """nbgrader's rule (nbgrader.utils.is_locked): which source cells it restores."""
    meta = nbgrader_meta(cell)
    if not meta or meta.get("solution"):
        return False
    return bool(meta.get("grade")) or bool(meta.get("locked"))


def _meta(cell) -> dict:
    meta = cell.get("metadata", {})
    meta = meta.get("nbgrader", {}) if isinstance(meta, dict) else {}
    return meta if isinstance(meta, dict) else {}


def classify_cells(submitted: dict, source: dict) -> list[CodeCell]:
    """The submission's code cells with their role (see ``CodeCell``), in notebook order.

    A cell whose grade_id names a locked cell of the source is restored by nbgrader (its
    text is replaced by the source's), whatever its metadata now says. A cell whose grade_id
    names an answer cell of the source stays an answer cell even if its metadata was edited.
    """
    restored, answers, course_code = set(), set(), set()
    for cell in source.get("cells", []):
        gid = _grade_id(cell)
        if gid and _is_locked(cell):
            restored.add(gid)
        elif gid and nbgrader_meta(cell).get("solution"):
            answers.add(gid)
        elif cell.get("cell_type") == "code" and isinstance(_source_text(cell), str):
            course_code.add((_source_text(cell) or "").strip())
    result, added, unnamed, checked_bytes = [], 0, 0, 0
    for index, cell in enumerate(submitted["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        gid = _meta(cell).get("grade_id")
        gid = gid if isinstance(gid, str) and gid else None
        text = _source_text(cell)
        if gid in restored:
            role, label = "restored", gid
        elif (
            gid is None
            and not _meta(cell).get("solution")
            and text is not None
            and text.strip() in course_code
        ):
            role, label = "course", f"course cell #{index}"  # the instructor's text, unchanged
        elif gid in answers or _meta(cell).get("solution"):
            role = "answer"
            if gid:
                label = gid
            else:
                unnamed += 1
                label = f"answer cell #{unnamed}"
        else:
            added += 1
            role, label = "added", f"added cell #{added}"
        size = len((text or "").encode("utf-8", "replace"))
        checked = role in ("answer", "added")
        if checked and size > MAX_CHECKED_CELL_BYTES:
            result.append(_too_large(index, role, label, text or "", notebook_over=False))
        elif checked and checked_bytes + size > MAX_CHECKED_NOTEBOOK_BYTES:
            result.append(_too_large(index, role, label, text or "", notebook_over=True))
        else:
            checked_bytes += size if checked else 0
            result.append(prepare_source(index, role, label, text))
    return result


def _too_large(index: int, role: str, label: str, source: str, notebook_over: bool) -> CodeCell:
    """A cell the scan refuses to parse: too much code to check (see MAX_CHECKED_*_BYTES)."""
    why = (
        f"the notebook's own code is over {MAX_CHECKED_NOTEBOOK_BYTES // 1024} KiB"
        if notebook_over
        else f"the cell is over {MAX_CHECKED_CELL_BYTES // 1024} KiB of code"
    )
    return CodeCell(index, role, label, source, None, (), f"{why}: too large to check", too_large=True)


def load_submission(
    submitted_path: Path, source_path: Path | None = None, notebook_name: str | None = None
) -> tuple[list[CodeCell], list[CodeCell]]:
    """(the submission's code cells, the source's restored code cells), classified.

    Raises ``SubmissionError`` if the submission cannot be read, ``FileNotFoundError`` if
    the source notebook is missing (a configuration error, not the student's).
    """
    name = notebook_name or Path(submitted_path).stem
    source_path = Path(source_path) if source_path is not None else default_source_path(name)
    if not source_path.exists():
        raise FileNotFoundError(
            f"source notebook {source_path} not found: the scan needs it "
            "to know which cells nbgrader restores"
        )
    source = read_notebook_json(source_path)
    submitted = read_notebook_json(submitted_path)
    source_cells = [c for c in classify_cells(source, source) if c.role in ("restored", "course")]
    return classify_cells(submitted, source), source_cells


@dataclass(frozen=True)
class Submission:
    """A submitted notebook, read once: its code cells classified against the instructor's
    notebook, and the instructor's restored cells. The scan, the verifier and the grading
    job's verdict key all read this one object."""

    notebook: str
    cells: list[CodeCell]
    restored: list[CodeCell]

    @property
    def answers(self) -> list[CodeCell]:
        return [cell for cell in self.cells if cell.role == "answer"]


def read_submission(
    submitted_path: Path, source_path: Path | None = None, notebook_name: str | None = None
) -> Submission:
    """``load_submission`` as one typed object (same errors)."""
    name = notebook_name or Path(submitted_path).stem
    cells, restored = load_submission(submitted_path, source_path, name)
    return Submission(name, cells, restored)


# ------------------------------------------------------------------ IPython syntax → Python
def prepare_source(index: int, role: str, label: str, source: str | None) -> CodeCell:
    if source is None:
        return CodeCell(index, role, label, "", None, (), "the cell's source is not text")
    python, magics = _neutralise_magics(source)
    error = _parse_error(python)
    if error is None:
        return CodeCell(index, role, label, source, python, magics)
    # Not Python even after the harmless magics: maybe IPython syntax inside a line
    # (`a = !ls`). IPython turns it into get_ipython() calls, which the scan flags.
    transformed = _ipython_transform(source)
    if transformed is not None and _parse_error(transformed) is None:
        return CodeCell(index, role, label, source, transformed, magics)
    return CodeCell(index, role, label, source, None, magics, error)


def _neutralise_magics(source: str) -> tuple[str, tuple[tuple[int, str], ...]]:
    """Replace IPython-only lines by Python with the same line numbers.

    Timing magics keep their statement; harmless magics and help (`x?`) become ``pass``;
    anything else (shell commands, %run, %%bash …) becomes ``pass`` and is reported.
    """
    if _parse_error(source) is None:
        return source, ()
    lines = source.split("\n")
    magics: list[tuple[int, str]] = []
    first = lines[0].strip()
    if first.startswith("%%"):
        name = first[2:].split()[0] if first[2:].split() else ""
        if name not in PYTHON_CELL_MAGICS:
            magics.append((1, first))
            return "\n" * (len(lines) - 1), tuple(magics)  # its body is not Python
        lines[0] = ""
    for i, line in enumerate(lines):
        indent = line[: len(line) - len(line.lstrip())]
        match = LINE_MAGIC.match(line)
        if match:
            name, rest = match.group(2), match.group(3).strip()
            if name in TIMING_LINE_MAGICS:
                statement = TIMEIT_OPTIONS.sub("", rest, count=1) if name == "timeit" else rest
                lines[i] = indent + (statement or "pass")
                continue
            if name not in HARMLESS_LINE_MAGICS:
                magics.append((i + 1, line.strip()))
            lines[i] = indent + "pass"
        elif SHELL.match(line):
            magics.append((i + 1, line.strip()))
            lines[i] = indent + "pass"
        elif HELP.match(line):
            lines[i] = indent + "pass"
    return "\n".join(lines), tuple(magics)


def _ipython_transform(source: str) -> str | None:
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # IPython missing or the transform itself failed
        return None


def _parse_error(code: str) -> str | None:
    try:
        ast.parse(code)
    except SyntaxError as error:
        return f"line {error.lineno}: {error.msg}"
    except (ValueError, RecursionError, MemoryError) as error:  # null bytes, absurd nesting
        return one_line(f"{type(error).__name__}: {error}", 100)
    return None
