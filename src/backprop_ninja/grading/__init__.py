"""The instructor's grading pipeline around nbgrader: collect, autograde, feedback, export.

    classdir.py  where a class's files are; nbgrader's configuration for it; the grading environment
    pipeline.py  the coordinator of autograde: proves the grader, sends jobs to an executor,
                 records results (AutogradeOptions: how)
    preflight.py the model answers graded first, as a student: full marks or a grader problem
    intake.py    reading a submission: which file is which notebook (decorated names), its bytes
    export.py    grades.csv, grades_by_notebook.csv, grades_canvas.csv (not graded: left empty)
    job.py       grading one student: a GradingJob in, a GradingResult out (results.py), in a
                 staging folder of its own; ``python -m backprop_ninja.grading.job`` is its worker
    executors.py where jobs run: a local pool of worker processes, or a Dask cluster
    gradebook.py the one module that writes the gradebook, the autograded copies, status and logs
    kernels.py   the kernel manager nbgrader grades with: sandboxed kernels (../sandbox/),
                 or, with --no-sandbox, kernels forked by ../forkserver/
    preload.py   the run's two fork servers: grading jobs (and unsandboxed children), and
                 the sandbox server whose children confine themselves
    collect.py   collect_zip / collect_exchange: safe zip extraction, the LMS collector plugin,
                 nbgrader's log to a file, a summary
    exchange_owner.py  whose an exchange submission is: its owner on disk (a planted folder is refused)
    outputs.py   CappedExecute: outputs capped in bytes as they arrive from a kernel
    trust.py     the integrity scan and the trusted verifier: which points cannot be trusted
    reasons.py   one-line reasons for failed notebooks and notes for graded ones, from nbgrader's log
    status.py    what happened to each notebook (graded / failed / stopped / missing)
    table.py     the student × notebook table and the per-notebook CSV
    class_report.py  the class report (report.html): what the class got wrong, test by test
    report_figures.py  its charts, with legends and whole-number count axes
    feedback.py  feedback_class: pages naming each test with why it lost points, totals, math as MathML
    safe_html.py a submission as a page without running any of it (the Formgrader, feedback)
    formgrader.py    nbgrader's Formgrader on a class (make formgrader)
    lms.py       LMS user ids kept at collection; grades_canvas.csv
    lateness.py  a submission's time (nbgrader's timestamp.txt) against the due date; penalties
                 only where nbgrader's late-submission plugin is configured
    __main__.py  ``python -m backprop_ninja.grading autograde|feedback|export|grade|collect|report|class-report|formgrader``

Guarantees: the submitted files are only read (tests compare their sha256); a student's bad
notebook costs only that notebook, and it is reported with its reason, never as a silent 0;
the grader's own failure is never a student's (``GraderProblem``, exit 3, before anyone is
graded); a regrade starts from a clean slate (the student's previous gradebook rows are
removed first) except for what a TA entered by hand, which is kept, and it says what changed.
"""

from .classdir import Course, GraderProblem, GradingError
from .export import export_class
from .feedback import feedback_class
from .pipeline import AutogradeOptions, autograde_class, register_assignment
from .status import NotebookResult, StudentStatus
from .table import class_rows, format_table

__all__ = [
    "AutogradeOptions",
    "Course",
    "GraderProblem",
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
