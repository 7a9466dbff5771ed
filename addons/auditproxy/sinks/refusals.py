"""Refusal records, bounded: an outsider reconnecting a thousand times a second must not
write a thousand lines a second. Pure.

Per interval (10 s): the first refusal of each (reason, source address) is written at once;
the ones after it are counted and written as one summary record when the interval ends
(`labels.refusal_count`, `event.start`, `event.end`). At most `max_sources` pairs are tracked
per interval; refusals beyond them are summed per reason into one summary without an
address. So an interval writes at most 2 x `max_sources` + one per reason records,
whatever the flood. Every refusal is counted in `auditproxy_refusals_total{reason}`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

REFUSAL_INTERVAL = 10.0
MAX_SOURCES = 100


@dataclass(slots=True)
class Summary:
    reason: str
    source: str | None  # None: the refusals beyond `max_sources` addresses
    count: int
    start: float  # wall-clock seconds of the first and last refusal summed up
    end: float


@dataclass(slots=True)
class _Tally:
    count: int = 0
    start: float = 0.0
    end: float = 0.0


class RefusalLog:
    def __init__(
        self,
        interval: float = REFUSAL_INTERVAL,
        max_sources: int = MAX_SOURCES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.max_sources = max_sources
        self._clock = clock
        self._tallies: dict[tuple[str, str | None], _Tally] = {}
        self._window_start: float | None = None

    def note(self, reason: str, source: str) -> bool:
        """Count one refusal; True when it should be written now (the first of its kind)."""
        now = self._clock()
        if self._window_start is None:
            self._window_start = now
        key: tuple[str, str | None] = (reason, source)
        tally = self._tallies.get(key)
        if tally is None:
            if len(self._tallies) < self.max_sources:
                self._tallies[key] = _Tally(start=now, end=now)
                return True
            key = (reason, None)
            tally = self._tallies.get(key)
            if tally is None:
                tally = self._tallies[key] = _Tally(start=now)
        if tally.count == 0:
            tally.start = now
        tally.count += 1
        tally.end = now
        return False

    def due(self) -> bool:
        start = self._window_start
        return start is not None and self._clock() - start >= self.interval

    def flush(self) -> list[Summary]:
        """The counts not written yet, and a new interval."""
        summaries = [
            Summary(reason, source, t.count, t.start, t.end)
            for (reason, source), t in self._tallies.items()
            if t.count
        ]
        self._tallies.clear()
        self._window_start = None
        return summaries


def _iso(seconds: float) -> str:
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1000):03d}Z"


def refusal_event(
    reason: str,
    why: str,
    source: str | None,
    *,
    count: int = 1,
    span: tuple[float, float] | None = None,
    ruleset: str | None = None,
    version: str | None = None,
) -> dict:
    """A `refused` record: a connection turned away before (or instead of) a request.

    `count` > 1 with its `span` (first, last) sums up the refusals of one reason and source
    that were not written one by one (`sinks.refusals`). `source` None: from many sources.
    """
    fields: dict[str, Any] = {
        "event.action": "refused",
        "event.category": ["network"],
        "event.type": ["connection", "denied"],
        "event.outcome": "failure",
        "event.reason": why,
        "labels.refusal": reason,
        "labels.refusal_count": str(count),  # labels are keyword strings (ECS)
    }
    if source is not None:
        fields["source.ip"] = source
    if span is not None:
        fields["event.start"], fields["event.end"] = _iso(span[0]), _iso(span[1])
    if ruleset is not None:
        fields["rule.ruleset"], fields["rule.version"] = ruleset, version
    return fields
