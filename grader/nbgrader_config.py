"""nbgrader configuration of the Backprop Ninja course.

Reached through the Makefile (`--NbGrader.config_file=grader/nbgrader_config.py`), because
nbgrader ignores `--config`.
"""

from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when nbgrader loads this file)

REPO = Path(__file__).resolve().parent.parent

c.CourseDirectory.root = str(REPO)
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
c.CourseDirectory.course_id = "backprop_ninja"

# ---------------------------------------------------------------- grading (issue 4: the instructor workflow)
# Everything the grader produces lives under grader/ (git-ignored: grader/class/, grader/work/,
# grader/gradebook.db). `python -m backprop_ninja.grading` (behind `make autograde`, `make grade` …)
# loads this file and may point these paths at another root (the tests grade a temporary copy).
CLASS = "grader/class"
c.CourseDirectory.submitted_directory = f"{CLASS}/submitted"
c.CourseDirectory.autograded_directory = f"{CLASS}/autograded"
c.CourseDirectory.feedback_directory = f"{CLASS}/feedback"

# The gradebook: SQLite beside this file unless BACKPROP_NINJA_DB_URL names another database,
# e.g. postgresql://grader@db.example.org/backprop_ninja (PostgreSQL: through the pinned driver,
# psycopg 3; gradebook_url adds it to the URL). `timeout=30`: parallel autograde workers wait up
# to 30 s for SQLite's write lock (default 5 s).
import os  # noqa: E402

from backprop_ninja.course import DB_URL_VARIABLE, gradebook_url  # noqa: E402

c.CourseDirectory.db_url = gradebook_url(
    os.environ.get(DB_URL_VARIABLE, f"sqlite:///{REPO / 'grader' / 'gradebook.db'}?timeout=30")
)

# Each cell of a submission may run this long; a cell that takes longer is interrupted
# (KeyboardInterrupt) and the notebook carries on, so a `while True` costs one timeout.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True
# Once the last cell has run, the kernel has nothing left to give: stop it at once rather than
# wait ~0.5 s for its exit hooks (a student's atexit code has no business running anyway).
c.Execute.shutdown_kernel = "immediate"
# A test cell the student deleted is put back from the gradebook (nbgrader's default: 0 points).
c.OverwriteCells.add_missing_cells = True

# nbgrader caps an output's lines once a notebook has run, not its bytes as they arrive: a
# kernel's flood would first fill the grader's memory, then the notebook, the feedback and the
# disk. CappedExecute is nbgrader's Execute with byte caps on every output as it arrives.
from nbgrader.converters.autograde import Autograde  # noqa: E402
from nbgrader.preprocessors import Execute  # noqa: E402

_autograde_steps = list(Autograde.class_traits()["autograde_preprocessors"].default())
_autograde_steps[_autograde_steps.index(Execute)] = "backprop_ninja.grading.outputs.CappedExecute"
c.Autograde.autograde_preprocessors = _autograde_steps

# Feedback HTML is made from the autograded notebooks. No hidden test runs in a student's kernel
# (the trusted verifier checks the answers on secret inputs in a process of its own), so there is
# no secret for a kernel to print; TestIndex replaces each test cell's outputs with the grader's
# verdict (points from the gradebook, the reason from the grader's status file), names each test
# and sums up the page for the course's feedback template (set by `make feedback` only:
# backprop_ninja.grading.feedback; the Formgrader keeps nbgrader's). nbgrader's ClearHiddenTests
# stays: it removes nothing today, and would keep a hidden region out of sight if one came back.
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "backprop_ninja.grading.feedback.TestIndex",
    "nbgrader.preprocessors.ClearHiddenTests",
    "backprop_ninja.grading.feedback.LimitSources",  # megabytes of code take hours to highlight
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]

# Every page nbconvert makes of a submission (the Formgrader's, on a hub too; nbgrader's and the
# course's feedback) shows what the student wrote without running it: markdown and HTML outputs
# keep an allowlist of tags (scripts, event handlers, javascript: links shown as text), math is
# MathML (no CDN), JavaScript outputs and widget state are left out, and SafeOutputs puts every
# output and metadata field the templates interpolate into a safe shape first. A script in a
# student's markdown would otherwise run in the Formgrader with the instructor's session
# (backprop_ninja.grading.safe_html; tests/test_safe_pages.py attacks it in a real browser).
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.filters = {
    "markdown2html": "backprop_ninja.grading.safe_html.markdown_html",
    "clean_html": "backprop_ninja.grading.safe_html.clean",
}
c.HTMLExporter.preprocessors = ["backprop_ninja.grading.safe_html.SafeOutputs"]

# `make collect ZIP=…`: an LMS download (Canvas style) of files named
#   <login>_[LATE_]<user id>_<submission id>_<notebook>[-<n>].ipynb
# e.g. smithalice_1001_555001_1_atomic_backprop.ipynb → submitted/smithalice/backprop_ninja/.
# Moodle and others: rename to this pattern, or change the regexp (it sees the absolute path).
c.ZipCollectApp.downloaded_directory = f"{CLASS}/downloaded"
c.ZipCollectApp.strict = True  # skip files that are not one of the four notebooks
# Every zip member is checked before extraction (no ../ paths, links, zip bombs); the LMS user
# id is kept, so two users with one login stay two students (backprop_ninja.grading.collect).
c.ZipCollectApp.extractor_plugin = "backprop_ninja.grading.collect.SafeExtractorPlugin"
c.ZipCollectApp.collector_plugin = "backprop_ninja.grading.collect.LmsCollectorPlugin"
c.FileNameCollectorPlugin.named_regexp = (
    r".*/(?P<student_id>[A-Za-z0-9][A-Za-z0-9.\-]*?)_(?:LATE_)?(?P<user_id>\d+)_\d+_"
    r"(?P<file_id>1_atomic_backprop|2_fused_cross_entropy|3_fused_batchnorm|4_full_training)"
    r"(?:-\d+)?\.ipynb$"
)
# `make collect` without ZIP: nbgrader's own exchange (JupyterHub), at its default place
# /srv/nbgrader/exchange unless BACKPROP_NINJA_EXCHANGE says otherwise.
if os.environ.get("BACKPROP_NINJA_EXCHANGE"):
    c.Exchange.root = os.environ["BACKPROP_NINJA_EXCHANGE"]
