"""Name resolution that no one person's names can hold up for everyone.

asyncio resolves names with the blocking `socket.getaddrinfo` in the loop's default
thread pool (a handful of threads), with no deadline of its own. A client that asks for
names whose DNS servers never answer (any domain can be delegated to such a server) kept
all of those threads waiting, and everyone's lookups queued behind them (red team, issue
#13). Here the proxy's lookups run in threads of their own, each person may keep only
`PER_CLIENT` of them busy at once (counted until the thread is really free: a lookup that
timed out still holds its thread), and a lookup answers within `TIMEOUT` seconds, as a
failure if need be (the connection fails with a clear error, recorded as usual).

No mitmproxy imports: `addon_connections.guard_resolver` puts `Resolver.getaddrinfo` in
the loop's place.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

THREADS = 32
PER_CLIENT = 4
TIMEOUT = 10.0


class Resolver:
    """`getaddrinfo` with its own threads, a share per client and a deadline."""

    def __init__(
        self,
        threads: int = THREADS,
        per_client: int = PER_CLIENT,
        timeout: float = TIMEOUT,
        lookup: Callable[..., Any] | None = None,
    ) -> None:
        """`lookup`: the blocking resolution (`socket.getaddrinfo`, looked up when used)."""
        self.per_client, self.timeout, self._lookup = per_client, timeout, lookup
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="auditproxy-dns")
        self.busy: collections.Counter[str] = collections.Counter()  # threads per client

    async def getaddrinfo(self, client: str, host: Any, port: Any, **kwargs: Any) -> Any:
        """`client`: whose connection needs the name ("" for the proxy's own: no share)."""
        if client and self.busy[client] >= self.per_client:
            raise OSError(
                f"auditproxy: {self.per_client} name lookups of this client still running"
            )
        self.busy[client] += 1
        loop = asyncio.get_running_loop()
        lookup = self._lookup or socket.getaddrinfo
        work = self._pool.submit(functools.partial(lookup, host, port, **kwargs))
        # The share is given back on the loop's thread, where it is taken: one at a time.
        work.add_done_callback(lambda _: loop.call_soon_threadsafe(self._free, client))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(work), self.timeout)
        except TimeoutError:
            raise OSError(
                f"auditproxy: no answer for {host} in {self.timeout:g} s (name lookup)"
            ) from None

    def _free(self, client: str) -> None:
        """A lookup's thread is free again: the client's share back."""
        self.busy[client] -= 1
        if self.busy[client] <= 0:
            del self.busy[client]

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
