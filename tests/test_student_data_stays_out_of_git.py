"""Student data never reaches git: git itself, asked about the paths grading writes."""

import subprocess

import pytest

from backprop_ninja.course import REPO_ROOT

STUDENT_DATA = [
    "grader/class/submitted/alice/backprop_ninja/1_atomic_backprop.ipynb",
    "grader/section-b/submitted/bob/backprop_ninja/2_fused_cross_entropy.ipynb",
    "grader/section-b/gradebook.db",
    "grader/fall-2026/feedback/carol/backprop_ninja/1_atomic_backprop.html",
    "grader/gradebook.db",
    "grader/hub/state/jupyterhub.sqlite",
    "grader/hub/state/jupyterhub_cookie_secret",
    "gradebook.db",
]
COURSE_FILES = [
    "grader/README.md",
    "grader/nbgrader_config.py",
    "grader/make_demo_class.py",
    "grader/hub/jupyterhub_config.py",
    "grader/hub/package-lock.json",
]


def ignored(path: str) -> bool:
    check = subprocess.run(["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT)
    return check.returncode == 0


@pytest.mark.parametrize("path", STUDENT_DATA)
def test_every_class_folder_and_gradebook_is_ignored(path):
    assert ignored(path)


@pytest.mark.parametrize("path", COURSE_FILES)
def test_the_graders_own_files_are_not(path):
    assert not ignored(path)
