"""A deadline that long, pure computations check as they go (cooperative cancellation).

The notice's work on a page (decode, scan, insert) may run in a worker thread while the
event loop waits for it with a deadline. When the deadline passes, the loop sends the page
out unchanged and cancels the budget; the worker notices at its next `check()` (every few
thousand bytes or tokens) and stops, so an abandoned computation stops burning CPU.
"""

from __future__ import annotations

import math
import time


class DeadlineExceeded(Exception):
    """Raised by `Budget.check()` once the deadline has passed or the work was cancelled."""


class Budget:
    """The time a computation may still take. `Budget(None)` never runs out."""

    __slots__ = ("cancelled", "deadline")

    def __init__(self, seconds: float | None = None) -> None:
        self.deadline = math.inf if seconds is None else time.monotonic() + seconds
        self.cancelled = False

    def cancel(self) -> None:
        """Nobody waits for the result any more: the next `check()` raises."""
        self.cancelled = True

    def check(self) -> None:
        if self.cancelled or time.monotonic() > self.deadline:
            raise DeadlineExceeded
