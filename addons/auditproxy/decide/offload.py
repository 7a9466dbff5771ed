"""Blocking library calls (GSSAPI, LDAP) off the proxy's one event loop, bounded.

mitmproxy runs every connection on one event loop: a blocking call stalls them all, and
an unbounded queue in front of a slow dependency turns a slow KDC or directory into a
memory leak and pages held up for minutes. So a call either gets a slot at once or is
refused (``Busy``); once admitted it has a deadline (``TimeoutError``). A call still
running at its deadline cannot be interrupted (C code), so it keeps its slot until it
really ends: a dependency that hangs fills the pool and further calls are refused at
once, which is the bounded behaviour we want.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Busy(Exception):
    """Every worker is busy and the queue is full: answered at once, never queued."""


class Offload:
    """A small thread pool with a bounded queue. ``workers`` threads run calls; up to
    ``queue`` more wait for one; beyond that, ``run`` raises ``Busy`` without waiting."""

    def __init__(self, name: str, workers: int = 4, queue: int = 32) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"{name}: workers must be >= 1 and queue >= 0")
        self.capacity = workers + queue
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._pending = 0

    @property
    def pending(self) -> int:
        """Calls admitted and not yet finished (running, queued, or past their deadline)."""
        return self._pending

    async def run[T](self, call: Callable[[], T], timeout: float) -> T:
        """Run ``call`` in a worker; ``Busy`` when full, ``TimeoutError`` after ``timeout``
        seconds (queue wait included). Exceptions of ``call`` propagate."""
        with self._lock:
            if self._pending >= self.capacity:
                raise Busy(f"{self._pending} calls pending")
            self._pending += 1
        try:
            future = self._executor.submit(call)
        except RuntimeError:  # shut down
            self._release(None)
            raise Busy("shut down") from None
        future.add_done_callback(self._release)
        # wait_for cancels the wrapper on timeout, which cancels a call still queued (its
        # slot frees at once); a running one cannot be cancelled and keeps its slot.
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    def _release(self, _future: Future[object] | None) -> None:
        with self._lock:
            self._pending -= 1

    def close(self) -> None:
        """Refuse new calls; queued ones are cancelled, running ones finish in the background."""
        self._executor.shutdown(wait=False, cancel_futures=True)
