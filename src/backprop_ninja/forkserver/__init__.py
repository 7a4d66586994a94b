"""A fork server: Python processes that start in milliseconds, with heavy modules imported.

Plumbing only: this module imports nothing but the standard library and knows nothing of
what it serves. Its caller (``start``) names the modules to import once (``preload``) and
the entry points to serve (``python -m M`` → "package.module:function"); asked to run
``python -m M ARGS``, the server forks a child that behaves as that command would: a session
of its own (so that killing its group kills what it started), the requested working
directory, environment and standard streams, ``sys.argv``, and its exit code.

For a module it does not serve, or when no server is given (``server_path=None``), ``spawn``
falls back to ``subprocess.Popen`` with the same arguments. Children are as isolated from each other as
separate processes are: a fork copies the server's memory, and nothing a child does reaches
the server or the other children. The server never runs a tensor operation, so no thread
pool exists when it forks.

A server started with ``-c`` among its entry points also runs ``python -c CODE``. A request
may carry a ``sandbox`` spec: the child then confines itself before it runs anything
(``confine.py``: cgroups, new namespaces, a read-only root, no capabilities), and a request
that asks for a sandbox is never run without one — neither by a server that cannot confine
on this system nor by the ``Popen`` fallback. A child starts with no descriptor of the
server's open beyond its three standard streams.

A child also watches the process that asked for it (a kernel its worker, a worker the
pipeline): when that process ends, however it ends, the child kills its own process group.
So stopping a worker still stops its kernel, although the kernel is not the worker's child.

Protocol: a Unix socket in a private directory (mode 0700), one JSON request per connection;
``spawn`` passes the child's stdin, stdout and stderr along as file descriptors. Requests
are taken from the server's own user only; a student's kernel (same user, environment
without the socket's path) could find it, but could only start what it can start anyway.
"""

from __future__ import annotations

from .client import STARTUP_TIMEOUT, ForkedProcess, ForkServer, python_module, send_request, spawn, start
from .server import ENTRY_POINTS, Server, serve

__all__ = [
    "ENTRY_POINTS",
    "STARTUP_TIMEOUT",
    "ForkServer",
    "ForkedProcess",
    "Server",
    "python_module",
    "send_request",
    "serve",
    "spawn",
    "start",
]
