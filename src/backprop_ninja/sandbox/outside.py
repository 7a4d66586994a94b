"""A root grader's bubblewrap sandbox, started as the sandbox's user outside too (issue 26.1).

bubblewrap is not set-uid here: started by root it would map the sandbox's user to root and
its monitor would stay root. So a root grader starts it through this module, run as a script
(standard library only, ``python -I``), which, still as root:

1. joins a new, empty session keyring (bubblewrap has no option for one): no key of the
   grader's in reach, not even through the possession of its session keyring;
2. enters a private mount namespace (nothing it mounts reaches the host) and makes every
   folder the sandbox binds in reachable at an alias under a fresh tmpfs on /tmp — so a
   folder of the grader's inside folders only root may enter (``$TMPDIR`` 0700, a course in
   a 0700 home) is bound by bubblewrap all the same, and nothing of the host changes mode;
3. becomes the sandbox's user (65534: ``nobody``) with no supplementary group, no capability
   (none in the bounding set either) and ``no_new_privs``, and executes bubblewrap, which
   then maps 65534 inside to 65534 outside in the user namespace it makes.

The cgroups were joined before (``Cgroup.wrap``, as root): the sandbox's processes stay in
them and cannot write a cgroup file (root's). ``wrap`` builds the command line.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import platform
import sys
from collections.abc import Sequence

ALIASES = "/tmp"  # where the aliases are, inside the private mount namespace only
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x1000, 0x4000, 1 << 18, 0x2, 0x4
PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 24, 38
O_PATH = 0o10000000
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL = {"x86_64": 250, "aarch64": 219}


def aliased(source: str) -> bool:
    """Whether a bind's ``source`` gets an alias (not /proc's and /dev's own files)."""
    return not source.startswith(("/proc/", "/dev/"))


def wrap(bwrap_argv: Sequence[str], sources: Sequence[str], identity: tuple[int, int]) -> list[str]:
    """The command that runs ``bwrap_argv`` as ``identity`` (uid, gid), where the bind
    sources ``sources`` (in order) are written ``alias(i)``."""
    spec = json.dumps({"sources": list(sources), "uid": identity[0], "gid": identity[1]})
    return [sys.executable, "-I", os.path.abspath(__file__), spec, *bwrap_argv]


def alias(index: int) -> str:
    return f"{ALIASES}/{index}"


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _new_session_keyring(libc) -> None:
    number = KEYCTL.get(platform.machine())
    if number is not None and libc.syscall(number, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        error = ctypes.get_errno()
        if error not in (errno.ENOSYS, errno.EPERM):  # a container's filter may refuse keyctl
            raise OSError(error, f"new session keyring: {os.strerror(error)}")


def _make_aliases(libc, sources: Sequence[str]) -> None:
    """Private mounts; each source bound at ``alias(i)`` on a fresh tmpfs over /tmp."""
    _check(libc.unshare(CLONE_NEWNS), "unshare the mount namespace")
    _check(libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_PRIVATE), None), "private mounts")
    # Opened before /tmp is covered (and after the unshare: the mounts they are on are ours).
    held = [os.open(source, O_PATH | os.O_CLOEXEC) for source in sources]
    flags = ctypes.c_ulong(MS_NOSUID | MS_NODEV)
    _check(libc.mount(b"tmpfs", ALIASES.encode(), b"tmpfs", flags, b"mode=0755,size=1m"), "mount the aliases")
    for index, fd in enumerate(held):
        target = alias(index)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.mkdir(target)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        where = f"/proc/self/fd/{fd}".encode()
        _check(libc.mount(where, target.encode(), None, ctypes.c_ulong(MS_BIND | MS_REC), None), target)
        os.close(fd)


def _become(libc, uid: int, gid: int) -> None:
    """The sandbox's user, with nothing of root's left (nor a way back to it)."""
    for capability in range(64):
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # past the last one: EINVAL, harmless
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)  # a uid other than 0: every capability goes
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def main(argv: Sequence[str]) -> None:
    spec, command = json.loads(argv[0]), list(argv[1:])
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        _new_session_keyring(libc)
        _make_aliases(libc, spec["sources"])
        _become(libc, spec["uid"], spec["gid"])
        os.execv(command[0], command)
    except OSError as error:
        os.write(2, f"sandbox: {error}\n".encode(errors="replace"))
        os._exit(125)


if __name__ == "__main__":
    main(sys.argv[1:])
