"""The kernel manager nbgrader uses while grading: kernels forked by the fork server.

nbgrader's ``Execute`` (nbclient) starts one kernel per notebook with a
``kernel_manager_class``; this one launches it through ``forkserver.spawn``, so that the
kernel starts with torch, matplotlib and the course's package already imported (~0.1 s
instead of ~2.5 s). Without a running fork server it is jupyter_client's own manager.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import uuid

from jupyter_client.manager import AsyncKernelManager
from jupyter_client.provisioning import LocalProvisioner

from ..forkserver import SOCKET_VARIABLE, python_module, spawn


class ForkedKernelProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernel process comes from the fork server when it can."""

    async def launch_kernel(self, cmd: list[str], **kwargs):
        if not os.environ.get(SOCKET_VARIABLE) or python_module(cmd) is None:
            return await super().launch_kernel(cmd, **kwargs)
        env = dict(kwargs.get("env") or os.environ)
        env.pop(SOCKET_VARIABLE, None)  # the student's code has no business with the server
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's own launcher sets it
        self.process = spawn(
            cmd,
            cwd=kwargs.get("cwd"),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=kwargs.get("stdout"),
            stderr=kwargs.get("stderr"),
        )
        self.pid = self.pgid = self.process.pid  # a session of its own: signals go to its group
        self.cwd = kwargs.get("cwd", pathlib.Path.cwd())
        return self.connection_info


class ForkedKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` with ``ForkedKernelProvisioner`` for the kernelspec's own argv."""

    async def _async_pre_start_kernel(self, **kw):
        if self.provisioner is None:
            self.kernel_id = self.kernel_id or kw.pop("kernel_id", str(uuid.uuid4()))
            self.provisioner = ForkedKernelProvisioner(
                kernel_id=self.kernel_id, kernel_spec=self.kernel_spec, parent=self
            )
        return await super()._async_pre_start_kernel(**kw)
