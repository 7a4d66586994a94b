"""``python -m backprop_ninja.hub COMMAND`` — what the Makefile's hub targets run (as root).

serve              JupyterHub for the course on 127.0.0.1 (make hub); Ctrl-C stops it all
users ROSTER.csv   accounts for a roster, first-login passwords printed (make hub-users)
release            the four notebooks into the exchange, with a due date (make hub-release)
release-feedback   the class's feedback pages into the exchange (make hub-feedback)
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from ..course import (
    EXCHANGE_VARIABLE,
    HUB_API_PORT_VARIABLE,
    HUB_PORT_VARIABLE,
    HUB_STATE_VARIABLE,
    PROXY_API_PORT_VARIABLE,
    REPO_ROOT,
)
from ..student.lab import DEFAULT_EXCHANGE

HUB_FOLDER = REPO_ROOT / "grader" / "hub"
HUB_CONFIG = HUB_FOLDER / "jupyterhub_config.py"
STATE = HUB_FOLDER / "state"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_state(state: Path) -> Path:
    """The hub's one folder of state: the database and cookie secret (JupyterHub's), the
    proxy's token (made here once), each user's Lab config (labs/). Reused by the next run."""
    state.mkdir(parents=True, exist_ok=True)
    state.chmod(0o711)  # users reach labs/<user>/ in it, list nothing
    token = state / "proxy_auth_token"
    if not token.exists():
        token.touch(mode=0o600)
        token.write_text(secrets.token_hex(32))
    (state / "labs").mkdir(exist_ok=True, mode=0o755)
    return state


def closed_folders(path: Path) -> list[Path]:
    """The folders on the way to ``path`` (as written, and with links resolved) that other
    users cannot enter: every Lab runs this venv's Python as its student."""
    ways = {Path(os.path.abspath(path)), Path(os.path.realpath(path))}
    folders = sorted({folder for way in ways for folder in way.parents})
    return [folder for folder in folders if not os.stat(folder).st_mode & 0o001]


def open_the_way(path: Path) -> list[Path]:
    """Let other users enter (o+x: enter, not list) every folder on the way to ``path``; the
    folders opened. A clone in ``mktemp -d`` (0700) or Debian's /root (0700) needs it."""
    opened = closed_folders(path)
    for folder in opened:
        folder.chmod(os.stat(folder).st_mode & 0o7777 | 0o001)
    return opened


def serve(port: int, state: Path, exchange: Path) -> None:
    """Replace this process with JupyterHub (so Ctrl-C reaches it: it stops the proxy, the
    idle culler and every Lab it started)."""
    from .accounts import close_course_files
    from .exchange import prepare_exchange

    prepare_state(state)
    prepare_exchange(exchange)
    for path in close_course_files(REPO_ROOT):  # first: what students must not read
        print(f"students cannot read {path.relative_to(REPO_ROOT)} (root and instructors only)")
    for folder in open_the_way(Path(sys.executable)):  # then: the way to the Labs' Python
        print(f"other users may now enter (not list) {folder}: the students' Labs run {sys.executable}")
    env = {
        **os.environ,
        HUB_STATE_VARIABLE: str(state.resolve()),
        HUB_PORT_VARIABLE: str(port),
        HUB_API_PORT_VARIABLE: os.environ.get(HUB_API_PORT_VARIABLE) or str(free_port()),
        PROXY_API_PORT_VARIABLE: os.environ.get(PROXY_API_PORT_VARIABLE) or str(free_port()),
        EXCHANGE_VARIABLE: str(exchange),
        "PATH": f"{Path(sys.executable).parent}:{HUB_FOLDER / 'node_modules' / '.bin'}:{os.environ['PATH']}",
    }
    print(
        f"HUB_URL=http://127.0.0.1:{port}/  (state: {state}, exchange: {exchange}; Ctrl-C stops)", flush=True
    )
    jupyterhub = str(Path(sys.executable).parent / "jupyterhub")
    os.chdir(state)
    os.execve(jupyterhub, [jupyterhub, "-f", str(HUB_CONFIG)], env)


def users(roster: Path, reset: bool, class_dir: str) -> None:
    from ..grading.classdir import Course
    from .accounts import add_students_to_gradebook, ensure_account, read_roster

    people = read_roster(roster)
    print("username,role,first_login_password")
    for person in people:
        password = ensure_account(person, reset_password=reset)
        print(f"{person.username},{person.role},{password or '(unchanged)'}")
    course = Course.load(class_dir=class_dir)
    course.class_dir.mkdir(parents=True, exist_ok=True)
    add_students_to_gradebook(people, course.gradebook())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backprop_ninja.hub", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--exchange", type=Path, default=Path(os.environ.get(EXCHANGE_VARIABLE) or DEFAULT_EXCHANGE)
    )
    parser.add_argument("--class-dir", default="grader/class")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve")
    run.add_argument("--port", type=int, default=int(os.environ.get(HUB_PORT_VARIABLE) or 8000))
    run.add_argument("--state", type=Path, default=Path(os.environ.get(HUB_STATE_VARIABLE) or STATE))
    roster = commands.add_parser("users")
    roster.add_argument("roster", type=Path)
    roster.add_argument(
        "--reset-passwords", action="store_true", help="new passwords for existing accounts too"
    )
    release = commands.add_parser("release")
    release.add_argument(
        "--duedate", default=None, help="e.g. '2026-12-24 23:59:00 UTC': later submissions are late"
    )
    commands.add_parser("release-feedback")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the hub's commands run as root (accounts, each Lab as its user): sudo make …", file=sys.stderr)
        return 2
    if args.command == "serve":
        serve(args.port, args.state, args.exchange)
    elif args.command == "users":
        users(args.roster, args.reset_passwords, args.class_dir)
    else:
        from ..grading.classdir import Course
        from .exchange import release_assignment, release_feedback

        course = Course.load(class_dir=args.class_dir)
        if args.command == "release":
            print(f"released into {release_assignment(course, args.exchange, args.duedate)}")
        else:
            pages = release_feedback(course, args.exchange)
            print(
                f"released {len(pages)} feedback pages into {args.exchange / 'backprop_ninja' / 'feedback'}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
