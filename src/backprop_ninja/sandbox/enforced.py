"""Which of a sandbox's limits hold on this machine, and by what: one line the grader prints
when it starts (issue 26.1, 26.3).

The limits are the same everywhere (``limits.py``); what enforces them is not. A cgroup per
sandbox caps memory and processes for everything in it together; where none can be made (no
delegation, cgroup v1 read-only in a container, an unprivileged grader, or
``SANDBOX_CGROUPS_VARIABLE=no``), rlimits of each process do (``limits.rlimits``). Only a
grader running as root caps in total the folders a sandbox shares with it (``quota.py``);
elsewhere each file there is capped, not their sum.
"""

from __future__ import annotations

import os

from .cgroups import Cgroup
from .limits import DEFAULT_LIMITS, Limits, rlimits

SANDBOX_UID = 65534  # as build.SANDBOX_UID: the sandbox's user, inside and (a root grader) outside


def _size(count: int) -> str:
    return f"{count / 2**30:g} GiB" if count >= 2**30 else f"{count / 2**20:g} MiB"


def limits_in_force(limits: Limits = DEFAULT_LIMITS) -> str:
    """One line: each limit of a sandbox here and what enforces it, e.g. ``sandbox limits:
    memory 4 GiB (cgroup v1 memory.limit_in_bytes), 128 processes (cgroup pids.max), …``."""
    probe = Cgroup(limits)  # made and removed at once: the same attempt every sandbox makes
    try:
        version, problem = probe.version, probe.problem
    finally:
        probe.remove()
    root = os.geteuid() == 0
    if version:
        memory_file = "memory.limit_in_bytes" if version == 1 else "memory.max"
        head = "sandbox limits"
        memory = f"memory {_size(limits.memory_bytes)} (cgroup v{version} {memory_file}, all its processes)"
        processes = f"{limits.processes} processes and threads (cgroup pids.max)"
    else:
        space = rlimits(limits, rlimit_memory=True)["AS"]
        head = f"sandbox limits (no cgroup: {problem})"
        memory = f"memory {_size(space)} of address space per process (RLIMIT_AS)"
        counted = "in the sandbox's own user namespace"
        processes = f"{limits.processes} processes and threads (RLIMIT_NPROC on uid {SANDBOX_UID} {counted})"
    cpu = f"CPU {limits.cpu_seconds} s per process (RLIMIT_CPU)"
    files = f"{_size(limits.file_bytes)} per file (RLIMIT_FSIZE)"
    private = f"/tmp, $HOME and /dev/shm {_size(limits.tmp_bytes)} each (tmpfs size)"
    if root:
        shared = f"the folders shared with the grader {_size(limits.folder_bytes)} each (tmpfs size)"
    else:
        shared = "the folders shared with the grader per file only (not root: no tmpfs over them)"
    return f"{head}: {memory}, {processes}, {cpu}, {files}, {private}, {shared}"
