"""The department's calendar day. Pure.

"Today" is the calendar day in the policy's timezone, not UTC and not the server's: the
notice and the daily-user gauges roll over at local midnight, daylight saving included.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


class Calendar:
    """Today's date in a timezone, computed once per day rather than once per request."""

    def __init__(self, tz: ZoneInfo, clock: Callable[[], float] = time.time) -> None:
        self.tz = tz
        self.clock = clock
        self._day: date | None = None
        self._ends_at = float("-inf")
        self._starts_at = float("inf")

    def today(self) -> date:
        now = self.clock()
        if not self._starts_at <= now < self._ends_at:
            local = datetime.fromtimestamp(now, self.tz)
            self._day = local.date()
            self._starts_at = self._midnight(self._day)
            self._ends_at = self._midnight(self._day + timedelta(days=1))
        assert self._day is not None
        return self._day

    def _midnight(self, day: date) -> float:
        # fold=0 picks the first midnight if a transition repeats it; zoneinfo resolves a
        # midnight that a transition skips to the instant just after the gap.
        return datetime(day.year, day.month, day.day, tzinfo=self.tz).timestamp()
