"""The student's JupyterLab (``backprop-ninja lab``, ``make lab``): nbgrader's Validate button
and nothing of the instructor's.

nbgrader installs four server extensions and six JupyterLab plugins, and enables them all.
A student needs only Validate; Formgrader, Create Assignment and Course List error out or let
a student break the notebook's grade ids, and Assignment List works only where an exchange is
configured. The Lab is started with a Jupyter config folder of its own (``JUPYTER_CONFIG_DIR``)
that switches off the rest; it also holds JupyterLab's settings, so they persist. Validate's
button stays nbgrader's, but the server answers it with the course's self-check
(``validation.py``, in place of nbgrader's validate_assignment handler): the count of passing
tests and the points, then one line per failing test.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from ..course import COMMAND, EXCHANGE_VARIABLE

SERVER_EXTENSION = "nbgrader.server_extensions.{}"
LAB_PLUGIN = "@jupyter/nbgrader:{}"
# Never in a student's Lab. (The nbgrader menu only opens the instructor's panels.)
INSTRUCTOR_SERVER_EXTENSIONS = ("formgrader", "course_list")
# nbgrader's Validate handler, replaced by the course's (the same URLs, check's lines).
NBGRADER_VALIDATE_EXTENSION = "validate_assignment"
VALIDATE_EXTENSION = "backprop_ninja.student.validation"
INSTRUCTOR_LAB_PLUGINS = ("formgrader", "course-list", "create-assignment", "menu")
# Only where nbgrader's exchange is configured: fetching and submitting assignments.
EXCHANGE_SERVER_EXTENSION = "assignment_list"
EXCHANGE_LAB_PLUGIN = "assignment-list"
# JupyterLab's pop-up asking to fetch Jupyter's news: not the course's business.
NEWS_PLUGIN = "@jupyterlab/apputils-extension:announcements"
# nbgrader's own default exchange folder (a JupyterHub course sets it up).
DEFAULT_EXCHANGE = Path("/srv/nbgrader/exchange")


def exchange_root(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The exchange folder, if one is configured: ``BACKPROP_NINJA_EXCHANGE``, else nbgrader's
    default folder when it exists. ``None``: hand in through the LMS instead."""
    configured = environ.get(EXCHANGE_VARIABLE)
    if configured:
        return Path(configured)
    return DEFAULT_EXCHANGE if DEFAULT_EXCHANGE.is_dir() else None


def student_config(exchange: Path | None) -> dict[str, dict]:
    """The files of the student's Jupyter config folder, by relative path → JSON content."""
    with_exchange = exchange is not None
    server = {SERVER_EXTENSION.format(name): False for name in INSTRUCTOR_SERVER_EXTENSIONS}
    server[SERVER_EXTENSION.format(EXCHANGE_SERVER_EXTENSION)] = with_exchange
    server[SERVER_EXTENSION.format(NBGRADER_VALIDATE_EXTENSION)] = False
    server[VALIDATE_EXTENSION] = True
    disabled = {LAB_PLUGIN.format(name): True for name in INSTRUCTOR_LAB_PLUGINS}
    if not with_exchange:
        disabled[LAB_PLUGIN.format(EXCHANGE_LAB_PLUGIN)] = True
    disabled[NEWS_PLUGIN] = True
    files: dict[str, dict] = {
        "jupyter_server_config.json": {
            "ServerApp": {"jpserver_extensions": server},
            # No pop-up asking to fetch Jupyter's news, no update checks: nothing to do with the course.
            "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
        },
        "labconfig/page_config.json": {"disabledExtensions": disabled},
    }
    if with_exchange:
        files["nbgrader_config.json"] = {"Exchange": {"root": str(exchange)}}
    return files


def config_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The student Lab's Jupyter config folder (``$XDG_CONFIG_HOME/backprop-ninja/jupyter``)."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / COMMAND / "jupyter"


def write_config(folder: Path, exchange: Path | None) -> Path:
    """Write the student configuration into ``folder`` (kept: JupyterLab's settings live there)."""
    for relative, content in student_config(exchange).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content, indent=2) + "\n")
    return folder


def server_covering(folder: Path, servers: Iterable[Mapping]) -> Mapping | None:
    """The first running Jupyter server whose root folder is ``folder`` or contains it."""
    folder = Path(folder).resolve()
    for server in servers:
        root = Path(server.get("root_dir") or server.get("notebook_dir") or "/nonexistent").resolve()
        if root == folder or root in folder.parents:
            return server
    return None


def server_url(server: Mapping, folder: Path) -> str:
    """The URL that opens ``folder`` in the running ``server`` (with its token, if any)."""
    root = Path(server.get("root_dir") or server.get("notebook_dir") or folder).resolve()
    relative = Path(folder).resolve().relative_to(root).as_posix()
    url = str(server["url"]).rstrip("/") + "/lab/tree/" + ("" if relative == "." else relative)
    token = server.get("token")
    return f"{url}?token={token}" if token else url


def running_servers() -> list[dict]:
    """Jupyter servers of this user that are running now (jupyter_server's own list)."""
    from jupyter_server.serverapp import list_running_servers

    return list(list_running_servers())


def lab_command(folder: Path, extra: list[str], *, as_root: bool) -> list[str]:
    """The JupyterLab command line for ``folder``; ``--allow-root`` when running as root."""
    command = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={Path(folder).resolve()}"]
    if as_root:
        command.append("--allow-root")
    return command + list(extra)


def lab_environment(folder_config: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The Lab's environment: the student config folder; plots inline, no GUI backend."""
    return {**environ, "JUPYTER_CONFIG_DIR": str(folder_config)}
