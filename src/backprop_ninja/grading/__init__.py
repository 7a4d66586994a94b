"""The instructor's grading pipeline around nbgrader: collect, autograde, feedback, export.

    classdir.py  where a class's files are; nbgrader's configuration for it; the grading environment
    pipeline.py  the coordinator: autograde (jobs through an executor), feedback, export, collect
    job.py       grading one student: a GradingJob in, a GradingResult out (results.py), in a
                 staging folder of its own; ``python -m backprop_ninja.grading.job`` is its worker
    executors.py where jobs run: a local pool of worker processes, or a Dask cluster
    gradebook.py the one module that writes the gradebook, the autograded copies, status and logs
    kernels.py   the kernel manager nbgrader grades with: sandboxed kernels (../sandbox/),
                 or, with --no-sandbox, kernels forked by ../forkserver/
    preload.py   the run's two fork servers: grading jobs (and unsandboxed children), and
                 the sandbox server whose children confine themselves
    collect.py   safe zip extraction and the LMS collector plugin for nbgrader's zip_collect
    exchange_owner.py  whose an exchange submission is: its owner on disk (a planted folder is refused)
    outputs.py   CappedExecute: outputs capped in bytes as they arrive from a kernel
    trust.py     the integrity scan and the trusted verifier: which points cannot be trusted
    reasons.py   one-line reasons for failed notebooks and notes for graded ones, from nbgrader's log
    status.py    what happened to each notebook (graded / failed / stopped / missing)
    table.py     the student × notebook table and the per-notebook CSV
    class_report.py  the class report (report.html): what the class got wrong, test by test
    report_figures.py  its charts, with legends and whole-number count axes
    feedback.py  feedback pages: tests named with why they lost points, totals, math as MathML
    formgrader.py    nbgrader's Formgrader on a class (make formgrader)
    lms.py       LMS user ids kept at collection; grades_canvas.csv
    __main__.py  ``python -m backprop_ninja.grading autograde|feedback|export|grade|collect|report|class-report|formgrader``

Guarantees: the submitted files are only read (tests compare their sha256); a student's bad
notebook costs only that notebook, and it is reported with its reason, never as a silent 0;
a regrade starts from a clean slate (the student's previous gradebook rows are removed first),
so re-running gives the same grades and nothing stale remains.
"""

from .classdir import Course, GradingError
from .pipeline import autograde_class, export_class, feedback_class, register_assignment
from .status import NotebookResult, StudentStatus
from .table import class_rows, format_table

__all__ = [
    "Course",
    "GradingError",
    "NotebookResult",
    "StudentStatus",
    "autograde_class",
    "class_rows",
    "export_class",
    "feedback_class",
    "format_table",
    "register_assignment",
]
