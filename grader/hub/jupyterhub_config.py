"""JupyterHub for the Backprop Ninja course (`make hub`; grader/README.md, "Teach a class on a hub").

Started by `python -m backprop_ninja.hub serve`, as root, from the state folder, with these
variables set: HUB_PORT, BACKPROP_NINJA_HUB_STATE, BACKPROP_NINJA_EXCHANGE and the two
internal ports. Read top to bottom: where it listens, who may log in, what each person's
Lab is, the limits, the idle culler.
"""

import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 (provided by traitlets when JupyterHub loads this file)

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
STATE = Path(os.environ["BACKPROP_NINJA_HUB_STATE"])
EXCHANGE = os.environ["BACKPROP_NINJA_EXCHANGE"]
VENV_BIN = Path(sys.executable).parent

# ---- where it listens: loopback only (put a TLS reverse proxy in front for a real class)
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("HUB_PORT", "8000"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["BACKPROP_NINJA_HUB_API_PORT"])
# configurable-http-proxy from npm, installed into grader/hub/node_modules by `make setup`.
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ['BACKPROP_NINJA_PROXY_API_PORT']}"
c.ConfigurableHTTPProxy.auth_token = (STATE / "proxy_auth_token").read_text().strip()
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")

# ---- state: one folder (grader/hub/state/, git-ignored), reused by the next `make hub`
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.JupyterHub.cleanup_servers = True  # Ctrl-C stops every Lab too

# ---- who may log in: real Unix accounts (PAM), members of the course's two groups
# (`make hub-users ROSTER=roster.csv` creates them); instructors are the hub's admins.
c.JupyterHub.authenticator_class = "pam"
c.PAMAuthenticator.allowed_groups = {"backprop-ninja-students", "backprop-ninja-instructors"}
c.PAMAuthenticator.admin_groups = {"backprop-ninja-instructors"}
c.PAMAuthenticator.open_sessions = False  # no systemd-logind session in a container

# ---- each person's Lab: a process of their own account (so no one reads another's home),
# the student Lab for students (Validate, Assignment List), the Formgrader for instructors,
# all on one nbgrader exchange (backprop_ninja.hub.labs).
c.JupyterHub.spawner_class = "backprop_ninja.hub.spawner.CourseSpawner"
c.CourseSpawner.exchange_root = EXCHANGE
c.CourseSpawner.config_root = str(STATE / "labs")
c.CourseSpawner.course_root = str(REPO)
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {"PATH": f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"}
c.Spawner.http_timeout = 120  # a Lab's first start on a busy machine
c.Spawner.start_timeout = 120

# ---- limits per Lab, enforced by a cgroup per Lab (the Lab and all its kernels together).
# 30 students × 2 GiB would be 60 GiB if all trained at once; idle Labs use ~0.15 GiB and are
# culled, and notebook 4's training peaks near 1 GiB (grader/README.md's figures).
c.Spawner.mem_limit = os.environ.get("BACKPROP_NINJA_HUB_MEM_LIMIT", "2G")
c.Spawner.cpu_limit = float(os.environ.get("BACKPROP_NINJA_HUB_CPU_LIMIT", "1"))

# ---- idle Labs are stopped (jupyterhub-idle-culler, a hub service): an hour without activity
IDLE_SECONDS = int(os.environ.get("BACKPROP_NINJA_HUB_IDLE_TIMEOUT", "3600"))
c.JupyterHub.load_roles = [
    {
        "name": "idle-culler",
        "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        "services": ["idle-culler"],
    }
]
c.JupyterHub.services = [
    {
        "name": "idle-culler",
        "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_SECONDS}"],
    }
]
