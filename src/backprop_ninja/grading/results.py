"""The typed seam between grading one student (the job) and the coordinator.

A ``GradingJob`` carries everything grading needs — the registered release and the student's
submitted files as bytes — so it runs the same in a local worker process or on a Dask worker
with no shared filesystem. Its ``GradingResult`` says, per notebook, what happened and, per
test, the points with every decision behind them (nbgrader's run, the integrity scan, the
verifier). Only the coordinator turns a result into gradebook rows and files (``gradebook``).

Nothing here imports torch or nbgrader: these objects cross process and machine boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .status import GRADED, MISSING, NotebookResult

# A notebook whose grading (all cells, with the per-cell timeout, and the checks) takes longer
# than this is stopped and reported; the student's other notebooks are still graded.
NOTEBOOK_TIMEOUT = 900
# Where a decision about a test's points came from.
NBGRADER, INTEGRITY, VERIFIER, GRADER = "nbgrader", "integrity", "verifier", "grader"


@dataclass(frozen=True)
class Release:
    """The assignment as registered once per run: nbgrader's gradebook holding its cells,
    points and checksums (SQLite bytes), and the solution notebooks the checks compare with."""

    gradebook: bytes
    sources: dict[str, bytes]  # notebook → the solution notebook's bytes
    cell_timeout: int  # seconds per cell (nbgrader's Execute.timeout)


@dataclass(frozen=True)
class GradingJob:
    """Grade one student: the release, their submitted notebooks, and how to grade them."""

    student: str
    release: Release
    files: dict[str, bytes]  # notebook → submitted bytes (absent: not submitted)
    refused: dict[str, str] = field(default_factory=dict)  # notebook → why it is not graded
    notebook_timeout: float = NOTEBOOK_TIMEOUT
    verify_timeout: float = 60.0
    verify_seed: int | None = None
    sandboxed: bool = True
    threads: int | None = None  # torch threads per kernel (None: torch's default)
    known_verdicts: dict[str, dict[str, tuple[bool, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    """One judgement about a test's points, with its source and a one-line message."""

    source: str  # NBGRADER, INTEGRITY, VERIFIER or GRADER
    kind: str  # e.g. "passed", "failed", "finding", "mismatch", "unchecked"
    message: str = ""


@dataclass
class GradedTest:
    """A graded cell of a notebook: nbgrader's points and what the checks decided."""

    test: str
    max_points: float
    auto_points: float | None  # what nbgrader's run gave (None: not run)
    decisions: list[Decision] = field(default_factory=list)
    withdrawn: str = ""  # why the points were withdrawn (empty: kept)
    finding: str = ""  # an integrity finding on a test that earned nothing (shown, no effect)
    needs_review: bool = False  # a TA must look (the checks could not run)

    @property
    def points(self) -> float:
        return 0.0 if self.withdrawn else (self.auto_points or 0.0)


@dataclass
class NotebookGrade:
    """One notebook of the job: its state, its tests, and the autograded notebook."""

    notebook: str
    state: str  # classroom.status.STATES
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    tests: list[GradedTest] = field(default_factory=list)
    comments: dict[str, str] = field(default_factory=dict)  # answer cell → nbgrader's auto comment
    autograded: bytes | None = None  # the executed notebook (graded notebooks only)
    seconds: float = 0.0
    verdicts_key: str | None = None  # digest of the answer cells, for sharing verifier verdicts
    verdicts: dict[str, tuple[bool, str]] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # test → why it lost points (the grader's)

    def withdrawn(self) -> dict[str, str]:
        return {t.test: t.withdrawn for t in self.tests if t.withdrawn}

    def status(self) -> NotebookResult:
        """What the table, the CSV and the feedback pages say about this notebook."""
        return NotebookResult(
            self.notebook,
            self.state,
            reason=self.reason,
            notes=list(self.notes),
            withdrawn=self.withdrawn(),
            findings={t.test: t.finding for t in self.tests if t.finding},
            seconds=self.seconds,
            reasons=dict(self.reasons),
        )


@dataclass
class GradingResult:
    """Everything one job found out about one student; the job's log alongside."""

    student: str
    notebooks: list[NotebookGrade]
    log: str = ""

    def notebook(self, name: str) -> NotebookGrade | None:
        return next((nb for nb in self.notebooks if nb.notebook == name), None)

    @property
    def graded(self) -> int:
        return sum(nb.state == GRADED for nb in self.notebooks)

    @property
    def complete(self) -> bool:
        return all(nb.state in (GRADED, MISSING) for nb in self.notebooks)
