"""Reading what a sandbox made, from the trusted side, without trusting it.

A sandbox may write into its folder anything a process can make: a FIFO (opening it for
reading blocks until someone writes), a link to /dev/zero or to a file of the grader's, a
device, a file of gigabytes. The grader therefore never opens such a file by a plain path:
it opens it relative to the folder's descriptor (taken before the sandbox started), with
``O_NOFOLLOW | O_NONBLOCK``, checks it is a regular file, and reads at most a fixed size.
Anything else is an ``UntrustedFile`` error, which costs that notebook and never hangs.
"""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["UntrustedFile", "open_folder", "read_untrusted"]

OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


class UntrustedFile(OSError):
    """A file a sandbox made is not what the grader expects (kind or size); the message says
    how, in a line fit for the student's feedback."""


def open_folder(path: str | os.PathLike) -> int:
    """A descriptor of the folder ``path`` (no link followed), for ``read_untrusted``."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_untrusted(folder: int, name: str, limit: int) -> bytes:
    """The bytes of the regular file ``name`` in the folder open as ``folder``, at most
    ``limit`` of them; ``UntrustedFile`` if it is anything else or larger, ``FileNotFoundError``
    if it is not there."""
    try:
        fd = os.open(name, OPEN_FLAGS, dir_fd=folder)
    except OSError as error:
        if error.errno == errno.ELOOP:  # the last component is a link, which O_NOFOLLOW refuses
            raise UntrustedFile(f"{name} is a symbolic link, not a file") from None
        if error.errno == errno.ENXIO:  # a socket (or a device without a driver) cannot be opened
            raise UntrustedFile(f"{name} is a socket or a device, not a file") from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedFile(f"{name} is {_kind(info.st_mode)}, not a file")
        if info.st_size > limit:
            raise UntrustedFile(f"{name} is larger than {limit} bytes")
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:  # it grew while we read
            raise UntrustedFile(f"{name} is larger than {limit} bytes")
        return data
    finally:
        os.close(fd)
