"""What one sandbox may use (``grading.sandbox``, ``grading.cgroups``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. Memory covers every process in it together (cgroup)."""

    memory_bytes: int = 4 * 2**30
    processes: int = 128  # threads count too: torch and ZeroMQ start a few dozen
    file_bytes: int = 64 * 2**20  # the largest single file it may write
    cpu_seconds: int = 900  # CPU time of each process (the pipeline's wall-clock limits come first)
    tmp_bytes: int = 256 * 2**20  # its private /tmp and $HOME, each
    folder_bytes: int = 256 * 2**20  # each folder of the host it may write (quota.py: root only)


DEFAULT_LIMITS = Limits()


def rlimits(limits: Limits = DEFAULT_LIMITS, *, rlimit_memory: bool = False) -> dict[str, int]:
    """Per-process limits (RLIMIT_ name → value); ``rlimit_memory`` where no cgroup caps memory
    or processes (then RLIMIT_NPROC, counted per user in the sandbox's own user namespace)."""
    kept = {"FSIZE": limits.file_bytes, "CPU": limits.cpu_seconds, "CORE": 0}
    if rlimit_memory:
        kept["AS"] = limits.memory_bytes + 4 * 2**30  # torch reserves ~1 GiB it never uses
        kept["NPROC"] = limits.processes
    return kept
