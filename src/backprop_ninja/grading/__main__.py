"""``python -m backprop_ninja.grading COMMAND`` — what the Makefile's grading targets run.

    collect [--zip LMS.zip]   submissions → <class>/submitted/ (zip download, or nbgrader's exchange)
    autograde                 grade every submission in parallel; print the table
    feedback                  feedback HTML per student and notebook
    export                    grades.csv and grades_by_notebook.csv
    register                  record the assignment in the gradebook (done by autograde too)
    report                    print the table again (from the gradebook)
    class-report              the class report (report.html): what the class got wrong
    formgrader                nbgrader's Formgrader on the class (a Jupyter server; prints its URL)
    grade                     autograde + feedback + export + table: the whole cycle

Every command takes --class-dir (default grader/class), --db-url, --workers and so on; see
``--help`` of each. (A grading job's worker has its own entry point: ``classroom.job``.)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from ..course import ASSIGNMENT
from .classdir import CONFIG_FILE, Course, GradingError
from .pipeline import (
    NOTEBOOK_TIMEOUT,
    autograde_class,
    collect_exchange,
    collect_zip,
    export_class,
    feedback_class,
    register_assignment,
)
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
        if args.zip is not None:
            collect_zip(course, args.zip)
        else:
            collect_exchange(course)
        students = course.students()
        print(f"{len(students)} students in {_where(course.submitted)}: {', '.join(students) or '—'}")
        return 0
    if args.command in ("autograde", "grade"):
        start = time.monotonic()
        statuses = autograde_class(
            course,
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
        graded = list(statuses)
        seconds = time.monotonic() - start
        print(
            f"autograded {len(statuses)} students in {seconds:.0f} s with {args.workers} workers "
            f"({seconds / max(1, len(statuses)):.1f} s per student)"
        )
        if args.command == "grade":
            feedback_class(course, workers=args.workers, students=graded)
            export_class(course)
        _print_table(course, graded)
        _print_locations(course, feedback=args.command == "grade", export=args.command == "grade")
        if args.command == "grade":
            _print_class_report(course)
        return 0
    if args.command == "feedback":
        pages = feedback_class(course, workers=args.workers, students=_students(args.students))
        print(f"{len(pages)} feedback pages in {_where(course.feedback)}/<student>/backprop_ninja/")
        return 0
    if args.command == "export":
        grades, by_notebook = export_class(course, canvas_column=args.canvas_column)
        print(
            f"grades: {_where(grades)} (per student, nbgrader's format)\n"
            f"        {_where(by_notebook)} (per notebook, with state and notes)\n"
            f"        {_where(course.canvas_csv)} (Canvas gradebook import)"
        )
        return 0
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
    except GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
