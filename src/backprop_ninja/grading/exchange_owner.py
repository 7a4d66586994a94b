"""Whose a submission in nbgrader's exchange is: its owner on disk, not its folder's name.

On a JupyterHub every student submits as their own Unix account, and the exchange's inbound
folder lets any student create a folder named ``<anyone>+backprop_ninja+<time>``. A folder is
taken as a student's only if it and everything in it belong to that student's account (or to
root, who can write anything anyway); otherwise the account that owns the foreign part is the
one who planted it, and the instructor is told so. Where the name is no account here (an
exchange filled by one user, as the tests do), the owners are compared with the name alone.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path


def account_uid(student: str) -> int | None:
    """The uid of the Unix account named ``student``, if there is one."""
    try:
        return pwd.getpwnam(student).pw_uid
    except KeyError:
        return None


def owner_name(uid: int) -> str:
    """The login of ``uid``, or the number where it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def planted_by(folder: Path, student: str) -> str | None:
    """The account that owns ``folder`` or anything in it while not being ``student`` (nor
    root), or None when all of it is the student's. Links are not followed (lstat)."""
    expected = account_uid(student)
    entries = [folder]
    for parent, folders, files in os.walk(folder):  # never follows a link
        entries += [Path(parent, name) for name in folders + files]
    for entry in entries:
        uid = entry.lstat().st_uid
        if uid != expected and not (uid == 0 and entry != folder) and owner_name(uid) != student:
            return owner_name(uid)
    return None
