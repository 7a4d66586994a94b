"""A throwaway PostgreSQL server for the tests (a helper module, not a test module).

The server is the Debian ``postgresql`` package's own binaries (``make system-packages``
installs it), found with a glob in /usr/lib/postgresql/<version>/bin: ``initdb`` into a new
temporary folder, ``pg_ctl start`` with no TCP listener at all (``listen_addresses=''``) and its
unix socket in that folder, a database created, and at the end the server stopped and the
folder removed. PostgreSQL refuses to run as root: as root, every one of its programs runs as
``nobody`` (``setpriv``), which owns the folder.

``tests/conftest.py`` wraps ``Server`` in the session fixture ``postgres_url``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

BINARIES_GLOB = "/usr/lib/postgresql/*/bin"
USER = "grader"  # the server's superuser (trusted on the unix socket, which only we can reach)
DATABASE = "backprop_ninja"
UNPRIVILEGED = "nobody"


def binaries_folder(pattern: str = BINARIES_GLOB) -> Path | None:
    """The newest PostgreSQL's bin/ folder that has initdb and pg_ctl, or None."""
    folders = [
        Path(p) for p in glob.glob(pattern) if (Path(p) / "initdb").exists() and (Path(p) / "pg_ctl").exists()
    ]

    def version(folder: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)

    return max(folders, key=version) if folders else None


class Server:
    """One PostgreSQL server in a folder of its own; ``url`` is what BACKPROP_NINJA_DB_URL takes."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="pg-"))  # short: a socket path has ~100 bytes
        self.data = self.folder / "data"
        self.log = self.folder / "server.log"
        self.running = False
        self.account = pwd.getpwnam(UNPRIVILEGED) if os.geteuid() == 0 else None
        if self.account is not None:
            os.chown(self.folder, self.account.pw_uid, self.account.pw_gid)

    @property
    def url(self) -> str:
        """The plain libpq form a person writes (the course adds the driver itself)."""
        return f"postgresql://{USER}@/{DATABASE}?host={self.folder}"

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess:
        command = [str(self.bin_dir / program), *args]
        if self.account is not None:
            command = [
                "setpriv",
                f"--reuid={self.account.pw_uid}",
                f"--regid={self.account.pw_gid}",
                "--clear-groups",
                *command,
            ]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C.UTF-8", "HOME": str(self.folder)}
        process = subprocess.run(
            command, cwd=self.folder, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if process.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"{program} failed ({process.returncode}):\n{process.stdout}{process.stderr}\n{log}"
            )
        return process

    def start(self) -> Server:
        self._run("initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses='' -c unix_socket_directories='{self.folder}' -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l", str(self.log), "-o", options)
        self.running = True
        self._run("createdb", "-h", str(self.folder), "-U", USER, DATABASE)
        return self

    def stop(self) -> None:
        try:
            if self.running:
                self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))
                self.running = False
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def psql(self, sql: str) -> str:
        """Run SQL with the server's own client; its output, tab-separated, without headers."""
        return self._run(
            "psql", "-h", str(self.folder), "-U", USER, "-d", DATABASE, "-XAtF", "\t", "-c", sql
        ).stdout
