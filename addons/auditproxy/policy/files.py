"""Reading a configuration file without ever waiting on it. Pure: `os` calls only.

`open()` of a FIFO waits for a writer, and a read of a character device may never end: a
policy or key path that someone turned into either would freeze whoever reads it. So a
file is opened with `O_NONBLOCK` (which returns at once whatever the path is), checked with
`fstat` on the descriptor actually opened (no race with a rename), refused unless it is a
regular file no larger than the limit, and only then read. The proxy calls this from a
worker thread; `auditproxy check` and start-up call it directly.
"""

from __future__ import annotations

import os
import stat

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class FileRefused(OSError):
    """The path exists but is no regular file, or is too large: never read."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.strerror = message  # what callers print, as for any other OSError


def describe_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def check_regular(st: os.stat_result, path: str, max_bytes: int | None = None) -> None:
    """Raise FileRefused unless `st` is a regular file of at most `max_bytes`."""
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(f"{path} is {describe_kind(st.st_mode)}, not a regular file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise FileRefused(f"{path} is {st.st_size} bytes, over the limit of {max_bytes} bytes")


def read_regular_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of a regular file of at most `max_bytes`, read without blocking on opens.

    Raises FileRefused (an OSError, with `strerror` set) for anything else, and the usual
    OSError (FileNotFoundError, PermissionError...) when the file cannot be opened.
    """
    return read_regular(path, max_bytes)[0]


def read_regular(
    path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[bytes, os.stat_result]:
    """`read_regular_file`, with the `fstat` of what was read (its mode, for key files)."""
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    fd = os.open(name, flags)
    try:
        st = os.fstat(fd)
        check_regular(st, name, max_bytes)
        chunks: list[bytes] = []
        total = 0
        while True:  # a file growing while it is read is still held to the limit
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise FileRefused(f"{name} grew over the limit of {max_bytes} bytes")
        return b"".join(chunks), st
    finally:
        os.close(fd)


def regular_or_absent(path: str | os.PathLike[str]) -> None:
    """Raise FileRefused if `path` exists and is not a regular file (it is never opened)."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        return
    check_regular(st, name)
