"""The department's calendar day, and the notice's period. Pure.

"Today" is the calendar day in the policy's timezone, not UTC and not the server's: the
notice and the daily-user gauges roll over at local midnight, daylight saving included.
The notice comes back once per period (`notice.interval`): a calendar day, a calendar week
(Monday to Sunday, ISO 8601) or a calendar month, named by its first day.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from auditproxy.policy.model import NoticeInterval


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


def period_start(day: date, interval: NoticeInterval) -> date:
    """The first day of the period that holds `day`: the notice state's and link's key."""
    if interval is NoticeInterval.WEEK:
        return day - timedelta(days=day.weekday())
    if interval is NoticeInterval.MONTH:
        return day.replace(day=1)
    return day


def next_period(start: date, interval: NoticeInterval) -> date:
    """The first day of the period after the one that starts on (or holds) `start`."""
    start = period_start(start, interval)
    if interval is NoticeInterval.WEEK:
        return start + timedelta(days=7)
    if interval is NoticeInterval.MONTH:
        return (start + timedelta(days=32)).replace(day=1)
    return start + timedelta(days=1)


def period_end(start: date, interval: NoticeInterval, tz: ZoneInfo) -> float:
    """The instant the period holding `start` ends in `tz` (local midnight), Unix time."""
    following = next_period(start, interval)
    return datetime(following.year, following.month, following.day, tzinfo=tz).timestamp()
