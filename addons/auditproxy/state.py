"""The daily notice state: who has had today's notice for which scope.

One small interface (`NoticeState`) with an embedded SQLite store behind it; a shared
store (Redis) can stand behind the same interface. A first visit is a *claim*: an atomic
insert that succeeds for exactly one caller, so two concurrent first pages never both get
the banner. A claim whose banner could not go out is released, so the next page tries
again.

Nothing personal is stored: the user key is a keyed hash of the identity (see
`Notice.user_key`), the scope is a site or category name, the day is an ordinal.

A store that fails (locked, corrupt, read-only, disk full) never blocks traffic: the
`Resilient` wrapper falls back to memory for the day, reports the fault, and goes back to
the file when it works again. No mitmproxy imports.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from datetime import date
from pathlib import Path
from typing import Protocol

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 50  # a locked database costs a page at most this long, then memory


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


class Resilient:
    """A store that may fail, with memory behind it.

    On a fault: report it (`on_fault`), keep answering from memory (which remembers what
    was claimed while the store was unavailable), and once `retry_after` seconds have
    passed try the store again on the next call, or at `poll()` when traffic is idle
    (`opener` makes a fresh store, so a deleted or replaced file, or a restarted Redis, is
    followed). On return, the claims made in memory meanwhile are handed to the store
    (`adopt`), so that neither a restart nor another instance sharing the store shows
    those people the notice again today. During the fault each instance decides alone:
    at worst a person sees the notice a second time that day; never a page held up or
    broken.
    """

    def __init__(
        self,
        opener: Callable[[], NoticeState],
        on_fault: Callable[[str, Exception], None],
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "sqlite",
    ) -> None:
        self.name = name
        self._opener = opener
        self._on_fault = on_fault
        self._retry_after = retry_after
        self._clock = clock
        self._memory = MemoryState()
        self._store: NoticeState | None = None
        self._failed_at: float | None = None
        self._open()

    @property
    def degraded(self) -> bool:
        return self._store is None

    @property
    def backend(self) -> str:
        """The store in use, for `auditproxy_state_backend`: its name, or `memory`."""
        return "memory" if self.degraded else self.name

    def _open(self) -> None:
        recovering = self._failed_at is not None
        try:
            store = self._opener()
        except Exception as e:
            self._fail("open", e)
            return
        self._store, self._failed_at = store, None
        if recovering:
            self._hand_back(store)

    def _hand_back(self, store: NoticeState) -> None:
        claims = self._memory.claims()
        if not claims:
            logger.warning("notice state is back on its store (%s) after a fault", self.name)
            return
        try:
            added = store.adopt(claims)
        except Exception as e:
            self._fail("hand back", e)
            return
        logger.warning(
            "notice state is back on its store (%s); handed it %d of the %d claims made "
            "during the fault",
            self.name,
            added,
            len(claims),
        )

    def _fail(self, what: str, error: Exception) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        self._store = None
        self._failed_at = self._clock()
        self._on_fault(what, error)

    def _usable(self) -> NoticeState | None:
        failed_at = self._failed_at
        retry_due = failed_at is not None and self._clock() - failed_at >= self._retry_after
        if self._store is None and retry_due:
            self._open()
        return self._store

    def poll(self) -> None:
        """Try the store again if a retry is due: recovery while no page comes in."""
        self._usable()

    def seen(self, day: date, user: str, scope: str) -> bool:
        store = self._usable()  # first, so that even known people trigger a due retry
        if self._memory.seen(day, user, scope):
            return True
        if store is None:
            return False
        try:
            return store.seen(day, user, scope)
        except Exception as e:
            self._fail("read", e)
            return False

    def claim(self, day: date, user: str, scope: str) -> bool:
        store = self._usable()
        if self._memory.seen(day, user, scope):
            return False  # claimed while the store was down
        if store is not None:
            try:
                return store.claim(day, user, scope)
            except Exception as e:
                self._fail("claim", e)
        return self._memory.claim(day, user, scope)

    def release(self, day: date, user: str, scope: str) -> None:
        self._memory.release(day, user, scope)
        store = self._usable()
        if store is not None:
            try:
                store.release(day, user, scope)
            except Exception as e:
                self._fail("release", e)

    def prune(self, before: date) -> int:
        removed = self._memory.prune(before)
        store = self._usable()
        if store is not None:
            try:
                removed += store.prune(before)
            except Exception as e:
                self._fail("prune", e)
        return removed

    def adopt(self, claims: Iterable[tuple[date, str, str]]) -> int:
        return self._memory.adopt(claims)

    def close(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            finally:
                self._store = None
        self._memory.close()
