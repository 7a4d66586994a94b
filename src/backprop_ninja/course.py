"""Course facts that every part of the project shares, torch-free: names, paths, variables.

Import these instead of writing the strings again; a test keeps the copies of them that
cannot import this module (grader/nbgrader_config.py, the Makefile) in step.
"""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------- the assignment
ASSIGNMENT = "backprop_ninja"
NOTEBOOKS = ("1_atomic_backprop", "2_fused_cross_entropy", "3_fused_batchnorm", "4_full_training")
SOLUTIONS_DIR = REPO_ROOT / "solutions" / ASSIGNMENT
RELEASE_DIR = REPO_ROOT / "notebooks" / ASSIGNMENT

# Graded tests that are not gradient checks but run an answer function (notebook 4 trains
# with manual_backward): notebook → {test grade_id: the function it runs}. A finding or a
# verifier failure on that function voids the test too.
DEPENDENT_TESTS: dict[str, dict[str, str]] = {"4_full_training": {"test_training": "manual_backward"}}

# A test's verdict in a notebook's outputs (display_data, beside the "text/plain" line the
# student reads): {"test", "passed", "problem", "message"}. The class report reads it.
VERDICT_MIME = "application/vnd.backprop-ninja.verdict+json"

# The largest notebook file a submission may hold (one with its outputs is a few MiB): a
# larger one is refused, with a note, when collected and when graded, and never read whole.
MAX_NOTEBOOK_BYTES = 32 * 2**20
# The most cells a submitted notebook may have (the course's have 12-106): every cell costs
# the grader a round trip to the kernel and the feedback page a rendering, so a notebook of
# tens of thousands of tiny cells is refused, with a note, before anything of it runs.
MAX_NOTEBOOK_CELLS = 1000
# The largest message the grader accepts from a kernel: a notebook keeps 2 MiB of outputs at
# most, and a figure is ~100 KB (classroom/kernels.py).
MAX_MESSAGE_BYTES = 16 * 2**20

# ---------------------------------------------------------------- environment variables
# The gradebook's database URL (default: SQLite at grader/gradebook.db). May hold a password.
DB_URL_VARIABLE = "BACKPROP_NINJA_DB_URL"
# PostgreSQL through the pinned driver, psycopg 3: SQLAlchemy reads a plain postgresql:// URL
# as psycopg2, which the course does not install.
POSTGRES_SCHEMES = ("postgresql", "postgres")
POSTGRES_DRIVER_SCHEME = "postgresql+psycopg"
# nbgrader's exchange folder for `make collect` without ZIP.
EXCHANGE_VARIABLE = "BACKPROP_NINJA_EXCHANGE"
# The course's JupyterHub (grader/hub/): its port on 127.0.0.1, its state folder, and the two
# internal ports (the hub's API, the proxy's API; free ones unless set).
HUB_PORT_VARIABLE = "HUB_PORT"
HUB_STATE_VARIABLE = "BACKPROP_NINJA_HUB_STATE"
HUB_API_PORT_VARIABLE = "BACKPROP_NINJA_HUB_API_PORT"
PROXY_API_PORT_VARIABLE = "BACKPROP_NINJA_PROXY_API_PORT"
# Notebook 4's training steps (200,000 by default; a few when graded or in CI).
STEPS_VARIABLE = "BACKPROP_NINJA_STEPS"
# "1": the notebooks' timing cells take one short round (set when grading).
QUICK_TIMING_VARIABLE = "BACKPROP_NINJA_QUICK_TIMING"
# "1": the grading worker runs kernels and verifier children in a bubblewrap sandbox.
SANDBOX_VARIABLE = "BACKPROP_NINJA_SANDBOX"
# Set by nbgrader itself in the kernel: "validate" (the student's Validate button) or "autograde".
NBGRADER_EXECUTION_VARIABLE = "NBGRADER_EXECUTION"
# The grading fork server's socket (grading's own processes only).
FORKSERVER_VARIABLE = "BACKPROP_NINJA_FORKSERVER"
# The sandbox fork server's socket: its children confine themselves before they run.
SANDBOX_FORKSERVER_VARIABLE = "BACKPROP_NINJA_SANDBOX_FORKSERVER"
# "no": sandboxes get no cgroup, as on a machine without one (rlimits cap them instead).
SANDBOX_CGROUPS_VARIABLE = "BACKPROP_NINJA_SANDBOX_CGROUPS"

# What of the grader's environment a student's sandboxed code may see: the course's switches
# and the thread caps. Nothing else — not the database URL, tokens, or the grader's sockets.
SANDBOX_ENVIRONMENT = (
    STEPS_VARIABLE,
    QUICK_TIMING_VARIABLE,
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)


def gradebook_url(url: str) -> str:
    """The URL as SQLAlchemy must read it: ``postgresql://…`` and ``postgres://…`` (libpq's
    forms, what people write) get the course's driver, ``postgresql+psycopg://…``; any other
    URL (SQLite, or a driver named explicitly) is returned unchanged."""
    scheme, separator, rest = url.partition("://")
    if separator and scheme.lower() in POSTGRES_SCHEMES:
        return f"{POSTGRES_DRIVER_SCHEME}://{rest}"
    return url


# ---------------------------------------------------------------- students anywhere
# Where the course is published: its public repository. A fork sets this one line, then
# `make release` regenerates from it the README's "Open in Colab" badges and nbgitpuller links
# and the notebooks' Colab install cell (maintainer/distribution.py; the cell cannot import
# this module, a test keeps its copy in step).
COURSE_REPOSITORY_URL = "https://github.com/backprop-ninja/backprop-ninja"
GITHUB_REPOSITORY = COURSE_REPOSITORY_URL.removeprefix("https://github.com/")
# The JupyterHub the README's nbgitpuller links open (a hub without nbgrader's exchange:
# nbgitpuller clones the course's repository into each student's home).
COURSE_HUB_URL = "https://hub.example.edu"
# The ONE place the Colab install cell pip-installs the package from.
PACKAGE_SOURCE = f"backprop-ninja @ git+{COURSE_REPOSITORY_URL}.git"
# Overrides PACKAGE_SOURCE in the Colab install cell (a wheel's path or URL, a mirror).
INSTALL_SOURCE_VARIABLE = "BACKPROP_NINJA_INSTALL_FROM"
# The console command the package installs, and its folder in the user's cache and config.
COMMAND = "backprop-ninja"
# The install cell's grade_id: the first code cell of every student notebook.
INSTALL_CELL_ID = "colab_install"
# names.txt, makemore's 32,033 names (MIT): where it comes from and what it must hash to.
NAMES_URL = "https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"


def colab_url(notebook: str) -> str:
    """Where Colab opens a student notebook straight from the course's repository."""
    return (
        f"https://colab.research.google.com/github/{GITHUB_REPOSITORY}/blob/main/"
        f"notebooks/{ASSIGNMENT}/{notebook}.ipynb"
    )


def nbgitpuller_url(notebook: str, hub: str = COURSE_HUB_URL, repository: str = COURSE_REPOSITORY_URL) -> str:
    """A link that makes ``hub`` clone (or update) the course's repository into the student's
    home with nbgitpuller and open ``notebook`` in JupyterLab."""
    from urllib.parse import urlencode

    folder = repository.rstrip("/").rsplit("/", 1)[-1]
    query = urlencode(
        {
            "repo": repository,
            "branch": "main",
            "urlpath": f"lab/tree/{folder}/notebooks/{ASSIGNMENT}/{notebook}.ipynb",
        }
    )
    return f"{hub.rstrip('/')}/hub/user-redirect/git-pull?{query}"
