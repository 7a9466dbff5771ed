"""The connection gate's moving parts: readers that count and time what a peer sends, and
the count of open files. No mitmproxy imports: it works on the reader and writer that
mitmproxy's connection handler keeps for each connection (duck-typed), which the `Admit`
stage hands it from the `client_connected` and `server_connected` hooks.

Why a reader: mitmproxy 12 has no hook between a connection's bytes and its complete request
head, so nothing in the hooks can see a head that never ends or a client that sends one
byte a minute. Its read loop (`ConnectionHandler.handle_connection`) takes the reader from
`transports[connection].reader` once the connect hook has returned; the gate puts a
`GuardedReader` there. Each read is counted (`ConnectionGuard.received`) and bounded by the
connection's deadline, which moves while a read waits (`asyncio.Timeout.reschedule`). A
connection that breaks a limit reads as closed (b""), and the gate closes its socket, with
a 408 or 431 answer first where the client speaks plain HTTP/1 and waits for a head.

The reader also hands each read to mitmproxy in slices that take about 2 ms to handle,
yielding the loop between them (see `SLICE_SECONDS`): bytes that are costly to handle
(one-byte chunks, tiny frames, inside TLS too) cannot hold the loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from typing import Any, Protocol

from auditproxy.backlog import Backlog, CountingWriter
from auditproxy.decide.admission import Reason


class Guard(Protocol):
    on_change: Callable[[], None] | None

    def deadline(self) -> float | None: ...

    def received(self, size: int, now: float) -> Reason | None: ...

    def over_limit(self) -> Reason | None: ...

    def expired(self, now: float) -> Reason | str | None: ...


Verdict = Reason | str  # a Reason, or guard.IDLE
SETTLE_ROUNDS = 20
# mitmproxy handles everything one read brings before the loop moves on: 64 KiB of
# one-byte chunks or tiny frames is ~11,000 events, half a second for everyone. So a read is
# handed over in slices sized to take about SLICE_SECONDS each, with the loop free between.
SLICE_SECONDS = 0.002
MIN_SLICE, FIRST_SLICE, MAX_SLICE = 256, 4096, 65536


class GuardedReader:
    """Stands in for a connection's reader in mitmproxy's read loop."""

    __slots__ = (
        "_backlog",
        "_handed_at",
        "_inner",
        "_on_limit",
        "_pending",
        "_slice",
        "_timeout",
        "_upstream",
        "guard",
    )

    def __init__(
        self,
        inner: Any,
        guard: Guard,
        on_limit: Callable[[Verdict], None],
        backlog: Backlog | None = None,
        upstream: bool = True,
    ) -> None:
        self._inner = inner
        self._backlog, self._upstream = backlog, upstream
        self._on_limit = on_limit
        self._timeout: asyncio.Timeout | None = None
        self._pending = memoryview(b"")  # the rest of a read, for the next slices
        self._slice = FIRST_SLICE
        self._handed_at = 0.0
        self.guard = guard
        guard.on_change = self._reschedule

    def _reschedule(self) -> None:
        timeout = self._timeout
        if timeout is not None and not timeout.expired():
            timeout.reschedule(self.guard.deadline())

    async def read(self, n: int = -1) -> bytes:
        if self._handed_at:  # mitmproxy is back for more: how long did the last slice take?
            spent = time.perf_counter() - self._handed_at
            if spent > SLICE_SECONDS:
                self._slice = max(MIN_SLICE, int(self._slice * SLICE_SECONDS / spent))
            elif spent < SLICE_SECONDS / 2:  # cheap bytes: back to whole reads quickly
                self._slice = min(MAX_SLICE, self._slice * (4 if spent < SLICE_SECONDS / 8 else 2))
        pending = self._pending
        if pending:
            await asyncio.sleep(0)  # this connection had its turn: the others first
            data = bytes(pending[: self._slice])
            self._pending = pending[self._slice :]
        else:
            data = await self._read(n)
            if len(data) > self._slice:
                view = memoryview(data)
                data, self._pending = bytes(view[: self._slice]), view[self._slice :]
        self._handed_at = time.perf_counter() if data else 0.0
        return data

    async def _read(self, n: int) -> bytes:
        guard = self.guard
        while True:
            try:
                async with asyncio.timeout_at(guard.deadline()) as timeout:
                    self._timeout = timeout
                    if self._backlog is not None:
                        await self._backlog.room(self._upstream)
                    data = await self._inner.read(n)
                    if self._backlog is not None:
                        self._backlog.read(self._upstream, len(data))
            except TimeoutError:
                verdict = await _settled(lambda: guard.expired(time.monotonic()))
                if verdict is None:
                    continue  # the connection moved on meanwhile
                self._on_limit(verdict)
                return b""
            finally:
                self._timeout = None
            if data and guard.received(len(data), time.monotonic()) is not None:
                limit = await _settled(guard.over_limit)
                if limit is not None:
                    self._on_limit(limit)
                    return b""
            return data


async def _settled(verdict: Callable[[], Verdict | None]) -> Verdict | None:
    """A verdict that still stands once mitmproxy's hooks have caught up.

    mitmproxy's read loop runs ahead of its hooks: the bytes of a head and of the body
    behind it may be read before the head's hooks have run (they wait for the loop's turn,
    and on a new connection for `next_layer` first). So a limit seen at a read is asked
    again after the loop has had a few turns, in which the hooks move the guard on."""
    for _ in range(SETTLE_ROUNDS):
        await asyncio.sleep(0)
        if verdict() is None:
            return None
    return verdict()


def attach(
    handler: Any,
    connection: Any,
    guard: Guard,
    on_limit: Callable[[Verdict], None],
    backlog: Backlog | None = None,
    upstream: bool = True,
) -> Any | None:
    """Put a GuardedReader in front of `connection`'s reader in mitmproxy's `handler`
    (and, with a `backlog`, a CountingWriter in front of its writer). `upstream`: the
    connection is a client's (what it sends goes upstream), not a server's.

    Returns the connection's writer (to answer and close it), or None when the handler
    does not have the shape this was written for (another mitmproxy version): the limits
    that need the reader are then off, and `Admit` says so once.
    """
    transports = getattr(handler, "transports", None)
    io = transports.get(connection) if transports is not None else None
    reader = getattr(io, "reader", None)
    if io is None or reader is None or not hasattr(reader, "read"):
        return None
    io.reader = GuardedReader(reader, guard, on_limit, backlog, upstream)
    if backlog is not None and io.writer is not None:
        io.writer = CountingWriter(io.writer, backlog, not upstream)
    return io.writer


ANSWERS = {
    Reason.HEAD_SIZE: (431, "Request Header Fields Too Large"),
    Reason.HEAD_TIMEOUT: (408, "Request Timeout"),
    Reason.BODY_TIMEOUT: (408, "Request Timeout"),
}


def answer(reason: Verdict) -> bytes | None:
    """A minimal HTTP/1 answer for a refused head or body, or None."""
    status = ANSWERS.get(reason) if isinstance(reason, Reason) else None
    if status is None:
        return None
    code, phrase = status
    body = f"{code} {phrase}: {reason.text}\n".encode()
    head = (
        f"HTTP/1.1 {code} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def close(writer: Any, data: bytes | None = None) -> None:
    """Close a connection now: with `data` sent first (then a graceful close), or abort it
    (nothing more is read or sent: a peer flooding us gets a reset)."""
    if writer is None:
        return
    with contextlib.suppress(Exception):
        if writer.is_closing():
            return
        if data:
            writer.write(data)
            writer.close()
        else:
            writer.transport.abort()


def count_open_files() -> int | None:
    """The process's open descriptors (Linux /proc), or None where that cannot be known.
    Takes a few milliseconds with many thousands open: call it off the event loop."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # less the one listdir itself opened
    except OSError:
        return None
