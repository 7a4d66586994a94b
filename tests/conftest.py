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


@pytest.fixture(scope="session")
def demo_class_module():
    """grader/make_demo_class.py (a script, not a package module): filled notebooks and the
    mutation helpers that the demo class and the tamper suite are made of."""
    import importlib.util
    import sys

    if "make_demo_class" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "make_demo_class", REPO_ROOT / "grader" / "make_demo_class.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["make_demo_class"] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["make_demo_class"]


@pytest.fixture(scope="session")
def wheel(tmp_path_factory) -> Path:
    """The course's wheel, built once from this checkout as `make wheel` builds it."""
    import subprocess
    import sys

    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
        + ["--wheel-dir", str(dist), str(REPO_ROOT)],
        check=True,
        cwd=dist,
    )
    (built,) = dist.glob("backprop_ninja-*.whl")
    return built
