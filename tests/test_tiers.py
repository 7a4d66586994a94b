"""The test tiers (pyproject.toml's markers): a test marked ``sandbox`` skips, saying why,
where bubblewrap cannot start a sandbox; an unknown marker is an error, not a silent tier."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tomllib

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent
PYTEST_OPTIONS = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder with this suite's conftest.py and pytest options, and no tests yet."""
    pytester.makeconftest((TESTS / "conftest.py").read_text(encoding="utf-8"))
    markers = "\n".join(f"    {marker}" for marker in PYTEST_OPTIONS["markers"])
    pytester.makeini(f"[pytest]\naddopts = {PYTEST_OPTIONS['addopts']}\nmarkers =\n{markers}\n")
    return pytester


def test_sandbox_tests_skip_with_the_reason_where_bubblewrap_is_missing(suite, monkeypatch, tmp_path):
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.sandbox
        def test_needs_a_sandbox():
            raise AssertionError("must not run without a sandbox")

        def test_unit():
            pass
        """
    )
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on it
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(TESTS.parent / "src")]))
    result = suite.runpytest_subprocess("-rs")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*no sandbox here: bubblewrap (bwrap) is not installed*"])


def test_an_unknown_marker_is_an_error(suite):
    suite.makepyfile(
        """
        import pytest

        @pytest.mark.slow
        def test_in_no_tier():
            pass
        """
    )
    result = suite.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*'slow' not found in `markers` configuration option*"])
