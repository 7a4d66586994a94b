"""What the scan reports: a ``Finding`` and its kinds."""

from __future__ import annotations

from dataclasses import dataclass

KINDS = ("autograd", "monkeypatch", "dynamic", "unknown", "forbidden_import", "syntax")


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
