"""The access log's file: one `write(2)` per line, following logrotate, surviving full disks.

Counts every record once, `written` or `dropped`, and hands each dropped line to
`on_dropped` (the hash chain declares them in a later record): nothing is lost silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

Outcome = Callable[[str], None]  # called with "written" or "dropped" for every record


class LogSink:
    """Appends lines to a file (or stdout for "-"), surviving rotation and full disks.

    - Rotation: `maintain()` (every second) notices the file was moved or removed and
      opens a new one. A file *removed* rather than moved would take with it the lines
      written since the last check, so those are kept until each check and written again
      to the new file.
    - A disk that refuses writes: records wait in a bounded backlog, written in order when
      it takes them again; beyond the bound the oldest are dropped. A write that fails
      half-way is cut back, so the log never holds a broken line.
    - Every record is counted once, `written` or `dropped`; a failure is reported through
      `on_fault` (the add-on counts it in `auditproxy_errors_total{stage="log"}`), and each
      line given up is handed to `on_dropped`.
    - A file that does not end with a newline (a process stopped half-way through a
      line) gets one before the first new line, so no record is glued to a broken one.

    Not thread-safe: the proxy calls it from its one event loop.
    """

    RECENT_LIMIT = 100_000  # lines kept between checks, for a removed file

    def __init__(
        self,
        path: str,
        on_outcome: Outcome,
        backlog_limit: int = 10_000,
        on_fault: Callable[[str], None] | None = None,
        on_dropped: Callable[[bytes], None] | None = None,
    ) -> None:
        self.path = path
        self._on_outcome = on_outcome
        self._on_fault = on_fault
        self._on_dropped = on_dropped
        self._backlog: deque[bytes] = deque()
        self._backlog_limit = backlog_limit
        self._recent: deque[bytes] = deque(maxlen=self.RECENT_LIMIT)
        self._replayed = 0  # lines at the backlog's head that were counted already
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._broken_line = False  # a cut line could not be undone: start on a new line
        self._failing_since: float | None = None
        self._open()

    @property
    def is_stdout(self) -> bool:
        return self.path == "-"

    @property
    def healthy(self) -> bool:
        return self._failing_since is None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    @property
    def backlog_limit(self) -> int:
        return self._backlog_limit

    def _open(self) -> None:
        if self.is_stdout:
            self._fd = 1
            return
        # O_NONBLOCK: opening a FIFO put at the log's path must not wait for a reader (it
        # fails with ENXIO instead, and records wait in the backlog); on files it is moot.
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK
        fd = os.open(self.path, flags, 0o640)
        st = os.fstat(fd)
        self._close_fd()
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)
        if _ends_mid_line(self.path, st):
            logger.warning("access log %s ends mid-line; a new line begins", self.path)
            self._broken_line = True

    def _close_fd(self) -> None:
        if self._fd is not None and not self.is_stdout:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _rotated(self) -> bool:
        if self.is_stdout:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def _removed(self) -> bool:
        """Whether the open file was deleted (no name left), not moved aside."""
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return False

    def reopen(self) -> None:
        """Reopen the file if logrotate (or anyone) moved or removed it."""
        if self.is_stdout:
            self._recent.clear()
            return
        if self._fd is not None and not self._rotated():
            self._recent.clear()  # everything since the last check is safely in the file
            return
        lost = list(self._recent) if self._removed() else []
        try:
            self._open()
        except OSError as e:
            self._failed(e)
            return
        self._recent.clear()
        logger.info("access log reopened: %s", self.path)
        if lost:
            logger.warning(
                "access log %s was removed, not rotated: writing again the %d records "
                "written to it since the last check",
                self.path,
                len(lost),
            )
            self._backlog.extendleft(reversed(lost))  # before anything still waiting
            self._replayed += len(lost)

    def maintain(self) -> None:
        """Periodic upkeep: follow rotation, then retry the backlog."""
        self.reopen()
        self._flush_backlog()

    def write(self, line: str) -> None:
        self.write_bytes(line.encode("utf-8"))

    def write_bytes(self, line: bytes) -> None:
        """One line (without its newline), as bytes."""
        data = line + b"\n"
        if self._backlog:
            self._flush_backlog()
        if self._backlog:
            self._enqueue(data)
            return
        try:
            self._write(data)
        except OSError as e:
            self._failed(e)
            self._enqueue(data)
        else:
            self._on_outcome("written")

    # structlog's logger interface: the bound logger hands the rendered line to `info`.
    info = write

    def lost(self) -> None:
        """A record that never reached the sink (its rendering failed): counted dropped."""
        self._on_outcome("dropped")

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        if self._broken_line:
            data = b"\n" + data
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, data[written:])
            except OSError:
                if written:
                    self._cut_back(written)
                raise
        self._broken_line = False
        if not self.is_stdout:
            self._recent.append(data)
        if self._failing_since is not None:
            logger.warning(
                "access log %s is writable again after %.1f s; %d queued records follow",
                self.path,
                time.monotonic() - self._failing_since,
                len(self._backlog),
            )
            self._failing_since = None

    def _cut_back(self, written: int) -> None:
        """Undo the part of a line a failing write left (a full disk takes what fits)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError:
            self._broken_line = True  # cannot undo: at least end the broken line

    def _flush_backlog(self) -> None:
        while self._backlog:
            try:
                self._write(self._backlog[0])
            except OSError as e:
                self._failed(e)
                return
            self._backlog.popleft()
            if self._replayed:
                self._replayed -= 1  # counted when first written
            else:
                self._on_outcome("written")

    def _enqueue(self, data: bytes) -> None:
        if len(self._backlog) >= self._backlog_limit:
            self._drop(self._backlog.popleft())
        self._backlog.append(data)

    def _drop(self, data: bytes) -> None:
        """Give up on a line: counted once (a line replayed after its file was removed
        was counted when first written), and handed to `on_dropped`."""
        if self._replayed:
            self._replayed -= 1
        else:
            self._on_outcome("dropped")
        if self._on_dropped is not None:
            self._on_dropped(data)

    def _failed(self, error: OSError) -> None:
        if self._failing_since is not None:
            return  # one report per failure, not per record
        self._failing_since = time.monotonic()
        message = (
            f"cannot write access log {self.path}: {error.strerror or error}; "
            f"holding up to {self._backlog_limit} records in memory"
        )
        if self._on_fault is not None:
            self._on_fault(message)
        else:
            logger.warning(message)

    def close(self) -> None:
        self._flush_backlog()
        if self._backlog:
            logger.error("access log closed with %d unwritten records", len(self._backlog))
        while self._backlog:
            self._drop(self._backlog.popleft())
        self._close_fd()


def _ends_mid_line(path: str, st: os.stat_result) -> bool:
    """Whether a regular file (never a pipe or device) has a last byte that is not a
    newline. `st`: the file as opened for writing."""
    if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # not readable by us: cannot tell
        return False
    try:
        return os.pread(fd, 1, st.st_size - 1) != b"\n"
    except OSError:
        return False
    finally:
        os.close(fd)
