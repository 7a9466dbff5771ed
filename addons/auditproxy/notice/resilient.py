"""A notice state store that may fail, with memory behind it: faults never hold a page up.

The proxy calls the store from its one event loop; a store that fails (a locked, corrupt
or read-only SQLite file, a full disk, Redis down) must cost at most one bounded call,
then memory answers until the store works again.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from datetime import date
from zoneinfo import ZoneInfo

from auditproxy.notice import store_redis
from auditproxy.notice.store import MemoryState, NoticeState, SQLiteState

logger = logging.getLogger(__name__)


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


def open_store(
    value: str,
    on_fault: Callable[[str, Exception], None],
    timezone: Callable[[], ZoneInfo],
) -> Resilient:
    """The configured store behind its memory fallback.

    `redis://` or `rediss://` names a Redis server that several instances share (the
    `redis` extra); anything else is the embedded SQLite file. A bad URL or a missing
    client raises (ValueError, RuntimeError: an operator's mistake stops the start); an
    unreachable server does not. `timezone` gives the policy's, as reloaded: Redis keys
    expire at the end of their day there.
    """
    if not store_redis.is_state_url(value):
        return Resilient(lambda: SQLiteState(value), on_fault, name="sqlite")
    settings = store_redis.parse_state_url(value)
    store_redis.require_client()

    def opener() -> NoticeState:
        return store_redis.RedisState(settings, lambda day: store_redis.end_of_day(day, timezone()))

    logger.info("notice state shared on %s", settings.describe())
    return Resilient(opener, on_fault, settings.retry_after, name="redis")
