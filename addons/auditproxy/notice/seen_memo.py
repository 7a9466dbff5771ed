"""What a notice state store said recently: a person has seen a scope's notice this period.

Every page of a monitored site asks the state whether its person has seen the notice; the
store answers from SQLite or, shared by instances, from Redis over the network, on the
event loop. Once it says yes, the answer holds until the period ends, unless a page that
carried the notice fails and its claim is given back. So `SeenMemo` remembers yes for
`SEEN_FOR` seconds: this instance forgets its own give-backs at once (`forget`), another
instance's are followed here within `SEEN_FOR` (until then this instance does not show
that person the notice again). "Not seen" is never remembered: the first page that asks
claims. Pure: no I/O; the clock is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

SEEN_FOR = 60.0  # seconds a "seen" is taken as known without asking the store again
SEEN_LIMIT = 100_000  # remembered answers; the expired, then all, forgotten beyond it

Key = tuple[date, str, str]  # period start, person, scope


class SeenMemo:
    """Positive answers by (period, person, scope), each until `SEEN_FOR` after it came.

    A read of the store can race a give-back (a worker thread reads, the event loop
    releases): `generation()` before the read, `remember(key, generation)` after it, and
    an answer read while anything was forgotten is not remembered."""

    __slots__ = ("_clock", "_generation", "_known")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        # key -> until (clock), in the order of `until`: each answer goes in last, so what
        # is over is always at the front and a sweep reads only that.
        self._known: dict[Key, float] = {}
        self._generation = 0

    def __len__(self) -> int:
        return len(self._known)

    def seen(self, key: Key) -> bool:
        until = self._known.get(key)
        return until is not None and self._clock() < until

    def generation(self) -> int:
        return self._generation

    def remember(self, key: Key, generation: int) -> None:
        """A "seen" read (or claimed) in `generation`: kept unless anything was forgotten
        since (the answer may be one just taken back)."""
        known = self._known
        if len(known) >= SEEN_LIMIT:
            self.sweep()
            if len(known) >= SEEN_LIMIT:
                known.clear()  # none over: all of them (each next page asks the store)
        if self._generation == generation:
            known.pop(key, None)  # to the end: `until` stays in order
            known[key] = self._clock() + SEEN_FOR

    def forget(self, key: Key) -> None:
        self._generation += 1
        self._known.pop(key, None)

    def clear(self) -> None:
        self._generation += 1
        self._known.clear()

    def sweep(self) -> None:
        """Forget the answers that are over (upkeep calls it every tick): they are at the
        front, so this reads those and one more, however many are remembered."""
        now = self._clock()
        known = self._known
        over = []
        for key, until in known.items():
            if until > now:
                break
            over.append(key)
        for key in over:
            del known[key]
