"""Bounded reads of user-named files: a config, a config.json, a plan JSON.

`open().read()` on `/dev/zero` never ends, on a FIFO it blocks until a writer comes, and on a
40 GB file it exhausts memory. A validator that runs on whatever lands in a repository must
refuse those at once, so every read of a file a user names goes through `read_bounded`: only
regular files (after following symlinks), opened non-blocking, at most `limit` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class ReadRefused(OSError):
    """A file that is not read: not a regular file, or larger than the limit (`strerror` says why)."""

    too_large = False


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file at `path`; ReadRefused past `limit` or for anything else.

    Other failures are the OSError of the system call (missing file, permissions, a name too long).
    """
    path = Path(path)
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise ReadRefused(0, f"is {_kind(mode)}, not a regular file; loraplan reads only files")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # replaced between the two calls
            raise ReadRefused(0, f"is {_kind(mode)}, not a regular file; loraplan reads only files")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        exc = ReadRefused(0, f"is larger than {limit:,} bytes")
        exc.too_large = True
        raise exc
    return b"".join(chunks)
