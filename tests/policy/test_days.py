from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from auditproxy.policy.days import Calendar
from auditproxy.sinks.metrics import DailyUsers

TORONTO = ZoneInfo("America/Toronto")


class Clock:
    def __init__(self, when: datetime) -> None:
        self.now = when.timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, when: datetime) -> None:
        self.now = when.timestamp()


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TORONTO)


def test_day_rolls_over_at_local_midnight_not_utc():
    clock = Clock(local(2026, 11, 22, 23, 59))
    calendar = Calendar(TORONTO, clock)
    assert calendar.today() == date(2026, 11, 22)  # already the 23rd in UTC
    clock.set(local(2026, 11, 23, 0, 1))
    assert calendar.today() == date(2026, 11, 23)


def test_daylight_saving_days_are_23_and_25_hours():
    clock = Clock(local(2026, 3, 8, 12, 0))  # spring forward in Toronto
    calendar = Calendar(TORONTO, clock)
    assert calendar.today() == date(2026, 3, 8)
    assert calendar._ends_at - calendar._starts_at == 23 * 3600
    clock.set(local(2026, 11, 1, 12, 0))  # fall back
    assert calendar.today() == date(2026, 11, 1)
    assert calendar._ends_at - calendar._starts_at == 25 * 3600
    clock.set(local(2026, 11, 1, 23, 59, 59))
    assert calendar.today() == date(2026, 11, 1)
    clock.set(local(2026, 11, 2, 0, 0, 0))
    assert calendar.today() == date(2026, 11, 2)


def test_clock_going_backwards_is_followed():
    clock = Clock(local(2026, 11, 22, 10))
    calendar = Calendar(TORONTO, clock)
    calendar.today()
    clock.set(local(2026, 11, 21, 10))
    assert calendar.today() == date(2026, 11, 21)


def test_daily_users_per_category_reset_at_midnight():
    clock = Clock(local(2026, 11, 22, 9))
    users = DailyUsers(Calendar(TORONTO, clock))
    assert users.add("social", "alice") is True
    assert users.add("social", "alice") is False
    assert users.add("social", "bob") is True
    assert users.add("other", "alice") is True
    assert users.counts() == {"social": 2, "other": 1}
    assert users.count("social") == 2 and users.count("banking") == 0
    clock.set(local(2026, 11, 23, 0, 0, 1))
    assert users.counts() == {}
    assert users.add("social", "alice") is True
