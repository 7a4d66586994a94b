"""CourseSpawner: JupyterHub's LocalProcessSpawner (each Lab a process of its user's Unix
account) with the course's Lab by role and a cgroup per Lab (``labs.py``)."""

from __future__ import annotations

import grp
import pwd
from pathlib import Path

from jupyterhub.spawner import LocalProcessSpawner, set_user_setuid
from traitlets import Unicode

from .labs import INSTRUCTOR, STUDENT, create_cgroup, join_cgroup, lab_environment, write_lab_config


class CourseSpawner(LocalProcessSpawner):
    """Starts the Lab as the user, with the config of their role, inside their cgroup."""

    exchange_root = Unicode(help="nbgrader's exchange folder").tag(config=True)
    config_root = Unicode(help="where the hub writes each user's Jupyter config (root-owned)").tag(
        config=True
    )
    instructors_group = Unicode("backprop-ninja-instructors", help="Unix group of instructors").tag(
        config=True
    )
    course_root = Unicode(help="the course's checkout: an instructor's Lab opens there").tag(config=True)

    def role(self) -> str:
        """``instructor`` for members of ``instructors_group``, else ``student``."""
        try:
            members = grp.getgrnam(self.instructors_group).gr_mem
        except KeyError:
            return STUDENT
        return INSTRUCTOR if self.user.name in members else STUDENT

    def get_env(self) -> dict:
        env = super().get_env()
        folder = Path(self.config_root, self.user.name)
        write_lab_config(folder, self.role(), Path(self.exchange_root))
        env.update(lab_environment(pwd.getpwnam(self.user.name).pw_dir, folder))
        if self.role() == INSTRUCTOR and self.course_root:
            env["JUPYTERHUB_ROOT_DIR"] = self.course_root  # the Formgrader wants the course under the root
        return env

    def make_preexec_fn(self, name):
        """Join the Lab's cgroup (as root, in the new process), then become the user."""
        memory = int(self.mem_limit) if self.mem_limit else None
        folders = create_cgroup(name, memory, self.cpu_limit)
        if folders:
            self.log.info("Lab of %s: memory %s bytes, %s CPUs (cgroup)", name, memory, self.cpu_limit)
        else:
            self.log.warning("Lab of %s runs without limits: no writable cgroup on this machine", name)
        become_user = set_user_setuid(name)

        def preexec() -> None:
            join_cgroup(folders)
            become_user()

        return preexec
