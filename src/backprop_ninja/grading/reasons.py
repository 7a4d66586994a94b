"""Why nbgrader could not grade a notebook, and what else a TA should know, in one line each.

nbgrader reports a failed notebook as a traceback in its log and leaves the notebook's
grades empty (0 points); a cell it had to interrupt or a test cell it had to put back is a
warning in the log. These functions turn a notebook's log (and its autograded copy) into
the notes the grade table, the CSV and the per-student log show, so that no 0 is silent.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..course import MAX_MESSAGE_BYTES

# What begins the reason of a failure that is the grader's, never the student's.
GRADER_PROBLEM = "grader problem: "
# Failures before any of the student's code ran: the kernel could not be started (its sandbox
# could not be built, its interpreter or the course's modules could not be loaded). Checked
# before FAILURE_PATTERNS, whose "kernel died" is for a kernel that died running the notebook.
GRADER_PATTERNS: tuple[re.Pattern, ...] = (
    re.compile(r"Kernel died before replying to kernel_info"),
    re.compile(r"Kernel didn't respond in \d+ seconds"),
    re.compile(r"KernelStartError: (?P<detail>.+)"),
    re.compile(r"ZMQError: (?P<detail>.+)"),  # the grader's sockets to the kernel
)
# (pattern in nbgrader's log, the reason shown), first match wins: the specific causes come
# before the generic symptoms they also produce.
FAILURE_PATTERNS: tuple[tuple[re.Pattern, str], ...] = (
    (
        re.compile(r"NotJSONError|JSONDecodeError|does not appear to be JSON|Unreadable Notebook"),
        "the file is not a valid notebook (invalid JSON: damaged or edited outside Jupyter); "
        "ask for a new upload",
    ),
    (
        re.compile(r"Cell '(?P<cell>[^']+)' does not exist in the database"),
        "cell '{cell}' is not part of the assignment: its nbgrader metadata (grade_id) was "
        "edited, so the notebook fails validation; restore it from the released notebook",
    ),
    (
        re.compile(r"Notebook failed to validate|nbgrader metadata may be corrupted|ValidationError"),
        "the nbgrader metadata of a cell was edited, so the notebook fails validation; "
        "restore it from the released notebook",
    ),
    (
        re.compile(r"SchemaTooOldError|SchemaTooNewError|old version\s+of the nbgrader metadata"),
        "the notebook's nbgrader metadata has another schema version; resubmit from the released notebook",
    ),
    (
        re.compile(r"Kernel died|DeadKernelError"),
        "the Python kernel died while running the notebook (os._exit, exit(), a crash or "
        "running out of memory)",
    ),
    (
        # A message over the grader's size limit, or a full queue of them (classroom/kernels.py):
        # the kernel's messages were lost, among them the one saying that a cell had finished.
        re.compile(r"Timeout waiting for IOPub output"),
        f"the notebook sent more output than the grader accepts (one output over "
        f"{MAX_MESSAGE_BYTES // 2**20} MiB, or a flood of prints or displays), so some was lost: "
        "print less, then submit again",
    ),
    (
        re.compile(r"UnresponsiveKernelError|the kernel became\s+unresponsive"),
        "the kernel stopped responding and could not be interrupted (an endless loop that "
        "ignores interrupts, or memory exhausted)",
    ),
)
ERROR_LINE = re.compile(r"^\s*(?:\w+\.)*(?P<name>\w+(?:Error|Exception)): (?P<message>.+)$", re.M)
RESTORED_CELL = re.compile(r"Missing grade cell (?P<cell>\S+) encountered, adding to notebook")
TIMEOUT_LINE = re.compile(r"Timeout waiting for execute reply \((?P<seconds>\d+)s\)")
# What a cell that was stopped after Execute.timeout shows as its error.
INTERRUPTED = frozenset({"KeyboardInterrupt", "CellTimeoutError"})


def grader_problem(why: str) -> str:
    """The reason of a notebook the grader failed (not the student): says so first."""
    return GRADER_PROBLEM + why


def is_grader_problem(reason: str) -> bool:
    return reason.startswith(GRADER_PROBLEM)


def failure_reason(log: str) -> str:
    """One line for a notebook nbgrader could not grade, from its log (and traceback): the
    grader's own failures (``GRADER_PATTERNS``) first, then the student's."""
    for pattern in GRADER_PATTERNS:
        match = pattern.search(log)
        if match:
            detail = _short(match.groupdict().get("detail") or match.group(0))
            return grader_problem(
                f"the Python kernel could not start ({detail}), before any of the student's code "
                "ran: fix the grader (the student's log has the kernel's last lines), then grade again"
            )
    for pattern, reason in FAILURE_PATTERNS:
        match = pattern.search(log)
        if match:
            return reason.format(**match.groupdict())
    errors = [m for m in ERROR_LINE.finditer(log) if m.group("name") != "NbGraderException"]
    if errors:
        last = errors[-1]
        return f"nbgrader could not grade it: {last.group('name')}: {_short(last.group('message'))}"
    return "nbgrader could not grade it (see the student's log)"


def restored_cells(log: str) -> list[str]:
    """Test cells the student had deleted and nbgrader put back (OverwriteCells.add_missing_cells)."""
    return [m.group("cell") for m in RESTORED_CELL.finditer(log)]


def interrupted_cells(autograded: Path) -> list[str]:
    """The cells of an autograded notebook that were stopped after the per-cell timeout,
    named by grade_id or by position ("cell 12")."""
    import nbformat

    try:
        nb = nbformat.read(str(autograded), as_version=4)
    except Exception:  # no autograded copy: nothing ran, nothing was interrupted
        return []
    names = []
    for index, cell in enumerate(nb.cells, start=1):
        outputs = cell.get("outputs", []) if cell.cell_type == "code" else []
        if any(o.get("output_type") == "error" and o.get("ename") in INTERRUPTED for o in outputs):
            names.append(cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell {index}")
    return names


def success_notes(log: str, autograded: Path, cell_timeout: int) -> list[str]:
    """What a TA should know about a notebook that was graded."""
    notes = [f"test cell {cell} had been deleted; it was put back and run" for cell in restored_cells(log)]
    interrupted = interrupted_cells(autograded)
    if interrupted:
        notes.append(f"stopped after {cell_timeout} s (never ended): {', '.join(interrupted)}")
    elif TIMEOUT_LINE.search(log):
        notes.append(f"a cell ran longer than {cell_timeout} s and was interrupted")
    return notes


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
