"""Noticing that a file changed, without acting on a half-written one. Pure.

Editors and config management write files in several ways (in place, truncate then write,
write a temporary file and rename it over). A change is reported only once the file's
signature (inode, size, modification time) has stayed the same for one poll, so a reload
reads the finished file. A Kubernetes ConfigMap update (an atomic symlink swap) is
followed because `stat` follows the link.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

Signature = tuple[int, int, int, int] | None  # (dev, ino, size, mtime_ns); None: missing


def signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass
class FileWatch:
    path: str
    current: Signature = None  # the signature last acted on
    _pending: Signature = None
    _has_pending: bool = False

    def __post_init__(self) -> None:
        self.current = signature(self.path)

    def poll(self) -> bool:
        """True once when the file has changed and then held still for a poll."""
        now = signature(self.path)
        if now == self.current:
            self._has_pending = False
            return False
        if self._has_pending and now == self._pending:
            self.current, self._has_pending = now, False
            return True
        self._pending, self._has_pending = now, True
        return False

    def force(self) -> None:
        """Treat the file as changed at the next poll (SIGHUP: re-read now)."""
        self.current = ("forced",)  # type: ignore[assignment]
        self._pending, self._has_pending = signature(self.path), True

    def missing(self) -> bool:
        return self.current is None
