"""Unix accounts for the class, from a roster CSV (``make hub-users ROSTER=roster.csv``).

The roster has a header row and the columns ``username`` (a Unix login: lower-case letters,
digits, ``_`` and ``-``), optionally ``first_name``, ``last_name`` and ``role`` (``student``,
the default, or ``instructor``). Every account gets a home of its own (mode 0700: no one reads
another's work) and joins the group of its role, which is how the hub knows who may log in
and who gets the Formgrader. A new account gets a random first-login password (chpasswd),
printed once for the instructor to hand out; an existing account keeps its password unless
asked. Students are also added to the gradebook, so the Formgrader lists them before they submit.
"""

from __future__ import annotations

import csv
import pwd
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .labs import INSTRUCTOR, STUDENT

GROUPS = {STUDENT: "backprop-ninja-students", INSTRUCTOR: "backprop-ninja-instructors"}
LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")


@dataclass(frozen=True)
class Person:
    username: str
    role: str = STUDENT
    first_name: str = ""
    last_name: str = ""


def read_roster(path: Path) -> list[Person]:
    """The people of a roster CSV; a bad login or role stops everything (nothing created)."""
    people = []
    with open(path, newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            username = (row.get("username") or "").strip()
            role = (row.get("role") or STUDENT).strip().lower()
            if not LOGIN.fullmatch(username):
                raise ValueError(f"{path}:{line}: {username!r} is not a Unix login (a-z, 0-9, _ and -)")
            if role not in GROUPS:
                raise ValueError(f"{path}:{line}: role {role!r} is neither student nor instructor")
            first, last = (row.get(k, "").strip() for k in ("first_name", "last_name"))
            people.append(Person(username, role, first, last))
    return people


def exists(username: str) -> bool:
    try:
        pwd.getpwnam(username)
    except KeyError:
        return False
    return True


def ensure_account(person: Person, *, reset_password: bool = False) -> str | None:
    """Create ``person``'s account (home 0700, in their role's group) unless it exists; set a
    fresh password for a new account (or when ``reset_password``) and return it, else None."""
    group = GROUPS[person.role]
    subprocess.run(["groupadd", "-f", group], check=True)
    new = not exists(person.username)
    if new:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/bash", person.username], check=True)
    subprocess.run(["usermod", "-a", "-G", group, person.username], check=True)
    Path(pwd.getpwnam(person.username).pw_dir).chmod(0o700)
    if not (new or reset_password):
        return None
    password = secrets.token_urlsafe(12)
    subprocess.run(["chpasswd"], input=f"{person.username}:{password}\n", text=True, check=True)
    return password


def remove_account(username: str) -> None:
    """Delete an account and its home (the tests' accounts; never a roster's by default)."""
    if exists(username):
        subprocess.run(["userdel", "--remove", username], capture_output=True)


def add_students_to_gradebook(people: list[Person], gradebook) -> None:
    """The roster's students in nbgrader's ``gradebook`` (names kept up to date); closes it."""
    with gradebook:
        for person in people:
            if person.role == STUDENT:
                gradebook.update_or_create_student(
                    person.username, first_name=person.first_name or None, last_name=person.last_name or None
                )


# What of the course's checkout students must not read (the venv, data/ and src/ they need):
# the solutions and the tests (which spell out right answers), and every class's submissions,
# grades and feedback.
PRIVATE_PATHS = ("solutions", "tests", "grader/class", "grader/work", "grader/gradebook.db", "build")


def close_course_files(root: Path, private: tuple[str, ...] = PRIVATE_PATHS) -> list[Path]:
    """Make ``private`` (relative to ``root``) readable by root and the instructors' group only
    (mode g+rX, o-rwx); returns the paths closed. A student's Lab runs this checkout's Python,
    so the checkout itself stays open."""
    group = GROUPS[INSTRUCTOR]
    subprocess.run(["groupadd", "-f", group], check=True)
    closed = []
    for relative in private:
        path = root / relative
        if path.exists():
            subprocess.run(["chgrp", "-R", group, str(path)], check=True)
            subprocess.run(["chmod", "-R", "g+rX,o-rwx", str(path)], check=True)
            closed.append(path)
    return closed
