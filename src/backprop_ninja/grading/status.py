"""What happened to each notebook of each student: graded (with notes), failed, stopped, missing.

The worker that grades a student reports one ``NotebookResult`` per notebook; the parent
keeps them in grader/class/status/<student>.json, next to the per-student log in
grader/class/logs/<student>.log. The scores themselves live in the gradebook.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..text import printable

GRADED, FAILED, STOPPED, MISSING = "graded", "failed", "stopped", "missing"
STATES = (GRADED, FAILED, STOPPED, MISSING)


@dataclass
class NotebookResult:
    notebook: str
    state: str  # one of STATES
    reason: str = ""  # why it was not graded (failed, stopped, missing)
    notes: list[str] = field(default_factory=list)  # what a TA should know about a graded one
    withdrawn: dict[str, str] = field(default_factory=dict)  # test → why its points were withdrawn
    findings: dict[str, str] = field(default_factory=dict)  # test that earned nothing → integrity finding
    seconds: float = 0.0
    # test → why it did not earn its points, in the grader's words (the feedback pages show
    # these, never what the student's kernel printed): see ``grading.trust.grade_reasons``
    reasons: dict[str, str] = field(default_factory=dict)

    @property
    def graded(self) -> bool:
        return self.state == GRADED

    def messages(self) -> list[str]:
        """Every note about this notebook, one line each (empty: nothing to say), with no
        control characters: they reach the table, the CSV and the feedback pages."""
        if self.state == MISSING:
            lines = [self.reason or "not submitted"]
        elif self.state in (FAILED, STOPPED):
            lines = [f"NOT GRADED (0 points): {self.reason}"]
        else:
            lines = [
                *self.notes,
                *(f"{test}: points withdrawn — {why}" for test, why in self.withdrawn.items()),
                *(f"{test}: no points — {why}" for test, why in self.findings.items()),
            ]
        return [printable(line) for line in lines]

    @classmethod
    def from_dict(cls, data: dict) -> NotebookResult:
        known = {
            k: data[k]
            for k in ("notebook", "state", "reason", "notes", "withdrawn", "findings", "seconds", "reasons")
            if k in data
        }
        return cls(**known)


@dataclass
class StudentStatus:
    student: str
    notebooks: list[NotebookResult]
    # What a regrade changed, (notebook, test, old points, new points), and how many manual
    # scores and comments a TA had entered were kept: told once by the run, not stored.
    changes: list[tuple[str, str, float | None, float | None]] = field(default_factory=list, compare=False)
    kept_manual: int = field(default=0, compare=False)

    def result(self, notebook: str) -> NotebookResult | None:
        return next((r for r in self.notebooks if r.notebook == notebook), None)

    @property
    def ok(self) -> bool:
        return all(r.state in (GRADED, MISSING) for r in self.notebooks)

    def to_json(self) -> str:
        return json.dumps(
            {"student": self.student, "notebooks": [asdict(r) for r in self.notebooks]},
            indent=1,
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str) -> StudentStatus:
        data = json.loads(text)
        return cls(data["student"], [NotebookResult.from_dict(r) for r in data["notebooks"]])


@contextlib.contextmanager
def replaced_atomically(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` (``os.replace``) only
    when the block ends without an error, so a failed write keeps the previous file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(name)
        os.replace(name, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


def status_path(status_dir: Path, student: str) -> Path:
    return Path(status_dir) / f"{student}.json"


def write_status(status_dir: Path, status: StudentStatus) -> Path:
    path = status_path(status_dir, status.student)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".part")
    partial.write_text(status.to_json(), encoding="utf-8")
    partial.replace(path)
    return path


def read_status(status_dir: Path, student: str) -> StudentStatus | None:
    path = status_path(status_dir, student)
    return StudentStatus.from_json(path.read_text(encoding="utf-8")) if path.exists() else None
