"""The system-call filter of every sandbox: what a kernel never needs is refused.

Built once per grading process with libseccomp (the library bubblewrap, Docker and systemd
use; Debian's ``libseccomp2``, a dependency of apt itself), called through ctypes, and
exported as a classic BPF program. Both ways of building a sandbox load the very same
program: bubblewrap reads it from a descriptor (``--seccomp FD``); a child of the sandbox
fork server loads it itself (``forkserver/confine.py``), after ``no_new_privs``.

Refused with EPERM: new namespaces (``unshare``, ``setns``, ``clone`` with a namespace flag),
mounting and pivoting, ``ptrace``, the kernel keyring, io_uring, ``perf_event_open``,
``bpf``, ``userfaultfd``, kexec, kernel modules, swap, reboot, accounting, the clock, and
``personality`` with a flag that weakens the address space. ``clone3`` answers ENOSYS
(its flags are behind a pointer a filter cannot read; the C library then falls back to
``clone``, which the filter can check). A system call of another architecture (32-bit
``int 0x80``, x32) kills the process: the filter is written for the native one only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import os

__all__ = ["DENIED", "SeccompUnavailable", "program"]

DENIED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "mount_setattr",
    "open_tree", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "perf_event_open", "bpf", "userfaultfd",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "swapon", "swapoff", "reboot", "acct", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "lookup_dcookie", "open_by_handle_at", "name_to_handle_at",
    "syslog", "vhangup", "iopl", "ioperm", "nfsservctl", "uselib", "ustat", "sysfs",
)  # fmt: skip
NAMESPACE_FLAGS = {  # clone's flags that make a new namespace
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}
# personality flags that undo address-space protections (randomisation, no-exec, page 0)
PERSONALITY_FLAGS = (0x0040000, 0x0100000, 0x0200000, 0x0400000)  # ADDR_NO_RANDOMIZE, …

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7


def _errno_action(number: int) -> int:
    return 0x00050000 | (number & 0xFFFF)  # SCMP_ACT_ERRNO(number)


class SeccompUnavailable(OSError):
    """libseccomp is missing or refused the filter: no sandbox can be built."""


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def _library() -> ctypes.CDLL:
    name = ctypes.util.find_library("seccomp") or "libseccomp.so.2"
    try:
        library = ctypes.CDLL(name, use_errno=True)
    except OSError as error:
        raise SeccompUnavailable(f"libseccomp is not installed ({error})") from None
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    library.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return library


@functools.cache
def program() -> bytes:
    """The filter as a classic BPF program (``struct sock_filter`` entries, 8 bytes each),
    as ``seccomp_export_bpf`` writes it; ``SeccompUnavailable`` if it cannot be built."""
    library = _library()
    context = library.seccomp_init(SCMP_ACT_ALLOW)
    if not context:
        raise SeccompUnavailable("libseccomp could not start a filter")
    try:

        def rule(action: int, name: str, *comparisons: _ArgCmp) -> None:
            number = library.seccomp_syscall_resolve_name(name.encode())
            if number < 0:  # not a system call of this architecture (e.g. iopl on arm64)
                return
            array = (_ArgCmp * max(1, len(comparisons)))(*comparisons)
            result = library.seccomp_rule_add_array(context, action, number, len(comparisons), array)
            if result != 0:
                raise SeccompUnavailable(f"libseccomp refused the rule for {name}: {os.strerror(-result)}")

        for name in DENIED:
            rule(_errno_action(errno.EPERM), name)
        for flag in NAMESPACE_FLAGS.values():
            rule(_errno_action(errno.EPERM), "clone", _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        for flag in PERSONALITY_FLAGS:
            rule(_errno_action(errno.EPERM), "personality", _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag))
        rule(_errno_action(errno.ENOSYS), "clone3")
        read, write = os.pipe()
        try:
            result = library.seccomp_export_bpf(context, write)
            os.close(write)
            write = -1
            if result != 0:
                raise SeccompUnavailable(f"libseccomp could not export the filter: {os.strerror(-result)}")
            chunks = []
            while chunk := os.read(read, 1 << 16):
                chunks.append(chunk)
        finally:
            os.close(read)
            if write >= 0:
                os.close(write)
        return b"".join(chunks)
    finally:
        library.seccomp_release(context)


def program_file() -> int:
    """A descriptor (a memfd, inheritable) holding ``program()``, at offset 0: for bubblewrap's
    ``--seccomp``; the caller closes it once bubblewrap has started."""
    fd = os.memfd_create("sandbox-seccomp", 0)  # no MFD_CLOEXEC: bubblewrap inherits it
    os.write(fd, program())
    os.lseek(fd, 0, os.SEEK_SET)
    return fd
