"""Fixtures shared by the test modules (no test module imports another)."""

from __future__ import annotations

from pathlib import Path

import pytest

from backprop_ninja.course import REPO_ROOT


@pytest.fixture
def course_root(tmp_path: Path) -> Path:
    """A course root with the repository's solutions and released notebooks (linked), and
    nothing else: a class graded here writes only inside ``tmp_path``."""
    root = tmp_path / "course"
    root.mkdir()
    for folder in ("solutions", "notebooks"):
        (root / folder).symlink_to(REPO_ROOT / folder, target_is_directory=True)
    return root
