"""What the proxy holds for each connection and person, and the backpressure on it.

No mitmproxy imports: the `gate` puts a `Backlog` behind each connection's guarded reader
and a `CountingWriter` in front of its writer.
"""

from __future__ import annotations

import asyncio
from typing import Any

# What the proxy may hold each way (bytes read from one side and not yet written to the
# other) for one connection, and for one person (a client address; behind a trusted
# balancer, its connection) in all: reading from that side waits above the bound until
# the writes bring it under half of it.
HELD_PER_CONNECTION = 16 * 1024 * 1024
HELD_PER_PERSON = 256 * 1024 * 1024


class Backlog:
    """Bytes read and not yet passed on, upstream and downstream: for one connection,
    within its person's (`parent`).

    mitmproxy reads a connection as fast as it comes and waits only for sockets' write
    buffers (`drain_writers`): what it holds inside (a body being buffered, HTTP/2 data the
    other side's flow-control window cannot take yet, since it acknowledges every DATA
    frame at once) has no bound, so one person's HTTP/2 uploads to a server that does not
    read them, or downloads they do not read, grew the proxy until it ran out of memory
    for everyone. Counting what each side's reader brings in and each side's writer sends
    out gives what is held; the readers of the side that brought it wait while it is over
    the bound: the backpressure mitmproxy lacks. The count drifts a little (headers change
    size; TLS and HTTP/2 frames of our own), so it starts again whenever the connection has
    no exchange in flight (`settle`). The person's bound is larger, so that people behind
    one address (NAT, a terminal server) do not wait on each other's ordinary traffic."""

    __slots__ = ("_room", "flows", "held", "high", "key", "low", "off", "parent", "users")

    def __init__(
        self, high: int = HELD_PER_CONNECTION, parent: Backlog | None = None, key: Any = None
    ) -> None:
        self.high, self.low, self.parent, self.key = high, high // 2, parent, key
        self.held = [0, 0]  # [downstream, upstream]
        self._room = (asyncio.Event(), asyncio.Event())
        for event in self._room:
            event.set()
        self.flows: set[str] = set()  # exchanges in flight
        self.users = 0  # connections counting into it
        self.off = False  # a connection passing bytes through: nothing held to count

    def read(self, upstream: bool, size: int) -> None:
        if self.off:
            return
        held = self.held[upstream] = self.held[upstream] + size
        if held > self.high:
            self._room[upstream].clear()
        if self.parent is not None:
            self.parent.read(upstream, size)

    def wrote(self, upstream: bool, size: int) -> None:
        if self.off:
            return
        self._release(upstream, size)
        if self.parent is not None:
            self.parent.wrote(upstream, size)

    def _release(self, upstream: bool, size: int) -> None:
        held = self.held[upstream] = self.held[upstream] - size
        if held < self.low:
            self._room[upstream].set()

    async def room(self, upstream: bool) -> None:
        """Return once the bytes going this way are under the bounds."""
        event = self._room[upstream]
        if not event.is_set():
            await event.wait()
        if self.parent is not None:
            await self.parent.room(upstream)

    def settle(self) -> None:
        """Nothing in flight on this connection: nothing is held; the drift is forgotten
        (and taken off the person's count)."""
        for upstream in (False, True):
            held = self.held[upstream]
            if self.parent is not None and held:
                self.parent._release(upstream, held)
            self.held[upstream] = 0
            self._room[upstream].set()

    def passthrough(self) -> None:
        """The connection now relays raw bytes (a WebSocket, raw TCP): mitmproxy holds
        none of them for long (a WebSocket message is bounded by `websocket_limit`), and
        re-framing would make the count drift with nothing in flight to settle it."""
        self.settle()
        self.off = True


class CountingWriter:
    """Stands in for a connection's writer: counts what is written to it."""

    __slots__ = ("_backlog", "_inner", "_upstream")

    def __init__(self, inner: Any, backlog: Backlog, upstream: bool) -> None:
        self._inner, self._backlog, self._upstream = inner, backlog, upstream

    def write(self, data: bytes) -> None:
        self._inner.write(data)
        self._backlog.wrote(self._upstream, len(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
