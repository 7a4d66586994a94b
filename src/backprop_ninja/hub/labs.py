"""Each person's Lab on the hub: its Jupyter config by role, and its cgroup.

A student's Lab is the student Lab of ``backprop-ninja lab`` (``student/lab.py``: Validate, and
here the Assignment List, nothing of the instructor's); an instructor's Lab keeps nbgrader's
tools (the Formgrader) and loads the course's grader/nbgrader_config.py. The config folder is
written by the hub (root) into its state folder, one per user, and is not writable by the
user; JupyterLab's own settings stay in the user's home.

The limits: JupyterHub's LocalProcessSpawner accepts ``mem_limit``/``cpu_limit`` but does not
enforce them. Here each Lab joins a cgroup of its own before it starts (cgroup v1's memory and
cpu hierarchies, or v2), so the Lab and every kernel it starts share that memory and CPU.
Where no cgroup is writable the Lab runs unlimited and the hub's log says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..course import ASSIGNMENT, REPO_ROOT
from ..student.lab import LAB_PLUGIN, NEWS_PLUGIN, SERVER_EXTENSION, student_config

STUDENT, INSTRUCTOR = "student", "instructor"
CONFIG_FILE = REPO_ROOT / "grader" / "nbgrader_config.py"
MENU_PLUGIN = LAB_PLUGIN.format("menu")
CGROUP_V1 = {"memory": Path("/sys/fs/cgroup/memory"), "cpu": Path("/sys/fs/cgroup/cpu")}
CGROUP_V2 = Path("/sys/fs/cgroup")
CGROUP_PARENT = "backprop_ninja_hub"
CPU_PERIOD_US = 100_000


def lab_files(role: str, exchange: Path) -> dict[str, str]:
    """The files of a Lab's Jupyter config folder, by relative path → text, for ``role``."""
    files = {name: json.dumps(content, indent=2) + "\n" for name, content in student_config(exchange).items()}
    nbgrader = {"CourseDirectory": {"course_id": ASSIGNMENT}, "Exchange": {"root": str(exchange)}}
    files["nbgrader_config.json"] = json.dumps(nbgrader, indent=2) + "\n"
    # The Nbgrader menu is how a student opens the Assignment List; with the instructor's
    # plugins switched off it holds nothing else (their commands do not exist).
    page = student_config(exchange)["labconfig/page_config.json"]
    page["disabledExtensions"].pop(MENU_PLUGIN, None)
    files["labconfig/page_config.json"] = json.dumps(page, indent=2) + "\n"
    # jupyter_core marks a config folder it has migrated from IPython's by this file; present,
    # it does not try (the folder is not the user's to write).
    files["migrated"] = ""
    if role == INSTRUCTOR:
        # nbgrader's tools as nbgrader installs them, on the course's own configuration.
        server = {SERVER_EXTENSION.format(n): True for n in ("formgrader", "assignment_list", "course_list")}
        server[SERVER_EXTENSION.format("validate_assignment")] = True
        quiet = student_config(exchange)["jupyter_server_config.json"]["LabApp"]  # no news pop-up
        instructor = {"ServerApp": {"jpserver_extensions": server}, "LabApp": quiet}
        files["jupyter_server_config.json"] = json.dumps(instructor, indent=2) + "\n"
        files["labconfig/page_config.json"] = json.dumps({"disabledExtensions": {NEWS_PLUGIN: True}}) + "\n"
        files["nbgrader_config.py"] = (
            "# The course's configuration, then the hub's exchange (written by the hub).\n"
            "c = get_config()  # noqa: F821\n"
            f"load_subconfig({str(CONFIG_FILE)!r})  # noqa: F821\n"
            f"c.Exchange.root = {str(exchange)!r}\n"
        )
    return files


def write_lab_config(folder: Path, role: str, exchange: Path) -> Path:
    """Write the config for ``role`` into ``folder`` (replaced whole, readable, not writable by
    the user: written by root, mode 0755/0644)."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o755)
    for old in sorted(folder.rglob("*"), reverse=True):
        old.unlink() if old.is_file() or old.is_symlink() else old.rmdir()
    for relative, text in lab_files(role, exchange).items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.write_text(text)
        path.chmod(0o644)
    return folder


def lab_environment(user_home: str, config_folder: Path) -> dict[str, str]:
    """What a Lab's environment adds: its config folder; JupyterLab's settings in the home."""
    return {
        "JUPYTER_CONFIG_DIR": str(config_folder),
        "JUPYTERLAB_SETTINGS_DIR": f"{user_home}/.jupyter/lab/user-settings",
        "JUPYTERLAB_WORKSPACES_DIR": f"{user_home}/.jupyter/lab/workspaces",
    }


def create_cgroup(user: str, memory_bytes: int | None, cpus: float | None) -> list[Path]:
    """A cgroup for ``user``'s Lab with these limits (``None``: no limit); its folders, or
    ``[]`` where the machine gives no writable cgroup."""
    folders: list[Path] = []
    try:
        if all(root.is_dir() for root in CGROUP_V1.values()):
            memory = _make(CGROUP_V1["memory"], user, folders)
            cpu = _make(CGROUP_V1["cpu"], user, folders)
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes or -1))
            (cpu / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
            (cpu / "cpu.cfs_quota_us").write_text(str(int(cpus * CPU_PERIOD_US) if cpus else -1))
        elif (CGROUP_V2 / "cgroup.controllers").exists():
            parent = CGROUP_V2 / CGROUP_PARENT
            parent.mkdir(exist_ok=True)
            (parent / "cgroup.subtree_control").write_text("+memory +cpu")
            folder = _make(CGROUP_V2, user, folders)
            (folder / "memory.max").write_text(str(memory_bytes or "max"))
            (folder / "cpu.max").write_text(f"{int(cpus * CPU_PERIOD_US) if cpus else 'max'} {CPU_PERIOD_US}")
    except OSError:
        return []
    return folders


def _make(root: Path, user: str, folders: list[Path]) -> Path:
    folder = root / CGROUP_PARENT / user
    folder.mkdir(parents=True, exist_ok=True)
    folders.append(folder)
    return folder


def join_cgroup(folders: list[Path]) -> None:
    """Move the calling process into the cgroup (run in the Lab's process before it starts)."""
    for folder in folders:
        (folder / "cgroup.procs").write_text(str(os.getpid()))


def memory_used(folders: list[Path]) -> int | None:
    """Bytes of memory the cgroup's processes use now (the bench's figure), if known."""
    for folder in folders:
        for name in ("memory.usage_in_bytes", "memory.current"):
            if (folder / name).exists():
                return int((folder / name).read_text())
    return None


def limits_of(folders: list[Path]) -> dict[str, str]:
    """The limits a cgroup enforces, as the kernel reports them (for tests and the log)."""
    found = {}
    for folder in folders:
        for name in ("memory.limit_in_bytes", "cpu.cfs_quota_us", "memory.max", "cpu.max"):
            if (folder / name).exists():
                found[name] = (folder / name).read_text().strip()
    return found
