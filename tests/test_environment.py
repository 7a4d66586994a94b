"""The package declares ranges (pyproject.toml); the course pins them exactly
(constraints.txt), and every installer of the course uses those pins."""

import shlex
from pathlib import Path

import pytest
import tomllib
import yaml
from helpers import make_commands
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent


def requirements() -> list[Requirement]:
    """Every dependency the package declares: the core ones and every extra's."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def pins() -> dict[str, Version]:
    """constraints.txt: package → its exact version."""
    pinned: dict[str, Version] = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins exactly: {line!r}"
            pinned[canonicalize_name(name)] = Version(version)
    return pinned


def test_every_dependency_is_pinned_and_every_pin_is_a_dependency():
    declared = {canonicalize_name(r.name) for r in requirements()}
    assert declared == set(pins())


def test_every_pin_lies_in_the_declared_range():
    pinned = pins()
    outside = [
        f"{r.name}=={pinned[canonicalize_name(r.name)]} is outside {r}"
        for r in requirements()
        if not r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True)
    ]
    assert outside == []


def test_the_package_declares_ranges_that_admit_colabs_torch_and_python_310():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert all("==" not in str(r.specifier) for r in requirements())
    (torch,) = [r for r in requirements() if r.name == "torch"]
    assert torch.specifier.contains("2.1.0")
    assert torch.specifier.contains("2.13.0")
    assert not torch.specifier.contains("2.0.1")
    assert project["requires-python"] == ">=3.10"
    assert pins()["torch"] == Version("2.13.0")  # the only torch this machine installs locally


@pytest.mark.parametrize("changed", ["constraints.txt", "pyproject.toml"])
def test_make_setup_reinstalls_with_the_constraints_when_a_pin_or_range_changes(changed):
    others = [
        arg for name in {"constraints.txt", "pyproject.toml", "setup.py"} - {changed} for arg in ("-o", name)
    ]
    commands = make_commands("-o", "system-packages", *others, "-W", changed, "setup")
    installs = [shlex.split(c) for c in commands if "pip" in c and "install" in c and "--upgrade" not in c]
    assert len(installs) == 1, commands
    (install,) = installs
    assert install[install.index("-c") + 1] == "constraints.txt"
    assert install[install.index("-e") + 1] == ".[lab,grade,dev,hub]"


def test_environment_yml_installs_the_project_with_the_constraints_and_python_311():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    assert pip_section == ["-c constraints.txt", "--editable .[lab,grade,dev,hub]"]
