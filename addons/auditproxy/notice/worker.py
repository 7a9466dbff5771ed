"""The notice's heavy work on a page, off the event loop, with a deadline.

mitmproxy serves every connection from one asyncio event loop: a hook that computes for a
while stalls everyone. Decoding, scanning and changing a page (and encoding it again) take
time linear in its bytes, which for a large or hostile page is still too long to hold the
loop. So the response hook hands that work to `Offload.run`, which runs it in a small pool
of worker threads and waits for it without blocking the loop. After `deadline` seconds the
answer is `SkipReason.DEADLINE`: the page goes out as it came (never cut: the worker's
result is simply never used), and the work's `Budget` is cancelled, so it stops at its
next check instead of burning CPU for nobody. Work still queued is never started.

zlib, Brotli and zstd release the GIL while they run, so decoding uses the second core;
the scan's regular expressions hold it in steps of bounded size, and Python switches
threads every few milliseconds, so the loop keeps answering while a worker scans.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.reasons import SkipReason

DEADLINE_SECONDS: Final = 1.0  # a page's notice work, queueing included
WORKERS: Final = 2


class Offload:
    """A pool of worker threads for the notice's work, created on first use."""

    def __init__(self, workers: int = WORKERS, deadline: float = DEADLINE_SECONDS) -> None:
        self.workers = workers
        self.deadline = deadline
        self._executor: ThreadPoolExecutor | None = None

    async def run[T](self, work: Callable[[Budget], T]) -> T | SkipReason:
        """`work(budget)` in a worker thread, or `SkipReason.DEADLINE` when it is not done
        in time (or gives up itself: `DeadlineExceeded`)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, "auditproxy-notice")
        budget = Budget(self.deadline)
        future = asyncio.get_running_loop().run_in_executor(self._executor, work, budget)
        try:
            return await asyncio.wait_for(future, self.deadline)
        except (TimeoutError, DeadlineExceeded):
            return SkipReason.DEADLINE
        finally:
            budget.cancel()  # done, abandoned or cancelled: nobody needs more of it

    def close(self) -> None:
        """Stop taking work; what is queued is dropped, what runs stops at its next check."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
