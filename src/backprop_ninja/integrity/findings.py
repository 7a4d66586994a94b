"""What the scan reports: a ``Finding``, its kinds, and the tests that depend on an answer."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("autograd", "monkeypatch", "dynamic", "unknown", "forbidden_import", "syntax")


# Tests that are not gradient checks but depend on an answer function (notebook 4 trains
# with manual_backward): test grade_id → the function it runs.
DEPENDENT_TESTS: dict[str, dict[str, str]] = {"4_full_training": {"test_training": "manual_backward"}}


@dataclass(frozen=True)
class Finding:
    """One reason not to trust part of a submission. ``str(finding)`` is the student's line."""

    cell: str
    line: int
    kind: str
    message: str
    functions: tuple[str, ...] = ()
    whole_notebook: bool = False

    def __str__(self) -> str:
        where = f"{self.cell}, line {self.line}" if self.line else self.cell
        return f"⚑ {self.kind} ({where}): {self.message}"
