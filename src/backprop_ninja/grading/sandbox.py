"""A bubblewrap sandbox for everything that runs a student's code (kernels, verifier children).

Inside a sandbox a process sees a read-only system (/usr, a few files of /etc), the Python
installation, the venv, the course package and data/names.txt — and nothing else of the
machine: not solutions/, grader/, the gradebook, submissions, other students, the grader's
$TMPDIR or its sockets. It may write only where the caller says (a private folder per kernel)
and into a small private tmpfs /tmp and $HOME that vanish with it. It has new user, PID,
network, IPC, UTS and cgroup namespaces (no network at all, not even loopback to another
kernel), a cleared environment with an allowlist, no capabilities, and it dies with the
process that started it: the PID namespace ends every process it made, however detached.

Limits: memory and process count through a cgroup made for the sandbox (v1 or v2, whichever
the machine mounts writable); where no cgroup can be made, memory falls back to RLIMIT_AS.
File size and CPU time are rlimits (``prlimit``), set inside before the student's code runs.

Use ``command(argv, writable=[...])`` for a sandboxed command line and ``Cgroup`` to account
it; ``problem()`` says why sandboxing is unavailable on this machine (None when it works).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..course import SANDBOX_ENVIRONMENT, SANDBOX_VARIABLE
from ..data import DEFAULT_NAMES_PATH

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What the sandboxed process is called inside (an unprivileged uid: ``nobody``).
SANDBOX_UID = 65534
SANDBOX_HOME = "/home/student"
# System files a Python process with torch and matplotlib needs; everything else of /etc stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "ssl/openssl.cnf")
CGROUP_ROOTS = {"memory": Path("/sys/fs/cgroup/memory"), "pids": Path("/sys/fs/cgroup/pids")}
CGROUP_V2_ROOT = Path("/sys/fs/cgroup")
CGROUP_PARENT = "backprop_ninja"

INSTALL_HELP = (
    "Grading runs every student's code in a bubblewrap sandbox, and the sandbox cannot start on "
    "this machine ({reason}). On Debian/Ubuntu: `sudo apt-get install bubblewrap`; on Fedora: "
    "`sudo dnf install bubblewrap`. bubblewrap needs user namespaces: if it says 'No permissions "
    "to create new namespace', enable them (`sudo sysctl -w kernel.unprivileged_userns_clone=1` "
    "on Debian, `sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0` on Ubuntu 24.04+). "
    "macOS has no bubblewrap: grade in a Linux VM or container. Only if you trust every "
    "submission, pass --no-sandbox (make autograde SANDBOX=no): the grades then say the class was "
    "graded without a sandbox."
)


@dataclass(frozen=True)
class Limits:
    """What one sandbox may use. Memory covers every process in it together (cgroup)."""

    memory_bytes: int = 4 * 2**30
    processes: int = 128  # threads count too: torch and ZeroMQ start a few dozen
    file_bytes: int = 64 * 2**20  # the largest single file it may write
    cpu_seconds: int = 900  # CPU time of each process (the pipeline's wall-clock limits come first)
    tmp_bytes: int = 256 * 2**20  # its private /tmp and $HOME, each


DEFAULT_LIMITS = Limits()


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def problem() -> str | None:
    """None if a sandbox starts here; otherwise one line saying why not."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    probe = subprocess.run(
        [*command(["/bin/true"], bwrap=bwrap)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if probe.returncode != 0:
        return f"bwrap failed: {(probe.stderr.strip().splitlines() or ['no message'])[-1]}"
    return None


def unavailable_message() -> str | None:
    reason = problem()
    return None if reason is None else INSTALL_HELP.format(reason=reason)


def sandbox_environment(env: Mapping[str, str], extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allowlisted environment of a sandboxed process: the course's own switches and the
    thread caps, never the grader's secrets (database URL, tokens) or its sockets."""
    kept = {key: env[key] for key in SANDBOX_ENVIRONMENT if key in env}
    kept.update(
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        HOME=SANDBOX_HOME,
        TMPDIR="/tmp",
        LANG="C.UTF-8",
        MPLCONFIGDIR="/tmp/matplotlib",
        PYTHONDONTWRITEBYTECODE="1",
    )
    kept.update(extra or {})
    return kept


def _readonly_paths() -> list[Path]:
    """The Python installation, the venv, the course package and the data it reads."""
    splits_cache = DEFAULT_NAMES_PATH.parent / ".cache"  # data.load_splits's tensors, if made
    paths = [Path(sys.base_prefix), Path(sys.prefix), PACKAGE_DIR]
    paths += [p for p in (DEFAULT_NAMES_PATH, splits_cache) if p.exists()]
    return paths


def command(
    argv: Sequence[str],
    *,
    writable: Sequence[Path] = (),
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str = SANDBOX_HOME,
    limits: Limits = DEFAULT_LIMITS,
    rlimit_memory: bool = False,
    bwrap: str | None = None,
) -> list[str]:
    """The command line that runs ``argv`` sandboxed. ``writable`` folders appear at their own
    path, read-write; ``env`` (default: this process's) is filtered through the allowlist,
    ``extra_env`` is set as given; ``rlimit_memory``: cap memory per process (when no cgroup could be made)."""
    args = [bwrap or bwrap_path() or "bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    args += ["--ro-bind", "/usr", "/usr", "--proc", "/proc", "--dev", "/dev"]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/", link)
        if target.is_symlink():
            args += ["--symlink", os.readlink(target), str(target)]
        elif target.exists():
            args += ["--ro-bind", str(target), str(target)]
    for name in ETC_FILES:
        if Path("/etc", name).exists():
            args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
    for path in _readonly_paths():
        args += ["--ro-bind", str(path), str(path)]
    for folder in ("/tmp", SANDBOX_HOME):
        args += ["--size", str(limits.tmp_bytes), "--perms", "0700", "--tmpfs", folder]
    for path in writable:  # after the tmpfs mounts, which would hide a folder under /tmp
        args += ["--bind", str(path), str(path)]
    args += ["--remount-ro", "/", "--chdir", cwd, "--clearenv"]
    for key, value in sandbox_environment(os.environ if env is None else env, extra_env).items():
        args += ["--setenv", key, value]
    rlimits = [f"--fsize={limits.file_bytes}", f"--cpu={limits.cpu_seconds}", "--core=0"]
    if rlimit_memory:
        rlimits.append(f"--as={limits.memory_bytes + 4 * 2**30}")  # torch reserves ~1 GiB it never uses
    return [*args, "--", "/usr/bin/prlimit", *rlimits, "--", *argv]


class Cgroup:
    """A cgroup of its own for one sandbox: memory and process-count limits for everything in
    it together, and a way to end every process in it. ``usable`` is False where the machine
    gives no writable cgroup (then ``command(..., rlimit_memory=True)``)."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS):
        self.name = f"sandbox-{uuid.uuid4().hex[:12]}"
        self.folders: list[Path] = []
        try:
            self._create(limits)
        except OSError:
            self.remove()
            self.folders = []

    @property
    def usable(self) -> bool:
        return bool(self.folders)

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
        """End every process still in the cgroup (the sandbox's own PID 1 ends the rest)."""
        for folder in self.folders:
            try:
                pids = (folder / "cgroup.procs").read_text().split()
            except OSError:
                continue
            for pid in pids:
                try:
                    os.kill(int(pid), 9)
                except (ProcessLookupError, ValueError, PermissionError):
                    pass

    def remove(self) -> None:
        self.kill()
        for folder in self.folders:
            for _ in range(50):
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:  # processes still exiting
                    time.sleep(0.05)


# A new cgroup is empty until its sandbox's shell joins it: younger than this, it stays.
STALE_CGROUP_SECONDS = 60.0


def remove_stale_cgroups(*, older_than: float = STALE_CGROUP_SECONDS, now: float | None = None) -> int:
    """Remove the empty sandbox cgroups that a grading process killed outright (SIGKILL, the
    OOM killer) could not remove itself; returns how many. A cgroup with processes in it is
    never touched (the kernel refuses to remove one), nor one younger than ``older_than``
    seconds, whose sandbox may not have joined it yet."""
    now = time.time() if now is None else now
    removed = 0
    for root in (*CGROUP_ROOTS.values(), CGROUP_V2_ROOT):
        for folder in sorted((root / CGROUP_PARENT).glob("sandbox-*")):
            try:
                if now - folder.stat().st_mtime < older_than:
                    continue
                if (folder / "cgroup.procs").read_text().strip():
                    continue
                folder.rmdir()
                removed += 1
            except OSError:  # gone meanwhile, joined meanwhile, or not ours to remove
                continue
    return removed


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether this grading process must sandbox the student's code."""
    return (os.environ if env is None else env).get(SANDBOX_VARIABLE) == "1"


class SandboxedProcess(subprocess.Popen):
    """``subprocess.Popen`` of ``argv`` in a sandbox with a cgroup of its own.

    Call ``close()`` once it is done: it ends whatever is left in the sandbox and removes the
    cgroup. Popen's own arguments (stdout, stderr, stdin…) pass through; ``cwd`` is inside.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        writable: Sequence[Path] = (),
        cwd: str = SANDBOX_HOME,
        env: Mapping[str, str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        limits: Limits = DEFAULT_LIMITS,
        **popen_kwargs,
    ):
        self.cgroup = Cgroup(limits)
        inner = command(
            argv,
            writable=writable,
            env=env,
            extra_env=extra_env,
            cwd=cwd,
            limits=limits,
            rlimit_memory=not self.cgroup.usable,
        )
        popen_kwargs.setdefault("start_new_session", True)
        try:
            super().__init__(self.cgroup.wrap(inner), env={"PATH": "/usr/bin:/bin"}, **popen_kwargs)
        except BaseException:
            self.cgroup.remove()
            raise

    def close(self) -> None:
        try:
            os.killpg(self.pid, 9)  # bwrap itself; its PID namespace ends with it
        except (ProcessLookupError, PermissionError):
            pass
        self.cgroup.kill()
        if self.returncode is None:
            self.wait()  # reaped first: a zombie still holds its cgroup
        self.cgroup.remove()
