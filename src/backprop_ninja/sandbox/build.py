"""A bubblewrap sandbox for everything that runs a student's code (kernels, verifier children).

Inside a sandbox a process sees a read-only system (/usr, a few files of /etc), the Python
installation, the venv, the course package and data/names.txt — and nothing else of the
machine: not solutions/, grader/, the gradebook, submissions, other students, the grader's
$TMPDIR or its sockets. It may write only where the caller says (a private folder per kernel)
and into a small private tmpfs /tmp and $HOME that vanish with it. It has new user, PID,
network, IPC, UTS and cgroup namespaces (no network at all, not even loopback to another
kernel), a cleared environment with an allowlist, no capabilities, and it dies with the
process that started it: the PID namespace ends every process it made, however detached.

Limits: memory and process count through a cgroup made for the sandbox (``cgroups.py``);
where no cgroup can be made, memory falls back to RLIMIT_AS. File size and CPU time are
rlimits, set inside before the student's code runs.

Two ways to build the same sandbox from the same list of mounts (``mounts``): a ``bwrap``
command line (``command``), or — when the pipeline runs a *sandbox fork server*, a fork server
started with a clean environment that has torch, matplotlib and ipykernel imported — a child
forked from that server that does bubblewrap's work itself before it runs anything
(``confinement`` is its spec; ``forkserver/confine.py`` the steps). The second starts in
milliseconds instead of seconds. ``SandboxedProcess`` takes the fork server when there is one
and it serves the command, else bubblewrap; ``problem()`` says why sandboxing is unavailable
on this machine (None when it works).
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import forkserver
from ..course import SANDBOX_ENVIRONMENT, SANDBOX_FORKSERVER_VARIABLE, SANDBOX_VARIABLE
from ..data import DEFAULT_NAMES_PATH
from . import outside, quota, seccomp
from .cgroups import Cgroup, remove_stale_cgroups
from .limits import DEFAULT_LIMITS, Limits, rlimits

PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What the sandboxed process is called inside (an unprivileged uid: ``nobody``).
SANDBOX_UID = 65534
SANDBOX_HOME = "/home/student"
# System files a Python process with torch and matplotlib needs; everything else of /etc stays out.
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "fonts", "ssl/openssl.cnf")
# Parts of /proc made read-only (/proc/sys: the sysctls, which follow the reader's namespaces
# whichever proc they are read through) and parts hidden behind /dev/null (the kernel's
# keys, timers and memory), as container runtimes mask them.
PROC_READ_ONLY = ("sys", "sysrq-trigger", "irq", "bus")
PROC_MASKED = ("keys", "key-users", "timer_list", "sched_debug", "kcore", "latency_stats")

# What a trial sandbox runs before any student's: the course's Python, the imports a kernel
# and the verifier make from files once they run (not those a fork server did before), data.
TRIAL_CODE = (
    "import IPython.core.debugger, ipykernel.kernelapp, backprop_ninja.testing, backprop_ninja.verify.child\n"
    "backprop_ninja.data.load_splits()"  # names.txt readable by the sandbox's user
)

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


__all__ = ["DEFAULT_LIMITS", "Cgroup", "Limits", "SandboxedProcess", "remove_stale_cgroups"]


def bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def problem() -> str | None:
    """None if a sandbox starts here; otherwise one line saying why not."""
    bwrap = bwrap_path()
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    try:
        filter_fd = seccomp.program_file()
    except seccomp.SeccompUnavailable as error:
        return str(error)
    try:
        probe = subprocess.run(
            command([sys.executable, "-c", TRIAL_CODE], bwrap=bwrap, seccomp_fd=filter_fd),
            capture_output=True,
            text=True,
            timeout=120,
            pass_fds=(filter_fd,),
        )
    finally:
        os.close(filter_fd)
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
        PYDEVD_DISABLE_FILE_VALIDATION="1",  # no debugger warning on every kernel's stderr
        PYTHONPATH=str(PACKAGE_DIR.parent),  # the package the grader runs and binds in, first
    )
    kept.update(extra or {})
    return kept


def _readonly_paths() -> list[Path]:
    """The Python installation, the venv, the course package and the data it reads."""
    splits_cache = DEFAULT_NAMES_PATH.parent / ".cache"  # data.load_splits's tensors, if made
    paths = [Path(sys.base_prefix), Path(sys.prefix), PACKAGE_DIR]
    paths += [p for p in (DEFAULT_NAMES_PATH, splits_cache) if p.exists()]
    return paths


def mounts(writable: Sequence[Path] = (), limits: Limits = DEFAULT_LIMITS) -> list[list]:
    """What the sandbox sees, in order: ["ro-bind", source, dest], ["bind", source, dest],
    ["symlink", target, path], ["tmpfs", path, bytes, mode], ["proc", path], ["dev", path].
    ``writable`` folders appear at their own path, read-write."""
    view: list[list] = [["ro-bind", "/usr", "/usr"], ["proc", "/proc"]]
    view += [
        ["ro-bind", f"/proc/{name}", f"/proc/{name}"]
        for name in PROC_READ_ONLY
        if Path("/proc", name).exists()
    ]
    view += [
        ["ro-bind", "/dev/null", f"/proc/{name}"] for name in PROC_MASKED if Path("/proc", name).exists()
    ]
    view += [["dev", "/dev"], ["tmpfs", "/dev/shm", limits.tmp_bytes, 0o1777]]
    for link in ("bin", "lib", "lib64", "sbin"):
        target = Path("/", link)
        if target.is_symlink():
            view.append(["symlink", os.readlink(target), str(target)])
        elif target.exists():
            view.append(["ro-bind", str(target), str(target)])
    view += [["ro-bind", f"/etc/{name}", f"/etc/{name}"] for name in ETC_FILES if Path("/etc", name).exists()]
    # The private folders first: a mount hides whatever was mounted below it before, and the
    # course may live under /tmp or $HOME (a clone in /tmp, a venv in a home folder).
    view += [["tmpfs", folder, limits.tmp_bytes, 0o700] for folder in ("/tmp", SANDBOX_HOME)]
    view += [["ro-bind", str(path), str(path)] for path in _readonly_paths()]
    view += [["bind", str(path), str(path)] for path in writable]
    return view


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
    seccomp_fd: int,
) -> list[str]:
    """The bubblewrap command line that runs ``argv`` sandboxed. ``env`` (default: this
    process's) is filtered through the allowlist, ``extra_env`` is set as given;
    ``seccomp_fd``: a descriptor of ``seccomp.program()`` that bubblewrap inherits."""
    args = [bwrap or bwrap_path() or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--die-with-parent", "--new-session", "--seccomp", str(seccomp_fd)]
    args += ["--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL"]
    as_root, sources = os.geteuid() == 0, list[str]()  # root: bubblewrap starts as nobody (outside.py)
    for kind, *where in mounts(writable, limits):
        if kind == "tmpfs":
            path, size, mode = where
            args += ["--size", str(size), "--perms", f"{mode:04o}", "--tmpfs", path]
        elif as_root and kind.endswith("bind") and outside.aliased(where[0]):
            args += [f"--{kind}", outside.alias(len(sources)), where[1]]
            sources.append(where[0])
        else:
            args += [f"--{kind}", *where]
    args += ["--remount-ro", "/", "--chdir", cwd, "--clearenv"]
    for key, value in sandbox_environment(os.environ if env is None else env, extra_env).items():
        args += ["--setenv", key, value]
    limited = [
        f"--{name.lower()}={value}" for name, value in rlimits(limits, rlimit_memory=rlimit_memory).items()
    ]
    args += ["--", "/usr/bin/prlimit", *limited, "--", *argv]
    return outside.wrap(args, sources, (SANDBOX_UID, SANDBOX_UID)) if as_root else args


def confinement(
    *, writable: Sequence[Path] = (), cwd: str = SANDBOX_HOME, limits: Limits = DEFAULT_LIMITS, cgroup: Cgroup
) -> dict:
    """The same sandbox as ``command``'s, as the spec a fork server's child confines itself
    by (``forkserver.confine.enter``); it joins ``cgroup`` first."""
    return {
        "uid": SANDBOX_UID,
        "gid": SANDBOX_UID,
        "mounts": mounts(writable, limits),
        "cwd": cwd,
        "rlimits": rlimits(limits, rlimit_memory=not cgroup.usable),
        "cgroups": [str(folder / "cgroup.procs") for folder in cgroup.folders],
        "seccomp": base64.b64encode(seccomp.program()).decode(),
    }


def start_fork_server(entry_points: Mapping[str, str], preload: Sequence[str], env: Mapping[str, str]):
    """A sandbox fork server: it imports ``preload`` with a clean environment (its children
    inherit its memory and its process's initial environment, so the grader's secrets must
    never be in either) and serves ``entry_points`` and ``-c``; every child confines itself.
    None if it cannot start, or if its first child cannot confine itself on this machine:
    then bubblewrap starts every sandbox, only slower."""
    private = tempfile.mkdtemp(prefix="sandbox-forkserver-")  # its matplotlib cache and $HOME
    atexit.register(shutil.rmtree, private, True)
    clean = {**sandbox_environment(env), "HOME": private, "MPLCONFIGDIR": private}
    clean.update({key: env[key] for key in ("MPLBACKEND",) if key in env})
    served = {**entry_points, "-c": f"{forkserver.__name__}.server:run_code"}
    server = forkserver.start(served, preload, clean, confined_only=True)
    if server is not None and not _confines(str(server.path)):
        server.stop()
        return None
    return server


def _confines(server: str) -> bool:
    """Whether a child of ``server`` builds its sandbox here and finds the course in it (a
    trial that imports what a kernel and the verifier import)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-trial-") as folder:
        trial = SandboxedProcess(
            [sys.executable, "-c", TRIAL_CODE],
            writable=[Path(folder)],
            cwd=folder,
            fork_server=server,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            return trial.forked and trial.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            return False
        finally:
            trial.close()


def enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether this grading process must sandbox the student's code."""
    return (os.environ if env is None else env).get(SANDBOX_VARIABLE) == "1"


class SandboxedProcess:
    """``argv`` running in a sandbox with a cgroup of its own: a child of the sandbox fork
    server when one runs and serves ``argv`` (``python -m`` a served module, or ``-c``), else
    a new ``bwrap`` process. The part of ``subprocess.Popen``'s interface the grader uses
    (pid, returncode, poll, wait, send_signal, terminate, kill), and ``forked``.

    ``close()`` it once done: it ends what is left, removes the cgroup and, for a root grader,
    unmounts each writable folder's size-capped tmpfs (``quota.py``; read what is there
    first). Streams: files, descriptors or DEVNULL; ``cwd`` is inside; ``fork_server``: the
    sandbox fork server's socket (default: the environment's ``SANDBOX_FORKSERVER_VARIABLE``).
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
        fork_server: str | None = None,
        **streams,
    ):
        self.args = list(argv)
        self.fork_server = fork_server or os.environ.get(SANDBOX_FORKSERVER_VARIABLE)
        self.cgroup = Cgroup(limits)
        self.capped: list[Path] = []  # its host folders, size-capped for its life
        try:
            # A root grader's sandboxes run as nobody outside too (confine.py, outside.py).
            owner = (SANDBOX_UID, SANDBOX_UID) if os.geteuid() == 0 else None
            self.capped = [Path(f) for f in writable if quota.cap(Path(f), limits.folder_bytes, owner)]
            self.process = self._forked(writable, cwd, env, extra_env, limits, streams)
            self.forked = self.process is not None
            if self.process is None:
                filter_fd = seccomp.program_file()
                try:
                    inner = command(
                        argv,
                        writable=writable,
                        env=env,
                        extra_env=extra_env,
                        cwd=cwd,
                        limits=limits,
                        rlimit_memory=not self.cgroup.usable,
                        seccomp_fd=filter_fd,
                    )
                    self.process = subprocess.Popen(
                        self.cgroup.wrap(inner),
                        env={"PATH": "/usr/bin:/bin"},
                        start_new_session=True,
                        pass_fds=(filter_fd,),
                        **streams,
                    )
                finally:
                    os.close(filter_fd)
        except BaseException:
            self.cgroup.remove()
            self._uncap()
            raise

    def _forked(self, writable, cwd, env, extra_env, limits, streams):
        """A confined child of the sandbox fork server; None where there is none to ask."""
        server = self.fork_server
        if not server or forkserver.python_module(self.args) is None:
            return None
        spec = confinement(writable=writable, cwd=cwd, limits=limits, cgroup=self.cgroup)
        environment = sandbox_environment(os.environ if env is None else env, extra_env)
        try:
            return forkserver.spawn(
                self.args, cwd=cwd, env=environment, server_path=server, sandbox=spec, **streams
            )
        except OSError:  # the server is gone or does not serve this command: bubblewrap does
            return None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    @property
    def stdin(self):
        return self.process.stdin

    @property
    def stdout(self):
        return self.process.stdout

    @property
    def stderr(self):
        return self.process.stderr

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        return self.process.wait(timeout=timeout)

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def terminate(self) -> None:
        self.process.terminate()

    def kill(self) -> None:
        self.process.kill()

    def close(self) -> None:
        # bwrap, or the fork's supervisor, and the sandbox's init: its PID namespace ends with it.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, 9)
        self.cgroup.kill()
        if self.returncode is None:
            self.wait()  # reaped first: a zombie still holds its cgroup
        self.cgroup.remove()
        self._uncap()

    def _uncap(self) -> None:
        """The host folders' tmpfs unmounted (and what the sandbox wrote there with them)."""
        while self.capped:
            quota.uncap(self.capped.pop())
