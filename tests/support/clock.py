"""Run the suite at another instant: AUDITPROXY_TEST_CLOCK=03:00 (UTC, today) or a full
ISO-8601 instant. .ci/run uses it to prove that no test depends on the hour it runs at.

In-process, `time-machine` moves the clock for the whole session (ticking on from the
chosen instant). A real `auditproxy run` started by the tests (support.proxy) runs under
Debian's `faketime` from the same instant, so both sides of an end-to-end test agree.
Redis and other servers keep the real clock (libfaketime stops redis-server starting);
tests that share days with them choose days the real clock never reaches the end of.
"""

from __future__ import annotations

import glob
import os
from datetime import UTC, datetime, time

ENV = "AUDITPROXY_TEST_CLOCK"


def shifted_instant(text: str | None = None) -> datetime | None:
    """The instant AUDITPROXY_TEST_CLOCK names, or None when the real clock is used."""
    text = os.environ.get(ENV, "") if text is None else text
    if not text:
        return None
    if "T" in text or "-" in text:
        instant = datetime.fromisoformat(text)
        return instant if instant.tzinfo else instant.replace(tzinfo=UTC)
    clock = time.fromisoformat(text)
    return datetime.combine(datetime.now(UTC).date(), clock, UTC)


def faketime_env() -> dict[str, str]:
    """Environment that starts a child process at the session's shifted instant (read
    now: the in-process clock is already shifted and ticking), or {} if unshifted.

    libfaketime is preloaded directly rather than through the `faketime` command, which
    forks: signals sent to the child's pid must reach the program itself.
    """
    if shifted_instant() is None:
        return {}
    libraries = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    if not libraries:
        raise RuntimeError(f"{ENV} is set but libfaketime is missing (apt-get install faketime)")
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return {"LD_PRELOAD": libraries[0], "FAKETIME": f"@{now}", "TZ": "UTC"}


class ManualClock:
    """A clock a test sets by hand (`clock.now = 61.0`), for code that takes its clock as
    an argument (monotonic seconds)."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
