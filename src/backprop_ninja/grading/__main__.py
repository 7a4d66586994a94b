"""``python -m backprop_ninja.grading COMMAND`` — what the Makefile's grading targets run.

    collect [--zip LMS.zip]   submissions → <class>/submitted/ (zip download, or nbgrader's exchange)
    autograde                 grade every submission in parallel; print the table
    feedback                  feedback HTML per student and notebook
    export                    grades.csv, grades_by_notebook.csv, grades_canvas.csv (not graded:
                              an empty cell, named on the terminal; --ungraded-as-zero: 0)
    register                  record the assignment in the gradebook (done by autograde too)
    report                    print the table again (from the gradebook)
    class-report              the class report (report.html): what the class got wrong
    formgrader                nbgrader's Formgrader on the class (a Jupyter server; prints its URL)
    grade                     autograde + feedback + export + table: the whole cycle

Every command takes --class-dir (default grader/class), --db-url, --workers and so on; see
``--help`` of each. (A grading job's worker has its own entry point: ``grading.job``.)

Exit status: 0 done; 2 the command cannot run as asked (no submissions, an unreachable
scheduler …); 3 ``grader problem: …`` — the grader itself does not work here (the model answers
do not get full marks, no sandbox …), nothing was recorded for any student; 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..course import ASSIGNMENT
from ..sandbox.enforced import limits_in_force
from .classdir import CONFIG_FILE, Course, GraderProblem, GradingError
from .pipeline import AutogradeOptions, Interrupted, autograde_class, register_assignment
from .results import NOTEBOOK_TIMEOUT
from .status import StudentStatus
from .table import class_rows, format_table, summary_line
from .trust import VERIFY_TIMEOUT


def _course_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--class-dir", default=None, help="the class's folder, relative to the root (default: grader/class)"
    )
    parser.add_argument(
        "--db-url",
        default=None,
        help="gradebook URL (default: the config's; for another --class-dir, <class-dir>/gradebook.db)",
    )
    parser.add_argument("--root", type=Path, default=None, help="course root (default: the repository)")
    parser.add_argument("--config-file", type=Path, default=CONFIG_FILE)
    parser.add_argument(
        "--cell-timeout",
        type=int,
        default=None,
        help="seconds a cell may run (default: the config's Execute.timeout)",
    )


def _course(args) -> Course:
    return Course.load(
        root=args.root,
        class_dir=args.class_dir,
        db_url=args.db_url,
        config_file=args.config_file,
        cell_timeout=args.cell_timeout,
    )


def _shard(text: str) -> tuple[int, int]:
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N, e.g. 3/20, got {text!r}") from None
    return k, n


def _students(text: str | None) -> list[str] | None:
    return [s for s in text.split(",") if s] if text else None


def _where(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m backprop_ninja.grading",
        description="The Backprop Ninja grading pipeline (nbgrader).",
    )
    commands = main.add_subparsers(dest="command", required=True)

    def command(name, help_text):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        _course_options(sub)
        return sub

    collect = command("collect", "collect submissions into <class>/submitted")
    collect.add_argument(
        "--zip",
        type=Path,
        default=None,
        help="an LMS download (Canvas-style file names); without it: nbgrader's exchange",
    )
    for name, text in (
        ("autograde", "autograde every submission and print the grade table"),
        ("grade", "the whole cycle: autograde, feedback, export, table"),
    ):
        sub = command(name, text)
        sub.add_argument("--workers", type=int, default=2, help="students graded at once (default 2)")
        sub.add_argument("--students", default=None, help="comma-separated ids (default: everyone)")
        sub.add_argument(
            "--notebook-timeout",
            type=float,
            default=NOTEBOOK_TIMEOUT,
            help=f"seconds one notebook may take in all (default {NOTEBOOK_TIMEOUT})",
        )
        sub.add_argument(
            "--verify-timeout",
            type=float,
            default=VERIFY_TIMEOUT,
            help=f"seconds for the verifier per notebook (default {VERIFY_TIMEOUT})",
        )
        sub.add_argument(
            "--verify-seed",
            type=int,
            default=None,
            help="the verifier's inputs from this seed (default: secret, fresh each run)",
        )
        sub.add_argument(
            "--shard",
            type=_shard,
            default=None,
            metavar="K/N",
            help="grade only shard K of N (1-based; for job arrays)",
        )
        sub.add_argument(
            "--no-register",
            action="store_true",
            help="the assignment is already registered (`register`, once per job array)",
        )
        sub.add_argument("--no-progress", action="store_true", help="no progress bar")
        sub.add_argument(
            "--no-forkserver",
            action="store_true",
            help="start every worker, kernel and verifier as a new Python process "
            "(slower by seconds per notebook; for debugging the fork server)",
        )
        sub.add_argument(
            "--no-sandbox",
            action="store_true",
            help="run the students' code WITHOUT the bubblewrap sandbox (only for a class you trust; "
            "the table, CSV and feedback then say so)",
        )
        sub.add_argument(
            "--dask-scheduler",
            default=None,
            metavar="tcp://HOST:PORT",
            help="send each student's grading job to this Dask scheduler's workers "
            "(default: a local pool of --workers processes)",
        )
    feedback = command("feedback", "feedback HTML for every student")
    feedback.add_argument("--workers", type=int, default=2)
    feedback.add_argument("--students", default=None)
    export = command("export", "write grades.csv, grades_by_notebook.csv and grades_canvas.csv")
    export.add_argument(
        "--ungraded-as-zero",
        action="store_true",
        help="count notebooks that are not graded (or still need a manual grade) as 0 in "
        "grades_canvas.csv (default: leave those students' points empty)",
    )
    export.add_argument(
        "--canvas-column",
        default=ASSIGNMENT,
        help="grades_canvas.csv's points column: your Canvas assignment's name, e.g. 'Backprop Ninja (1234)'",
    )
    command("register", "record the assignment (cells, points) in the gradebook from solutions/")
    command("report", "print the grade table")
    command("class-report", "write the class report (report.html) and print its summary")
    formgrader = command("formgrader", "serve nbgrader's Formgrader on the class")
    formgrader.add_argument("--port", type=int, default=8890)
    formgrader.add_argument("--ip", default="127.0.0.1")
    formgrader.add_argument("--token", default=None, help="default: a fresh random token")

    return main


def run(args) -> int:
    course = _course(args)
    if args.command == "register":
        register_assignment(course)
        print(f"registered {ASSIGNMENT} in {course.db_url}")
        return 0
    if args.command == "collect":
        from .collect import collect_exchange, collect_zip

        lines = collect_zip(course, args.zip) if args.zip is not None else collect_exchange(course)
        print("\n".join(lines))
        print(f"in {_where(course.submitted)}; nbgrader's log: {_where(course.logs / 'collect.log')}")
        return 0
    if args.command in ("autograde", "grade"):
        return _autograde(course, args)
    if args.command == "feedback":
        from .feedback import feedback_class

        pages = feedback_class(course, workers=args.workers, students=_students(args.students))
        print(f"{len(pages)} feedback pages in {_where(course.feedback)}/<student>/backprop_ninja/")
        return 0
    if args.command == "export":
        return _export(course, args.canvas_column, args.ungraded_as_zero)
    if args.command == "report":
        _print_table(course, None)
        return 0
    if args.command == "class-report":
        _print_class_report(course)
        return 0
    if args.command == "formgrader":
        from .formgrader import serve

        return serve(course, ip=args.ip, port=args.port, token=args.token)
    raise AssertionError(args.command)


def _autograde(course: Course, args) -> int:
    """autograde (and, for ``grade``, feedback, export and the class report); the table."""
    from .feedback import feedback_class

    start = time.monotonic()
    options = AutogradeOptions(
        workers=args.workers,
        students=_students(args.students),
        shard=args.shard,
        register=not args.no_register,
        notebook_timeout=args.notebook_timeout,
        verify_timeout=args.verify_timeout,
        verify_seed=args.verify_seed,
        progress=not args.no_progress,
        use_forkserver=not args.no_forkserver,
        sandboxed=not args.no_sandbox,
        dask_scheduler=args.dask_scheduler,
    )
    if options.sandboxed and options.dask_scheduler is None:  # each Dask worker's machine: its own
        print(limits_in_force())  # which limits hold here, and what enforces them
    statuses = autograde_class(course, options)
    graded = list(statuses)
    seconds = time.monotonic() - start
    print(
        f"autograded {len(statuses)} students in {seconds:.0f} s with {args.workers} workers "
        f"({seconds / max(1, len(statuses)):.1f} s per student)"
    )
    for line in regrade_lines(statuses):
        print(line)
    if args.command == "grade":
        feedback_class(course, workers=args.workers, students=graded)
        _export(course, ASSIGNMENT, False, quiet=True)
    _print_table(course, graded)
    _print_locations(course, feedback=args.command == "grade", export=args.command == "grade")
    if args.command == "grade":
        _print_class_report(course)
    return 0


def regrade_lines(statuses: dict[str, StudentStatus]) -> list[str]:
    """What a regrade changed, one line per test (student, notebook, test: old → new), and
    how many of a TA's manual scores and comments were kept."""

    def points(value):
        return "—" if value is None else f"{value:g}"

    changes = [
        f"  {student} {notebook} {test}: {points(old)} → {points(new)}"
        for student, status in sorted(statuses.items())
        for notebook, test, old, new in status.changes
    ]
    kept = sum(status.kept_manual for status in statuses.values())
    lines = [f"regrade: {len(changes)} grades changed:", *changes] if changes else []
    if kept:
        lines.append(f"kept {kept} manual scores and comments a TA had entered (Formgrader)")
    return lines


def _export(course: Course, column: str, ungraded_as_zero: bool, *, quiet: bool = False) -> int:
    from .export import export_class, pending_students

    pending = pending_students(course)
    grades, by_notebook = export_class(course, canvas_column=column, ungraded_as_zero=ungraded_as_zero)
    if not quiet:
        print(
            f"grades: {_where(grades)} (per student, nbgrader's format)\n"
            f"        {_where(by_notebook)} (per notebook, with state and notes)\n"
            f"        {_where(course.canvas_csv)} (Canvas gradebook import)"
        )
    if pending:
        what = "counted as 0 (--ungraded-as-zero)" if ungraded_as_zero else "left EMPTY in grades_canvas.csv"
        print(f"{len(pending)} students not fully graded, {what}:")
        print("\n".join(f"  {student}: {why}" for student, why in sorted(pending.items())))
        if not ungraded_as_zero:
            print("  grade them (Formgrader, or `make autograde` again), or export with --ungraded-as-zero")
    return 0


def _print_table(course: Course, students) -> None:
    rows = class_rows(course, students)
    print()
    print(format_table(rows))
    print()
    print(summary_line(rows))


def _print_class_report(course: Course) -> None:
    from .class_report import write_report

    path, lines = write_report(course)
    print()
    print("\n".join(lines))
    print(f"class report (instructors only): {_where(path)}")


def _print_locations(course: Course, *, feedback: bool, export: bool) -> None:
    print("\nWhere everything is:")
    if export:
        print(f"  grades (per student)         {_where(course.grades_csv)}")
        print(f"  grades (per notebook, notes) {_where(course.notebook_grades_csv)}")
        print(f"  grades (Canvas import)       {_where(course.canvas_csv)}")
    if feedback:
        print(
            f"  feedback HTML                {_where(course.feedback)}/<student>/backprop_ninja/<notebook>.html"
        )
    print(f"  autograded notebooks         {_where(course.autograded)}/<student>/backprop_ninja/")
    print(f"  per-student logs             {_where(course.logs)}/<student>.log")
    print(f"  gradebook                    {course.db_url}")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return run(args)
    except GraderProblem as error:
        print(f"grader problem: {error}", file=sys.stderr)
        return 3
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Interrupted as stop:
        rest = "re-run it to grade the rest" if stop.graded else "nothing was recorded"
        print(
            f"\ninterrupted: {len(stop.graded)} of {stop.total} students graded and recorded; {rest} "
            "(`make autograde`, or --students for some)",
            file=sys.stderr,
        )
        return 130
    except KeyboardInterrupt:
        grading = args.command in ("autograde", "grade")
        print(
            "\ninterrupted" + (" before any student was graded: nothing was recorded" if grading else ""),
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
