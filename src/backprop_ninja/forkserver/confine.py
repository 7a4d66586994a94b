"""Entering a sandbox after a fork: what bubblewrap does, done by a forked child of the server.

A fork server that preloads torch cannot hand its children to ``bwrap`` (that would start a
new interpreter, the cost the server exists to avoid). So a child asked to run confined does
bubblewrap's work itself, with the same system calls, before any of the requested code runs:

1. join the cgroups the caller made for it (memory and process limits for all it starts),
   and a new session keyring (no key of the grader's or of another sandbox in reach);
2. ``unshare`` new mount, PID, network, IPC, UTS and cgroup namespaces; a server that is
   not root also a new user namespace, mapping the sandbox's uid and gid to its own (a root
   server needs none: its sandboxes become the spec's user, ``nobody``, outright — a uid
   that owns nothing of the host, never the grader's — unless RLIMIT_NPROC is what counts its
   processes (no cgroup): then one mapping ``nobody`` to itself, so the count is its own);
3. fork the new PID namespace's first process (``init``), which dies with this child
   (``PR_SET_PDEATHSIG``) — and every process of the namespace dies with ``init``;
4. ``init`` builds a new root on a tmpfs from the ``mounts`` in the spec (read-only binds of
   the system, writable binds, private tmpfs folders, a fresh /proc and a minimal /dev),
   switches to it with ``pivot_root`` and detaches the old root entirely, remounts the new
   root read-only, becomes the spec's user (a root server), drops every capability (with
   ``no_new_privs``) and loads the spec's
   seccomp filter (``seccomp``, a classic BPF program) — as does the supervisor outside,
   which keeps no capability either;
5. ``init`` forks the process that runs the code (a session of its own, the spec's rlimits)
   and reaps whatever is left until that process ends; its exit code is the child's.

The spec is plain JSON, made by the caller (``backprop_ninja.sandbox.build`` makes it from
the same list of mounts as its bubblewrap command line). Standard library only, Linux only.
"""

from __future__ import annotations

import base64
import ctypes
import errno
import os
import platform
import resource
import select
import signal
import sys
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS = 0x00020000, 0x02000000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
NAMESPACES = (
    CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP
)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE, MS_SLAVE = 0x20, 0x1000, 0x4000, 1 << 18, 1 << 19
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 24, 38
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 0x1, 0x2, 0x4
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
KEYCTL_JOIN_SESSION_KEYRING = 1
SYSCALLS = {
    "x86_64": {"pivot_root": 155, "mount_setattr": 442, "keyctl": 250},
    "aarch64": {"pivot_root": 41, "mount_setattr": 442, "keyctl": 219},
}
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")  # as bubblewrap covers them
INIT_FAILED = 125  # init's exit code when the sandbox could not be built (nothing ran)


class ConfineError(OSError):
    """A step of building the sandbox failed: the code must not run."""


def supported() -> bool:
    return sys.platform == "linux" and platform.machine() in SYSCALLS


# ----------------------------------------------------------------------------- system calls
def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise ConfineError(error, f"{what}: {os.strerror(error)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    encode = lambda text: None if text is None else text.encode()  # noqa: E731
    result = _libc.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), encode(data))
    _check(result, f"mount {target}")


def _syscall(name: str, *args) -> int:
    return _libc.syscall(SYSCALLS[platform.machine()][name], *args)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64)]
    _fields_ += [("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _set_attributes(path: str, attributes: int, *, recursive: bool = True) -> None:
    """Set ``attributes`` (MOUNT_ATTR_*) on the mount at ``path`` and, ``recursive``, on
    every mount below it (``mount_setattr``: a bind's submounts included, which a remount
    would miss)."""
    attr = _MountAttr(attributes, 0, 0, 0)
    flags = AT_RECURSIVE if recursive else 0
    result = _syscall(
        "mount_setattr", AT_FDCWD, path.encode(), flags, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, f"mount attributes of {path}")


def _read_only_tree(path: str, *, recursive: bool = True) -> None:
    _set_attributes(path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, recursive=recursive)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _load_filter(program: bytes) -> None:
    """Load a seccomp filter (classic BPF, 8 bytes an instruction; ``no_new_privs`` first).
    It holds for this process and every process it starts, for good."""
    code = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(code, ctypes.c_void_p))
    _check(_libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "seccomp filter")


def _new_session_keyring() -> None:
    """A new, empty session keyring: no key of the grader's or of another sandbox in reach.
    Where a filter of the machine's (a container's) already refuses ``keyctl``, it refuses
    it to the sandbox too: nothing to do."""
    if _syscall("keyctl", KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
        error = ctypes.get_errno()
        if error not in (errno.ENOSYS, errno.EPERM):
            raise ConfineError(error, f"new session keyring: {os.strerror(error)}")


def _drop_capabilities(identity: tuple[int, int] | None = None) -> None:
    """No capability left, none to gain back (also not through a set-uid program);
    ``identity`` (uid, gid): become that user first (a root server's sandboxes)."""
    for capability in range(64):
        _libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # past the last one: EINVAL, harmless
    if identity is not None:
        uid, gid = identity
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)  # clears the pdeath signal and the dumpable flag: see enter
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "dumpable")  # its own /proc/self
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    _check(_libc.capset(ctypes.byref(header), data), "capset")


# ----------------------------------------------------------------------------- the steps
def enter(spec: dict, requester: int) -> None:
    """Confine this (freshly forked, single-threaded) process per ``spec``; returns only in
    the process that is to run the code, inside the sandbox. Every other process this makes
    exits here with the code's exit code. ``requester``: a pidfd of the process that asked;
    when it ends, the sandbox ends."""
    for procs in spec.get("cgroups", []):
        Path(procs).write_text(str(os.getpid()))
    _new_session_keyring()
    program = base64.b64decode(spec["seccomp"]) if spec.get("seccomp") else None
    outer_uid, outer_gid = os.geteuid(), os.getegid()
    # A root server builds the sandbox with its own privileges and then becomes the spec's
    # user (nobody: a uid that owns nothing of the host), with no user namespace at all;
    # any other maps the spec's user to its own in a new user namespace, as bubblewrap does.
    identity = (spec["uid"], spec["gid"]) if outer_uid == 0 else None
    # Where RLIMIT_NPROC counts its processes (no cgroup), a root server's sandbox gets a user
    # namespace too, mapping its user to itself: the kernel counts a uid's processes per user
    # namespace, so the count is the sandbox's own — not that of every process of the uid on
    # the machine (other sandboxes at the same moment, daemons running as nobody).
    counted = identity is not None and "NPROC" in spec.get("rlimits", {})
    mapped = _mapped_from_outside(spec["uid"], spec["gid"]) if counted else None
    try:
        _check(
            _libc.unshare(NAMESPACES if identity is None or counted else NAMESPACES & ~CLONE_NEWUSER),
            "unshare",
        )
    finally:
        if mapped is not None:
            mapped()
    if identity is None:
        Path("/proc/self/setgroups").write_text("deny")
        Path("/proc/self/uid_map").write_text(f"{spec['uid']} {outer_uid} 1")
        Path("/proc/self/gid_map").write_text(f"{spec['gid']} {outer_gid} 1")
    alive, held = os.pipe()  # EOF on ``alive`` once the supervisor has ended
    init = os.fork()  # PID 1 of the new namespace
    if init:
        os.close(alive)
        try:  # like bubblewrap's monitor: nothing left to it but to wait and to kill
            _drop_capabilities(identity)
            if program is not None:
                _load_filter(program)
        except BaseException:
            os.kill(init, signal.SIGKILL)
            os._exit(INIT_FAILED)
        try:
            os._exit(_supervise(init, requester))
        finally:  # whatever happened: never return from here (init dies with this process)
            os._exit(INIT_FAILED)
    os.close(requester)
    os.close(held)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # PID 1 ignores what it does not handle
    if select.select([alive], [], [], 0)[0]:  # the supervisor died before the line above
        os._exit(INIT_FAILED)
    try:
        _build_root(spec)
        _drop_capabilities(identity)
        if program is not None:
            _load_filter(program)
    except BaseException as error:
        os.write(2, f"sandbox: {error}\n".encode(errors="replace"))
        os._exit(INIT_FAILED)
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # again: a new identity cleared it
    if select.select([alive], [], [], 0)[0]:
        os._exit(INIT_FAILED)
    os.close(alive)
    code = os.fork()
    if code:
        os._exit(_reap_until(code))
    os.setsid()  # as bubblewrap's --new-session: no way back to the caller's terminal
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(spec["cwd"])
    for name, value in spec.get("rlimits", {}).items():
        limit = getattr(resource, f"RLIMIT_{name}")
        resource.setrlimit(limit, (value, value))


def _mapped_from_outside(uid: int, gid: int):
    """A helper forked now, still root outside, that maps ``uid`` and ``gid`` (and root, which
    builds the sandbox and then becomes ``uid``) to themselves in the user namespace this
    process is about to make (only a process with CAP_SETUID in the parent namespace may
    write such a map). Returns what to call after the ``unshare``:
    it has the helper write the maps and waits for it (``ConfineError`` if it could not)."""
    before = Path("/proc/self/ns/user").stat().st_ino
    go, told = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(told)
        try:
            if os.read(go, 1) == b"1":  # nothing (EOF): the unshare failed
                parent = os.getppid()
                # root too, to itself, while the sandbox is built (files are made as root)
                Path(f"/proc/{parent}/uid_map").write_text(f"0 0 1\n{uid} {uid} 1")
                Path(f"/proc/{parent}/gid_map").write_text(f"0 0 1\n{gid} {gid} 1")
                os._exit(0)
        finally:
            os._exit(1)
    os.close(go)

    def mapped() -> None:
        made = Path("/proc/self/ns/user").stat().st_ino != before
        if made:  # else the unshare failed, and says so
            os.write(told, b"1")
        os.close(told)
        _, status = os.waitpid(helper, 0)
        if made and os.waitstatus_to_exitcode(status) != 0:
            raise ConfineError(0, "the sandbox's user namespace could not be mapped")

    return mapped


def _supervise(init: int, requester: int) -> int:
    """Outside the sandbox: wait for its init; end it when the requester ends first."""
    watched = os.pidfd_open(init)
    while True:
        ready, _, _ = select.select([watched, requester], [], [])
        if watched in ready:
            _, status = os.waitpid(init, 0)
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)
        # The requester is gone: so is everything in the sandbox. (While init still builds
        # the sandbox as root, this supervisor, already nobody, may not signal it: its own
        # exit then ends init, through init's parent-death signal.)
        os.kill(init, signal.SIGKILL)


def _reap_until(code: int) -> int:
    """PID 1's work: reap every process of the namespace; return once ``code`` has ended."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == code:
            return os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


_OWNER = [65534, 65534]  # who owns the private tmpfs folders: the spec's uid and gid


def _build_root(spec: dict) -> None:
    """A new root on a tmpfs with ``spec['mounts']``; the old root detached, so unreachable."""
    _OWNER[:] = [spec["uid"], spec["gid"]]
    _mount(None, "/", None, MS_SLAVE | MS_REC)  # nothing we do here reaches the host
    # Sources resolved while the host is still the root: a link such as /etc/localtime
    # points into the host's tree, which is at /oldroot once the building starts.
    resolved = [
        [kind, os.path.realpath(where[0]), *where[1:]] if kind.endswith("bind") else [kind, *where]
        for kind, *where in spec["mounts"]
    ]
    base = "/tmp"  # like bubblewrap: the new root is built on a tmpfs over /tmp, …
    _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    os.chdir(base)
    os.mkdir("newroot")
    os.mkdir("oldroot")
    _mount("newroot", "newroot", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    _check(_syscall("pivot_root", base.encode(), b"oldroot"), "pivot_root")  # … the host at /oldroot
    for mount in resolved:
        _apply(mount)
    _mount(None, "/oldroot", None, MS_REC | MS_PRIVATE)
    _check(_libc.umount2(b"/oldroot", MNT_DETACH), "detach the old root")
    os.chdir("/newroot")
    _check(_syscall("pivot_root", b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the build root")
    os.chdir("/")
    if spec.get("read_only_root", True):
        _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)
    _check(_libc.sethostname(b"sandbox", 7), "sethostname")


def _target(path: str, *, directory: bool = True) -> str:
    """``path`` inside the new root, made (with its parents) if missing."""
    target = "/newroot" + path
    os.makedirs(target if directory else os.path.dirname(target), exist_ok=True)
    if not directory and not os.path.lexists(target):
        Path(target).touch()
    return target


def _apply(mount: list) -> None:
    kind, *args = mount
    if kind in ("ro-bind", "bind"):
        source, dest = "/oldroot" + args[0], args[1]
        target = _target(dest, directory=os.path.isdir(source))
        _mount(source, target, None, MS_BIND | MS_REC)
        if kind == "ro-bind":  # as bubblewrap's binds: no set-uid programs, no device files
            _read_only_tree(target)
        else:
            _set_attributes(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)
    elif kind == "symlink":
        os.symlink(args[0], _target(os.path.dirname(args[1])) + "/" + os.path.basename(args[1]))
    elif kind == "tmpfs":
        path, size, mode = args
        owner = f"uid={_OWNER[0]},gid={_OWNER[1]}"  # the sandbox's user's, inside
        _mount("tmpfs", _target(path), "tmpfs", MS_NOSUID | MS_NODEV, f"size={size},mode={mode:o},{owner}")
    elif kind == "proc":
        target = _target(args[0])
        _mount("proc", target, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        for name in PROC_READ_ONLY:
            if os.path.exists(f"{target}/{name}"):
                _mount(f"{target}/{name}", f"{target}/{name}", None, MS_BIND | MS_REC)
                _read_only_tree(f"{target}/{name}")
    elif kind == "dev":
        _make_dev(_target(args[0]))
    else:
        raise ConfineError(0, f"unknown mount {kind!r}")


def _make_dev(target: str) -> None:
    """A minimal /dev, as bubblewrap's ``--dev``: the harmless devices, a private /dev/shm."""
    _mount("tmpfs", target, "tmpfs", MS_NOSUID, "mode=0755")
    for name in DEVICES:
        Path(target, name).touch()
        _mount(f"/oldroot/dev/{name}", f"{target}/{name}", None, MS_BIND)
        _set_attributes(f"{target}/{name}", MOUNT_ATTR_NOSUID, recursive=False)
    for name, link in (("stdin", "0"), ("stdout", "1"), ("stderr", "2")):
        os.symlink(f"/proc/self/fd/{link}", f"{target}/{name}")
    os.symlink("/proc/self/fd", f"{target}/fd")
    os.mkdir(f"{target}/shm")
    _mount("tmpfs", f"{target}/shm", "tmpfs", MS_NOSUID | MS_NODEV, "size=64m,mode=1777")
    # No new files in /dev; the devices bound in still work (nodev would stop them).
    _set_attributes(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, recursive=False)
