"""The conda environment and the pip environment must install the same pinned packages."""

from pathlib import Path

import tomllib
import yaml

REPO = Path(__file__).resolve().parent.parent


def pyproject_pins() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return set(project["dependencies"])


def conda_pip_section() -> list[str]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    (pip_section,) = [d["pip"] for d in env["dependencies"] if isinstance(d, dict)]
    return pip_section


def test_every_dependency_is_pinned_exactly():
    assert all("==" in pin for pin in pyproject_pins())
    assert "torch==2.13.0" in pyproject_pins()


def test_environment_yml_lists_the_same_pins_as_pyproject():
    conda_pins = {line for line in conda_pip_section() if "==" in line}
    assert conda_pins == pyproject_pins()


def test_environment_yml_installs_the_project_with_python_311():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    assert "--editable ." in conda_pip_section()
