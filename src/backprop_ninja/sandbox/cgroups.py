"""A cgroup of its own for each sandbox: memory and process-count limits for everything in it,
a way to end all of it, and the removal of cgroups a killed job left behind.

cgroup v1 (memory and pids hierarchies) or v2, whichever the machine mounts writable; where
neither is (or ``SANDBOX_CGROUPS_VARIABLE`` says "no"), ``Cgroup.usable`` is False and
the sandbox caps memory with RLIMIT_AS and processes with RLIMIT_NPROC instead.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from ..course import SANDBOX_CGROUPS_VARIABLE
from . import quota
from .limits import DEFAULT_LIMITS, Limits

CGROUP_ROOTS = {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids")}
CGROUP_V2_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "backprop_ninja"


class Cgroup:
    """A cgroup of its own for one sandbox: memory and process-count limits for everything in
    it together, and a way to end every process in it. ``usable`` is False where the machine
    gives no writable cgroup (then ``command(..., rlimit_memory=True)``)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        self.name = f"sandbox-{uuid.uuid4().hex[:12]}"
        self.folders: list[Path] = []
        self.problem = "no cgroup file system (v1 memory and pids, or v2)"  # why not usable
        if os.environ.get(SANDBOX_CGROUPS_VARIABLE) == "no":
            self.problem = f"{SANDBOX_CGROUPS_VARIABLE}=no"
            return
        try:
            self._create(limits)
        except OSError as error:
            self.remove()
            self.folders = []
            self.problem = f"{error.strerror or error}: {error.filename}" if error.filename else str(error)

    @property
    def usable(self) -> bool:
        return bool(self.folders)

    @property
    def version(self) -> int:
        """1 or 2 (cgroup v1's memory and pids hierarchies, or v2's); 0 where not usable."""
        return 0 if not self.folders else 2 if self.folders[0].parent.parent == CGROUP_V2_ROOT else 1

    def _create(self, limits: Limits) -> None:
        if all(root.is_dir() for root in CGROUP_ROOTS.values()):  # cgroup v1
            memory = self._make(CGROUP_ROOTS["memory"])
            (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
            self._make(CGROUP_ROOTS["pids"]).joinpath("pids.max").write_text(str(limits.processes))
        elif (CGROUP_V2_ROOT / "cgroup.controllers").exists():  # cgroup v2
            folder = self._make(CGROUP_V2_ROOT)
            (folder / "memory.max").write_text(str(limits.memory_bytes))
            (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(limits.processes))

    def _make(self, root: Path) -> Path:
        parent = root / CGROUP_PARENT
        parent.mkdir(exist_ok=True)
        if root == CGROUP_V2_ROOT:
            (parent / "cgroup.subtree_control").write_text("+memory +pids")
        folder = parent / self.name
        folder.mkdir()
        self.folders.append(folder)
        return folder

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """``argv`` started inside this cgroup (a shell joins it, then becomes ``argv``)."""
        if not self.usable:
            return list(argv)
        joins = " && ".join(f'echo $$ > "{folder}/cgroup.procs"' for folder in self.folders)
        return ["/bin/sh", "-c", f'{joins} && exec "$@"', "sandbox", *argv]

    def kill(self) -> None:
        """End every process still in the cgroup or in a cgroup nested in it (the sandbox's
        own PID 1 ends the rest)."""
        for folder in self.folders:
            for nested in _tree(folder):
                try:
                    pids = (nested / "cgroup.procs").read_text().split()
                except OSError:
                    continue
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError, ValueError, PermissionError):
                        os.kill(int(pid), 9)

    def remove(self) -> None:
        """End what is left and remove the cgroup, nested cgroups first (a sandbox cannot
        make one, but a cgroup with a child could never be removed)."""
        self.kill()
        for folder in self.folders:
            for nested in _tree(folder):
                for _ in range(50):
                    try:
                        nested.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:  # processes still exiting
                        time.sleep(0.05)


def _tree(folder: Path) -> list[Path]:
    """``folder`` and every cgroup nested in it, deepest first (the order to remove them)."""
    try:
        nested = [path for path in folder.rglob("*") if path.is_dir() and not path.is_symlink()]
    except OSError:
        nested = []
    return [*sorted(nested, key=lambda path: len(path.parts), reverse=True), folder]


# A new cgroup is empty until its sandbox's shell joins it: younger than this, it stays.
STALE_CGROUP_SECONDS = 60.0


def remove_stale_cgroups(*, older_than: float = STALE_CGROUP_SECONDS, now: float | None = None) -> int:
    """Remove the empty sandbox cgroups that a grading process killed outright (SIGKILL, the
    OOM killer) could not remove itself; returns how many. A cgroup with processes in it is
    never touched (the kernel refuses to remove one), nor one younger than ``older_than``
    seconds, whose sandbox may not have joined it yet. First, the size-capped folders such a
    process left mounted are unmounted (``quota.remove_stale``)."""
    quota.remove_stale()
    now = time.time() if now is None else now
    removed = 0
    for root in (*CGROUP_ROOTS.values(), CGROUP_V2_ROOT):
        for folder in sorted((root / CGROUP_PARENT).glob("sandbox-*")):
            try:
                if now - folder.stat().st_mtime < older_than:
                    continue
                tree = _tree(folder)
                if any((nested / "cgroup.procs").read_text().strip() for nested in tree):
                    continue
                for nested in tree:
                    nested.rmdir()
                removed += 1
            except OSError:  # gone meanwhile, joined meanwhile, or not ours to remove
                continue
    return removed
