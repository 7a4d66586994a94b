"""Where a class's grading files live, how nbgrader is configured for it, and how it is run.

A ``Course`` is the course root (solutions/ and notebooks/ live there), a *class directory*
(the submissions, autograded copies, feedback, logs and reports of one class) and a gradebook.
The real class is ``grader/class`` with the gradebook that grader/nbgrader_config.py names
(grader/gradebook.db, or ``$BACKPROP_NINJA_DB_URL``); the demo class of ``make grade`` and the
tests use another class directory, whose gradebook lives inside it, so that they never touch
the real class.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..course import (
    ASSIGNMENT,
    DB_URL_VARIABLE,
    NOTEBOOKS,
    QUICK_TIMING_VARIABLE,
    REPO_ROOT,
    STEPS_VARIABLE,
    gradebook_url,
)

CONFIG_FILE = REPO_ROOT / "grader" / "nbgrader_config.py"
# Notebook 4's graded test trains on its own; the ungraded training cell only needs to run,
# so when grading it trains for a few steps (STEPS_VARIABLE).
GRADING_STEPS = 100

# What the grading fork server (../forkserver/) serves: ``python -m`` module → its function,
# and what it imports once so that those start in milliseconds (kernels: torch, matplotlib and
# the package; grading jobs: nbgrader; verifier children: torch and the package).
FORK_ENTRY_POINTS = {
    "ipykernel_launcher": "backprop_ninja.grading.kernels:run_kernel",
    "backprop_ninja.verify": "backprop_ninja.verify.__main__:main",
    "backprop_ninja.grading.job": "backprop_ninja.grading.job:main",
}
FORK_PRELOAD = (
    "torch",
    "torch.nn.functional",
    # Imported by torch on the first ``autograd.grad(..., grad_outputs=...)`` (with sympy:
    # ~0.6 s), which every notebook's tests or timing cell make.
    "torch.fx.experimental.symbolic_shapes",
    "matplotlib",
    "matplotlib.pyplot",
    "matplotlib_inline.backend_inline",
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",  # imported by every kernel as it starts (with debugpy: ~0.1 s)
    "backprop_ninja.data",
    "backprop_ninja.model",
    "backprop_ninja.plots",
    "backprop_ninja.timing",
    "backprop_ninja.testing",
    "backprop_ninja.judge.exercises",
    "backprop_ninja.maintainer.notebooks",
    "backprop_ninja.integrity",
    "nbgrader.apps",
    "nbgrader.converters",
    "nbgrader.api",
    "nbgrader.preprocessors",
    "nbformat",
)
# The sandbox fork server (grading/sandbox.py): what runs student code, confined — kernels
# and verifier children, never a grading job — with what those import.
SANDBOX_ENTRY_POINTS = {
    module: FORK_ENTRY_POINTS[module] for module in ("ipykernel_launcher", "backprop_ninja.verify")
}
SANDBOX_PRELOAD = tuple(module for module in FORK_PRELOAD if not module.startswith(("nbgrader", "nbformat")))


class GradingError(RuntimeError):
    """A step of the pipeline failed for the whole class (not for one student)."""


class GraderProblem(GradingError):
    """The grader itself cannot grade (a sandbox, kernel or verifier that does not work, the
    model answers short of full marks): never a student's fault. The command line prints
    ``grader problem: …`` and exits 3; nothing is recorded for any student."""


def read_config(config_file: Path = CONFIG_FILE):
    """The traitlets Config that grader/nbgrader_config.py builds (nbgrader's own loader)."""
    from traitlets.config.loader import PyFileConfigLoader

    config_file = Path(config_file)
    return PyFileConfigLoader(config_file.name, path=str(config_file.parent)).load_config()


def sqlite_url(path: Path) -> str:
    """An SQLite URL that parallel workers can share (they wait up to 30 s for the lock)."""
    return f"sqlite:///{Path(path).resolve()}?timeout=30"


@dataclass(frozen=True)
class Course:
    """One class of the course. Paths are absolute; use ``Course.load`` to make one."""

    root: Path
    class_dir: Path
    db_url: str
    config_file: Path = CONFIG_FILE
    cell_timeout: int | None = None  # seconds per cell; None: the config's Execute.timeout
    extra_env: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(
        cls,
        *,
        root: Path | None = None,
        class_dir: Path | str | None = None,
        db_url: str | None = None,
        config_file: Path = CONFIG_FILE,
        cell_timeout: int | None = None,
    ) -> Course:
        """The class described by the config file, optionally moved.

        ``class_dir`` (relative to ``root`` or absolute) replaces grader/class. A class that is
        not the configured one keeps its gradebook inside its class directory unless
        ``db_url`` or ``$BACKPROP_NINJA_DB_URL`` says otherwise.
        """
        config = read_config(config_file)
        default_root = Path(config.CourseDirectory.root)
        default_class = default_root / Path(config.CourseDirectory.submitted_directory).parent
        root = Path(root).resolve() if root is not None else default_root
        class_dir = (
            (root / class_dir).resolve()
            if class_dir is not None
            else (root / Path(config.CourseDirectory.submitted_directory).parent)
        )
        if db_url is None:
            configured = root == default_root and class_dir == default_class
            # Another class: $BACKPROP_NINJA_DB_URL when set, else a gradebook of its own.
            db_url = (
                config.CourseDirectory.db_url
                if configured
                else os.environ.get(DB_URL_VARIABLE) or sqlite_url(class_dir / "gradebook.db")
            )
        return cls(root, class_dir, gradebook_url(db_url), Path(config_file), cell_timeout)

    # ------------------------------------------------------------------ the class's files
    @property
    def submitted(self) -> Path:
        return self.class_dir / "submitted"

    @property
    def autograded(self) -> Path:
        return self.class_dir / "autograded"

    @property
    def feedback(self) -> Path:
        return self.class_dir / "feedback"

    @property
    def downloaded(self) -> Path:
        return self.class_dir / "downloaded"

    @property
    def logs(self) -> Path:
        return self.class_dir / "logs"

    @property
    def status(self) -> Path:
        return self.class_dir / "status"

    @property
    def grades_csv(self) -> Path:
        return self.class_dir / "grades.csv"

    @property
    def notebook_grades_csv(self) -> Path:
        return self.class_dir / "grades_by_notebook.csv"

    @property
    def canvas_csv(self) -> Path:
        """The grades in the layout of Canvas's gradebook import."""
        return self.class_dir / "grades_canvas.csv"

    @property
    def lms_ids(self) -> Path:
        """The LMS user ids seen at collection, per student (written by LmsCollectorPlugin)."""
        return self.class_dir / "lms_ids.json"

    @property
    def class_report(self) -> Path:
        """The class report (instructors only: it names students)."""
        return self.class_dir / "report.html"

    @property
    def work(self) -> Path:
        """Scratch space of a grading run (the registration release, the verifier's cache)."""
        return self.root / "grader" / "work"

    def source_notebook(self, notebook: str) -> Path:
        return self.root / "solutions" / ASSIGNMENT / f"{notebook}.ipynb"

    def release_notebook(self, notebook: str) -> Path:
        return self.root / "notebooks" / ASSIGNMENT / f"{notebook}.ipynb"

    def submitted_notebook(self, student: str, notebook: str) -> Path:
        return self.submitted / student / ASSIGNMENT / f"{notebook}.ipynb"

    def autograded_notebook(self, student: str, notebook: str) -> Path:
        return self.autograded / student / ASSIGNMENT / f"{notebook}.ipynb"

    def feedback_page(self, student: str, notebook: str) -> Path:
        return self.feedback / student / ASSIGNMENT / f"{notebook}.html"

    def students(self) -> list[str]:
        """Every student with a folder in submitted/ (even an empty one: "nothing submitted"), sorted."""
        if not self.submitted.is_dir():
            return []
        return sorted(p.name for p in self.submitted.iterdir() if p.is_dir() and not p.name.startswith("."))

    def submitted_notebooks(self, student: str) -> list[str]:
        return [nb for nb in NOTEBOOKS if self.submitted_notebook(student, nb).exists()]

    # ------------------------------------------------------------------------- nbgrader
    def config(self):
        """nbgrader's configuration for this class: the config file, moved to this class."""
        config = read_config(self.config_file)
        config.CourseDirectory.root = str(self.root)
        config.CourseDirectory.submitted_directory = self._nbgrader_path(self.submitted)
        config.CourseDirectory.autograded_directory = self._nbgrader_path(self.autograded)
        config.CourseDirectory.feedback_directory = self._nbgrader_path(self.feedback)
        config.CourseDirectory.db_url = self.db_url
        config.ZipCollectApp.downloaded_directory = self._nbgrader_path(self.downloaded)
        if self.cell_timeout is not None:
            config.Execute.timeout = self.cell_timeout
        # Kernels from the fork server, when the pipeline runs one (../forkserver/).
        config.Execute.kernel_manager_class = "backprop_ninja.grading.kernels.ForkedKernelManager"
        return config

    def _nbgrader_path(self, path: Path) -> str:
        """Relative to the root when inside it: nbgrader turns these paths into regular
        expressions and escapes only the root."""
        try:
            return str(path.relative_to(self.root))
        except ValueError:
            return str(path)

    def cli_overrides(self) -> list[str]:
        """The same moves as command-line options of the nbgrader CLI."""
        options = [
            f"--NbGrader.config_file={self.config_file}",
            f"--CourseDirectory.root={self.root}",
            f"--CourseDirectory.submitted_directory={self._nbgrader_path(self.submitted)}",
            f"--CourseDirectory.autograded_directory={self._nbgrader_path(self.autograded)}",
            f"--CourseDirectory.feedback_directory={self._nbgrader_path(self.feedback)}",
            f"--CourseDirectory.db_url={self.db_url}",
            f"--ZipCollectApp.downloaded_directory={self._nbgrader_path(self.downloaded)}",
        ]
        if self.cell_timeout is not None:
            options.append(f"--Execute.timeout={self.cell_timeout}")
        return options

    def worker_options(self) -> list[str]:
        """How to describe this course to ``python -m backprop_ninja.grading``."""
        options = [
            "--root",
            str(self.root),
            "--class-dir",
            str(self.class_dir),
            "--db-url",
            self.db_url,
            "--config-file",
            str(self.config_file),
        ]
        if self.cell_timeout is not None:
            options += ["--cell-timeout", str(self.cell_timeout)]
        return options

    def cell_timeout_seconds(self) -> int:
        return self.cell_timeout if self.cell_timeout is not None else int(self.config().Execute.timeout)

    def api(self):
        """nbgrader's Python API for this class (it reads no config file by itself)."""
        from nbgrader.apps import NbGraderAPI

        prepare_environment()
        return NbGraderAPI(config=self.config())

    def gradebook(self):
        from nbgrader.api import Gradebook

        prepare_environment()
        return Gradebook(self.db_url)

    def run_nbgrader(self, *args: str) -> subprocess.CompletedProcess:
        """Run the nbgrader CLI for this class; its output goes to ours."""
        command = [sys.executable, "-m", "nbgrader", *args, *self.cli_overrides()]
        return subprocess.run(command, cwd=self.root, env=grading_environment())


def grading_environment(base: dict | None = None, *, threads: int | None = None) -> dict:
    """The environment nbgrader and the students' kernels run in.

    The venv's bin/ comes first on PATH (nbgrader runs ``alembic`` to create a gradebook);
    notebook 4 trains for ``GRADING_STEPS`` steps; ``threads`` caps torch's threads per kernel
    so that parallel workers do not fight over the cores.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    if env.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")]).rstrip(os.pathsep)
    env[STEPS_VARIABLE] = str(GRADING_STEPS)
    env[QUICK_TIMING_VARIABLE] = "1"  # the notebooks' timing cells: run them, briefly
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    if threads is not None:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    return env


def prepare_environment(*, threads: int | None = None) -> None:
    """Make this process's environment the grading environment (kernels inherit it)."""
    os.environ.update(grading_environment(threads=threads))


def quiet_known_warnings() -> None:
    """nbgrader 0.9.6 with SQLAlchemy 2 warns on every query; it says nothing about the student."""
    import warnings

    from sqlalchemy.exc import SAWarning

    warnings.filterwarnings("ignore", category=SAWarning)
