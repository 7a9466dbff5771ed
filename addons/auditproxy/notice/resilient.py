# Over 300 lines: one class whose fault, loss, rebuild and hand-back paths share its state.
"""A notice state store that may fail, with memory behind it: faults never hold a page up.

The proxy calls the store from its one event loop; a store that fails (a locked, corrupt
or read-only SQLite file, a full disk, Redis down) must cost at most one bounded call,
then memory answers until the store works again.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from zoneinfo import ZoneInfo

from auditproxy.notice import store_redis
from auditproxy.notice.seen_memo import SeenMemo
from auditproxy.notice.store import MemoryState, NoticeState, SQLiteState, TodayClaims
from auditproxy.policy.days import period_end
from auditproxy.policy.model import NoticeInterval

logger = logging.getLogger(__name__)

UNRELEASED_LIMIT = 65_536  # releases kept for a store that is down


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

    A store that *loses* its data (file removed, replaced, overwritten; Redis restarted
    empty) raises nothing: upkeep asks `probe()` (off the loop), `lose()` moves to memory,
    `rebuild()` (off the loop) writes today's claims (`TodayClaims`) into a new store.

    The store's positive answers (seen, or claimed here) are remembered for a minute
    (`notice.seen_memo`): the person's next pages ask nothing. Forgotten on `release`,
    and all of them when the store is lost or replaced. Releases the store could not take
    (it was down) are handed to it when it is back.
    """

    def __init__(
        self,
        opener: Callable[[], NoticeState],
        on_fault: Callable[[str, Exception], None],
        retry_after: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        name: str = "sqlite",
        set_aside: Callable[[bool], str] | None = None,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self._opener = opener
        self._on_fault = on_fault
        self._retry_after = retry_after
        self._clock = clock
        self._set_aside = set_aside
        self._on_lost = on_lost
        self._memory = MemoryState()
        self._today = TodayClaims()
        self._known = SeenMemo(clock)
        # Releases that could not reach the store (it was down): sent when it is back.
        self._unreleased: set[tuple[date, str, str]] = set()
        self._store: NoticeState | None = None
        self._failed_at: float | None = None
        self._opened_once = False
        self.lost: str | None = None  # a loss noticed and not repaired yet
        self.losses = 0
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
        if self._opened_once and getattr(store, "was_empty", False):
            # Redis is back without its data (a restart without persistence): re-create.
            with contextlib.suppress(Exception):
                store.close()
            self.lose("flushed")
            return
        self._store, self._failed_at, self._opened_once = store, None, True
        if recovering:
            self._hand_back(store)

    def _hand_back(self, store: NoticeState) -> None:
        # First the releases made while it was down (their claims are the store's from
        # before the fault), then the claims made meanwhile (one may follow a release).
        for day, user, scope in sorted(self._unreleased):
            try:
                store.release(day, user, scope)
            except Exception as e:
                self._fail("hand back", e)
                return
        self._unreleased.clear()
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
        if self._store is None and retry_due and self.lost is None:
            self._open()  # after a loss, `rebuild` (off the loop) opens it again
        return self._store

    # ------------------------------------------------------------------ lost data

    def probe(self) -> str | None:
        """The store's data lost? (`removed`, `replaced`, `corrupt`, `flushed`). Off the loop."""
        store = self._store
        check = getattr(store, "lost", None)
        if check is None:
            return None
        try:
            return check()
        except Exception:
            return None  # a store that fails is the fallback's business, not a loss

    def lose(self, cause: str) -> None:
        """The store lost its data: memory answers until `rebuild` re-creates it."""
        self.lost, self.losses = cause, self.losses + 1
        self._known.clear()
        self._unreleased.clear()  # the rebuilt store starts from today's claims
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
        self._store, self._failed_at = None, None
        if self._on_lost is not None:
            self._on_lost(cause)

    def rebuild_due(self) -> bool:  # now, or `retry_after` after a failed attempt
        failed_at = self._failed_at
        return self.lost is not None and (
            failed_at is None or self._clock() - failed_at >= self._retry_after
        )

    def rebuild(self) -> tuple[NoticeState, int]:
        """Off the loop: a new store with today's claims written back; (store, claims).
        A file that is not a database any more (overwritten) is moved aside first."""
        cause, set_aside = self.lost, self._set_aside
        if set_aside is not None:  # the old file's WAL must not be read into the new one
            set_aside(cause == "corrupt")
        try:
            store = self._opener()
        except sqlite3.DatabaseError:
            if set_aside is None or cause != "replaced":
                raise
            set_aside(True)  # replaced by something that is not a database
            store = self._opener()
        claims = self._today.snapshot()
        try:
            store.adopt(claims)
        except BaseException:
            with contextlib.suppress(Exception):
                store.close()
            raise
        return store, len(claims)

    def rebuild_failed(self, error: Exception) -> None:
        self._failed_at = self._clock()
        self._on_fault("re-create", error)

    def install(self, store: NoticeState, written: int) -> None:
        """Put a rebuilt store in force, with the claims made in memory meanwhile."""
        cause, self.lost = self.lost, None
        self._store, self._failed_at = store, None
        self._known.clear()
        claims = self._memory.claims()
        try:
            store.adopt(claims)
        except Exception as e:
            self._fail("hand back", e)
            return
        self._memory = MemoryState()
        note = " (today's claims beyond the memory bound are not kept)"
        logger.warning(
            "notice state re-created after it was %s: %d of today's claims written back%s",
            cause,
            written + len(claims),
            note if self._today.overflowed else "",
        )

    def poll(self) -> None:
        """Try the store again if a retry is due: recovery while no page comes in; and
        forget remembered answers that are over (upkeep calls it every tick)."""
        self._usable()
        self._known.sweep()

    def seen(self, day: date, user: str, scope: str) -> bool:
        store = self._usable()  # first, so that even known people trigger a due retry
        if self._memory.seen(day, user, scope):
            return True
        if store is None:
            return False
        key = (day, user, scope)
        if self._known.seen(key):
            return True
        generation = self._known.generation()
        try:
            seen = store.seen(day, user, scope)
        except Exception as e:
            self._fail("read", e)
            return False
        if seen:
            self._known.remember(key, generation)
        return seen

    def claim(self, day: date, user: str, scope: str) -> bool:
        generation = self._known.generation()
        claimed = self._claim(day, user, scope)
        if claimed:
            self._today.add(day, user, scope)
            if self._store is not None:
                self._known.remember((day, user, scope), generation)
        return claimed

    def _claim(self, day: date, user: str, scope: str) -> bool:
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
        key = (day, user, scope)
        self._known.forget(key)
        self._today.discard(day, user, scope)
        self._memory.release(day, user, scope)
        store = self._usable()
        if store is not None:
            try:
                store.release(day, user, scope)
                return
            except Exception as e:
                self._fail("release", e)
        if self.lost is None and len(self._unreleased) < UNRELEASED_LIMIT:
            self._unreleased.add(key)  # (after a loss, the new store starts from `_today`)

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
    on_lost: Callable[[str], None] | None = None,
    *,
    interval: Callable[[], NoticeInterval] = lambda: NoticeInterval.DAY,
) -> Resilient:
    """The configured store behind its memory fallback.

    `redis://` or `rediss://` names a Redis server that several instances share (the
    `redis` extra); anything else is the embedded SQLite file. A bad URL or a missing
    client raises (ValueError, RuntimeError: an operator's mistake stops the start); an
    unreachable server does not. Redis keys expire at their period's end (as reloaded).
    """
    if not store_redis.is_state_url(value):
        set_aside = functools.partial(SQLiteState.set_aside, value)
        opener = functools.partial(SQLiteState, value)
        return Resilient(opener, on_fault, name="sqlite", set_aside=set_aside, on_lost=on_lost)
    settings = store_redis.parse_state_url(value)
    store_redis.require_client()
    sentinel = store_redis.sentinel_key(uuid.uuid4().hex)  # this process's, for `lost()`

    def redis() -> NoticeState:
        return store_redis.RedisState(
            settings, lambda day: period_end(day, interval(), timezone()), sentinel=sentinel
        )

    logger.info("notice state shared on %s", settings.describe())
    return Resilient(redis, on_fault, settings.retry_after, name="redis", on_lost=on_lost)
