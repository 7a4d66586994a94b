"""Where the course is published (course.py) reaches every place it is written: the README's
Colab badges and nbgitpuller links, the notebooks' install cell; a fork changes one line."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlparse

import nbformat

from backprop_ninja import course
from backprop_ninja.course import INSTALL_CELL_ID, NOTEBOOKS, REPO_ROOT, SOLUTIONS_DIR, nbgitpuller_url
from backprop_ninja.maintainer import distribution


def test_the_readme_and_the_solutions_are_in_step_with_course_py(tmp_path):
    readme, solutions = tmp_path / "README.md", tmp_path / "solutions"
    shutil.copy(REPO_ROOT / "README.md", readme)
    shutil.copytree(SOLUTIONS_DIR, solutions)
    assert distribution.update(readme, solutions) == []  # make release would change nothing


def test_an_nbgitpuller_link_clones_the_repository_and_opens_the_notebook():
    link = urlparse(
        nbgitpuller_url("2_fused_cross_entropy", "https://hub.uni.edu/", "https://git.uni.edu/me/bn")
    )
    assert (link.scheme, link.netloc, link.path) == ("https", "hub.uni.edu", "/hub/user-redirect/git-pull")
    query = parse_qs(link.query)
    assert query["repo"] == ["https://git.uni.edu/me/bn"]
    assert query["branch"] == ["main"]
    assert query["urlpath"] == ["lab/tree/bn/notebooks/backprop_ninja/2_fused_cross_entropy.ipynb"]


def test_a_fork_sets_one_url_and_release_carries_it_everywhere(tmp_path, monkeypatch):
    fork = "https://github.com/someone/backprop-fork"
    monkeypatch.setattr(distribution, "PACKAGE_SOURCE", f"backprop-ninja @ git+{fork}.git")
    monkeypatch.setattr(
        distribution,
        "colab_url",
        lambda nb: f"https://colab.research.google.com/github/someone/backprop-fork/{nb}",
    )
    monkeypatch.setattr(
        distribution, "nbgitpuller_url", lambda nb: course.nbgitpuller_url(nb, repository=fork)
    )
    readme, solutions = tmp_path / "README.md", tmp_path / "solutions"
    shutil.copy(REPO_ROOT / "README.md", readme)
    shutil.copytree(SOLUTIONS_DIR, solutions)
    changed = distribution.update(readme, solutions)
    assert readme in changed
    assert len(changed) == 1 + len(NOTEBOOKS)
    text = readme.read_text()
    assert "backprop-fork" in text
    assert "github.com/backprop-ninja/backprop-ninja/blob" not in text
    for name in NOTEBOOKS:
        nb = nbformat.read(solutions / f"{name}.ipynb", as_version=4)
        (cell,) = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == INSTALL_CELL_ID]
        assert f"git+{fork}.git" in cell.source
