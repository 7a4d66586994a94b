"""A cap on the bytes a sandbox writes into the folders of the host it is given.

A sandbox's own /tmp and $HOME are size-capped tmpfs folders that vanish with it; the
folders it shares with the grader (a kernel's runtime folder: its connection file and
sockets; the verifier's staging folder: its inputs and results) live on the host. A grader
running as root turns each such folder into a size-capped tmpfs for the sandbox's life (what
the folder held is moved in first); the memory it takes is charged to the sandbox's memory
cgroup too. A grader without that privilege cannot mount: each file there is still capped
(RLIMIT_FSIZE), the folder's total is not, and ``in_force()`` says so.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import tempfile
from pathlib import Path

__all__ = ["cap", "in_force", "remove_stale", "uncap"]

SOURCE_PREFIX = "bpn-sandbox-folder-"  # + the pid of the grading process that mounted it

MS_NOSUID, MS_NODEV = 0x2, 0x4
MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


def in_force() -> bool:
    """Whether this process caps its sandboxes' host folders (it runs as root)."""
    return os.geteuid() == 0


def cap(folder: Path, size: int, owner: tuple[int, int] | None = None) -> bool:
    """Mount a tmpfs of at most ``size`` bytes on ``folder`` with what it held moved in;
    False (nothing done) where this process may not mount. ``owner`` (uid, gid): who owns
    the tmpfs and what was moved in (the sandbox's user), else the folder's owner."""
    if not in_force():
        return False
    folder = Path(folder)
    info = folder.stat()
    aside = Path(tempfile.mkdtemp(prefix=".capped-", dir=folder.parent))
    try:
        for entry in list(folder.iterdir()):
            entry.rename(aside / entry.name)
        uid, gid = owner or (info.st_uid, info.st_gid)
        options = f"size={size},mode={info.st_mode & 0o7777:o},uid={uid},gid={gid}"
        source = f"{SOURCE_PREFIX}{os.getpid()}".encode()  # whose it is, for remove_stale
        result = _libc.mount(source, bytes(folder), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode())
        if result != 0:
            error = ctypes.get_errno()
            raise OSError(error, f"cannot mount a tmpfs on {folder}: {os.strerror(error)}")
        for entry in list(aside.iterdir()):
            shutil.move(str(entry), str(folder / entry.name))
            if owner is not None:
                os.chown(folder / entry.name, uid, gid, follow_symlinks=False)
    except BaseException:
        for entry in list(aside.iterdir()):
            shutil.move(str(entry), str(folder / entry.name))
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return True


def uncap(folder: Path) -> None:
    """Unmount the tmpfs ``cap`` put on ``folder`` (what it held goes with it)."""
    if _libc.umount2(bytes(Path(folder)), MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot unmount {folder}: {os.strerror(error)}")


def remove_stale() -> int:
    """Unmount the capped folders whose grading process is gone (killed outright, it could
    not unmount them itself); returns how many."""
    if not in_force():
        return 0
    removed = 0
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        after = fields[fields.index("-") + 1 :]
        if len(after) < 2 or after[0] != "tmpfs" or not after[1].startswith(SOURCE_PREFIX):
            continue
        owner = after[1].removeprefix(SOURCE_PREFIX)
        if owner.isdigit() and not Path("/proc", owner).exists():
            point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
            if _libc.umount2(point.encode(), MNT_DETACH) == 0:
                removed += 1
    return removed
