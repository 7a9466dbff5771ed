"""A deadline that long, pure computations check as they go (cooperative cancellation).

The notice's work on a page (decode, scan, insert) may run in a worker thread while the
event loop waits for it with a deadline. When the deadline passes, the loop sends the page
out unchanged and cancels the budget; the worker notices at its next `check()` (every few
thousand bytes or tokens) and stops, so an abandoned computation stops burning CPU.
"""

from __future__ import annotations

import math
import time
from typing import Final


class DeadlineExceeded(Exception):
    """Raised by `Budget.check()` once the deadline has passed or the work was cancelled."""


YIELD_EVERY: Final = 0.002  # seconds of work between two offers of the GIL


class Budget:
    """The time a computation may still take. `Budget(None)` never runs out.

    `check()` also lets other threads run every `YIELD_EVERY` seconds (`time.sleep(0)`
    releases the GIL): Python would switch threads every 5 ms anyway, but the event loop,
    waiting for the GIL after each of its wake-ups, then gets it at once."""

    __slots__ = ("cancelled", "deadline", "yielded")

    def __init__(self, seconds: float | None = None) -> None:
        now = time.monotonic()
        self.deadline = math.inf if seconds is None else now + seconds
        self.cancelled = False
        self.yielded = now

    def cancel(self) -> None:
        """Nobody waits for the result any more: the next `check()` raises."""
        self.cancelled = True

    def check(self) -> None:
        now = time.monotonic()
        if self.cancelled or now > self.deadline:
            raise DeadlineExceeded
        if now - self.yielded >= YIELD_EVERY:
            time.sleep(0)
            self.yielded = now
