"""The daily notice state: who has had today's notice for which scope.

One small interface (`NoticeState`) with an embedded SQLite store behind it; a shared
store (Redis) can stand behind the same interface. A first visit is a *claim*: an atomic
insert that succeeds for exactly one caller, so two concurrent first pages never both get
the banner. A claim whose banner could not go out is released, so the next page tries
again.

Nothing personal is stored: the user key is a keyed hash of the identity (see
`Notice.user_key`), the scope is a site or category name, the day is an ordinal.

A store that fails (locked, corrupt, read-only, disk full) never blocks traffic: the
`notice.resilient.Resilient` wrapper falls back to memory, reports the fault, and goes back
to the file when it works again. No mitmproxy imports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Protocol

from auditproxy.policy.files import regular_or_absent

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 50  # a locked database costs a page at most this long, then memory
TODAY_LIMIT = 100_000  # today's claims kept in memory to re-create a lost store (~20 MB)
SQLITE_HEADER = b"SQLite format 3\x00"


class NoticeState(Protocol):
    def seen(self, day: date, user: str, scope: str) -> bool:
        """Whether the notice already went out today (a cheap read, no claim)."""
        ...

    def claim(self, day: date, user: str, scope: str) -> bool:
        """Atomically take today's first visit; True for exactly one caller."""
        ...

    def release(self, day: date, user: str, scope: str) -> None:
        """Give a claim back: the banner did not go out after all."""
        ...

    def prune(self, before: date) -> int:
        """Forget days before `before`; returns how many records went."""
        ...

    def adopt(self, claims: Iterable[tuple[date, str, str]]) -> int:
        """Record claims made elsewhere (the memory fallback); returns how many were new."""
        ...

    def close(self) -> None: ...


class MemoryState:
    """The fallback, and the store for tests: one process, gone at restart."""

    def __init__(self) -> None:
        self._seen: set[tuple[int, str, str]] = set()
        self._lock = threading.Lock()

    def seen(self, day: date, user: str, scope: str) -> bool:
        return (day.toordinal(), user, scope) in self._seen

    def claim(self, day: date, user: str, scope: str) -> bool:
        key = (day.toordinal(), user, scope)
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
            return True

    def release(self, day: date, user: str, scope: str) -> None:
        with self._lock:
            self._seen.discard((day.toordinal(), user, scope))

    def prune(self, before: date) -> int:
        cutoff = before.toordinal()
        with self._lock:
            old = {k for k in self._seen if k[0] < cutoff}
            self._seen -= old
        return len(old)

    def adopt(self, claims: Iterable[tuple[date, str, str]]) -> int:
        keys = {(day.toordinal(), user, scope) for day, user, scope in claims}
        with self._lock:
            new = keys - self._seen
            self._seen |= new
        return len(new)

    def claims(self) -> list[tuple[date, str, str]]:
        with self._lock:
            keys = list(self._seen)
        return [(date.fromordinal(day), user, scope) for day, user, scope in keys]

    def close(self) -> None:
        self._seen.clear()


class TodayClaims:
    """Today's claims, kept in memory so that a store that loses them (a file removed or
    replaced, Redis restarted empty) can be re-created. Bounded: past `limit` claims a day,
    the rest are not kept (`overflowed`) and would show their notice again after a loss."""

    def __init__(self, limit: int = TODAY_LIMIT) -> None:
        self.limit = limit
        self.overflowed = False
        self._day: int | None = None
        self._keys: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def add(self, day: date, user: str, scope: str) -> None:
        ordinal = day.toordinal()
        with self._lock:
            if ordinal != self._day:
                if self._day is not None and ordinal < self._day:
                    return  # yesterday's, late: not worth keeping
                self._day, self._keys, self.overflowed = ordinal, set(), False
            if len(self._keys) >= self.limit:
                self.overflowed = True
                return
            self._keys.add((user, scope))

    def discard(self, day: date, user: str, scope: str) -> None:
        with self._lock:
            if day.toordinal() == self._day:
                self._keys.discard((user, scope))

    def snapshot(self) -> list[tuple[date, str, str]]:
        with self._lock:
            if self._day is None:
                return []
            day = date.fromordinal(self._day)
            return [(day, user, scope) for user, scope in self._keys]

    def __len__(self) -> int:
        return len(self._keys)


class SQLiteState:
    """The embedded store: one file, WAL journal, one row per (day, user, scope).

    Safe for one process with concurrent flows (one connection, serialised by a lock;
    the proxy's event loop is single-threaded anyway). The file is locked exclusively
    while the process runs: a second instance on the same file falls back to memory (and
    says so); instances that share state use Redis. Raises sqlite3.Error on faults;
    `Resilient` turns those into a fallback.
    """

    SCHEMA = (
        "CREATE TABLE IF NOT EXISTS notice_seen ("
        " day INTEGER NOT NULL, user TEXT NOT NULL, scope TEXT NOT NULL,"
        " PRIMARY KEY (day, user, scope)) WITHOUT ROWID"
    )

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        for name in (self.path, self.path + "-wal", self.path + "-journal"):
            regular_or_absent(name)  # SQLite's open() would wait forever on a FIFO
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        try:
            db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            # One process owns the file. Exclusive locking also means WAL without the
            # memory-mapped -shm file: if the files turn read-only under us, a write
            # fails with an sqlite3 error (handled) instead of SIGBUS (the whole proxy).
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            db.execute("PRAGMA journal_mode = WAL")
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute(self.SCHEMA)
            db.execute("SELECT count(*) FROM notice_seen WHERE day = 0").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        self._db = db
        st = os.stat(self.path)
        self._identity = (st.st_dev, st.st_ino)

    def lost(self) -> str | None:
        """Whether the file under us went: `removed`, `replaced` (another file at its path)
        or `corrupt` (not an SQLite file any more). With the database locked exclusively,
        SQLite itself would not notice: it goes on writing to what it has open."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return "removed"
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != self._identity:
            return "replaced"
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            header = os.pread(fd, len(SQLITE_HEADER), 0)
        except OSError:
            return None
        finally:
            os.close(fd)
        return None if header == SQLITE_HEADER else "corrupt"

    @staticmethod
    def set_aside(path: str | Path, whole: bool = True) -> str:
        """Move a damaged state file and its WAL out of the way (`whole=False`: the WAL and
        lock files only, which belong to a file that went and would be read into a new
        one). Kept for whoever wants to look; returns the new name's stem."""
        target = f"{path}.lost-{int(time.time())}"
        for suffix in ("", "-wal", "-shm", "-journal") if whole else ("-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
        return target

    def seen(self, day: date, user: str, scope: str) -> bool:
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM notice_seen WHERE day = ? AND user = ? AND scope = ?",
                (day.toordinal(), user, scope),
            ).fetchone()
        return row is not None

    def claim(self, day: date, user: str, scope: str) -> bool:
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO notice_seen (day, user, scope) VALUES (?, ?, ?)",
                (day.toordinal(), user, scope),
            )
        return cursor.rowcount == 1

    def release(self, day: date, user: str, scope: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM notice_seen WHERE day = ? AND user = ? AND scope = ?",
                (day.toordinal(), user, scope),
            )

    def prune(self, before: date) -> int:
        with self._lock:
            cursor = self._db.execute(
                "DELETE FROM notice_seen WHERE day < ?", (before.toordinal(),)
            )
        return cursor.rowcount

    def adopt(self, claims: Iterable[tuple[date, str, str]]) -> int:
        rows = [(day.toordinal(), user, scope) for day, user, scope in claims]
        with self._lock:
            before = self._db.total_changes
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR IGNORE INTO notice_seen (day, user, scope) VALUES (?, ?, ?)", rows
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
            return self._db.total_changes - before

    def close(self) -> None:
        with self._lock:
            self._db.close()
