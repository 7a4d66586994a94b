"""``backprop-ninja``: the student's command (installed with the package).

    backprop-ninja notebooks DIR        copy the four student notebooks into DIR
    backprop-ninja check NOTEBOOK...    run their visible tests headless: one line per test
                                        (--timeout SECONDS: a cell's limit, default 15)
    backprop-ninja lab [DIR]            the student JupyterLab (Validate, no instructor tools)

Every problem is reported as one line that says what to do; the exit status is 0 on success.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from ..course import COMMAND, NOTEBOOKS
from ..resources import DataError, copy_notebooks
from ..text import one_line
from .selfcheck import CELL_TIMEOUT


def folder_problem(folder: Path, error: OSError) -> str:
    """One line on why the notebooks cannot be copied into ``folder``, and what to do."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder — give a folder to copy the notebooks into (a new one is created)"
    if isinstance(error, PermissionError):
        return f"{folder} cannot be written by you — give a folder in your home, e.g. {COMMAND} notebooks ~/backprop-ninja"
    reason = error.strerror or type(error).__name__
    return f"cannot copy the notebooks into {folder} ({reason}) — give a folder you can write, e.g. ~/backprop-ninja"


def cmd_notebooks(folder: Path) -> int:
    try:
        copied = copy_notebooks(folder)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {folder_problem(Path(folder), error)}", file=sys.stderr)
        return 1
    for path, new in copied:
        print(
            f"{'copied' if new else 'kept your'} {path}{'' if new else ' (already there, not overwritten)'}"
        )
    print(f"next: {COMMAND} lab {folder}   (or open them in Jupyter; {COMMAND} check {folder}/*.ipynb)")
    return 0


def cmd_check(paths: list[Path], timeout: float) -> int:
    from .selfcheck import run

    return run(paths, timeout=timeout)


def seconds(text: str) -> float:
    """``--timeout``'s value: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = 0
    if not 0 < value < 1e6:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (e.g. 20)")
    return value


def cmd_lab(folder: Path, extra: list[str]) -> int:
    from . import lab

    folder = Path(folder)
    if not any((folder / f"{name}.ipynb").exists() for name in NOTEBOOKS):
        print(f"no course notebooks in {folder}: copying them there first")
        status = cmd_notebooks(folder)
        if status:
            return status
    try:
        import jupyterlab  # noqa: F401
        import nbgrader  # noqa: F401
    except ImportError:
        print(
            f"error: JupyterLab is not installed: pip install '{COMMAND}[lab]' (or open the notebooks "
            "in any Jupyter and use `backprop-ninja check`)",
            file=sys.stderr,
        )
        return 1
    server = lab.server_covering(folder, lab.running_servers())
    if server is not None:
        print(f"a Jupyter server already runs on {folder}: open {lab.server_url(server, folder)}")
        return 0
    exchange = lab.exchange_root()
    config = lab.write_config(lab.config_dir(), exchange)
    as_root = os.geteuid() == 0 if hasattr(os, "geteuid") else False
    if as_root:
        print("running as root (a container or a cloud VM?): starting JupyterLab with --allow-root")
    print(
        f"student Lab on {folder}: Validate on every notebook's toolbar; "
        + (f"Assignment List submits to {exchange}" if exchange else "hand in through your course's LMS")
        + f" (Jupyter config: {config})"
    )
    command = lab.lab_command(folder, extra, as_root=as_root)
    try:
        return subprocess.call(command, env=lab.lab_environment(config))
    except KeyboardInterrupt:
        return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=COMMAND, description="Backprop Ninja: the student's command.")
    commands = top.add_subparsers(dest="command", required=True)
    notebooks = commands.add_parser("notebooks", help="copy the four student notebooks into DIR")
    notebooks.add_argument("dir", type=Path, metavar="DIR")
    check = commands.add_parser("check", help="run notebooks' visible tests headless (exit 0: all pass)")
    check.add_argument("notebooks", type=Path, nargs="+", metavar="NOTEBOOK")
    check.add_argument(
        "--timeout",
        type=seconds,
        default=CELL_TIMEOUT,
        metavar="SECONDS",
        help=f"stop a cell that runs longer and name it (default {CELL_TIMEOUT}; the set-up and "
        "training cells get at least 120)",
    )
    lab = commands.add_parser(
        "lab",
        help="open DIR (default: here) in the student JupyterLab; further options go to JupyterLab",
    )
    lab.add_argument("dir", type=Path, nargs="?", default=Path("."), metavar="DIR")
    return top


def main(argv: list[str] | None = None) -> int:
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "lab":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "notebooks":
            return cmd_notebooks(args.dir)
        if args.command == "check":
            return cmd_check(args.notebooks, args.timeout)
        return cmd_lab(args.dir, extra)
    except KeyboardInterrupt:
        print(f"{COMMAND}: stopped (Ctrl-C).", file=sys.stderr)
        return 130
    except Exception as error:  # a case nobody foresaw: one line, never a traceback
        print(
            f"{COMMAND} {args.command}: something went wrong inside the course's tool "
            f"({type(error).__name__}: {one_line(str(error), 160)}) — not your code's fault; "
            "please tell your instructor, with this line",
            file=sys.stderr,
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
