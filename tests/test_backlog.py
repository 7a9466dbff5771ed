"""`backlog`: what the proxy holds for a connection and a person, and the wait above it."""

from __future__ import annotations

import asyncio
import time

import pytest

from auditproxy import gate
from auditproxy.backlog import Backlog, CountingWriter
from auditproxy.decide.admission import Limits
from auditproxy.decide.guard import ConnectionGuard

LIMITS = Limits(head_max_bytes=10_000, head_timeout=0.3, idle_timeout=0.6, body_timeout=0.3)


class Sink:
    """A writer that keeps what it is given."""

    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


async def test_reading_waits_while_a_connection_holds_too_much_then_goes_on() -> None:
    person = Backlog(1000, key="10.0.0.1")
    backlog = Backlog(100, parent=person)
    inner = asyncio.StreamReader()
    inner.feed_data(b"x" * 300)
    guard, verdicts = ConnectionGuard(LIMITS, time.monotonic()), []
    reader = gate.GuardedReader(inner, guard, verdicts.append, backlog, upstream=True)
    guard.request_started("f", has_body=True, multiplexed=True, now=time.monotonic())
    assert len(await reader.read(150)) == 150  # read, not yet written anywhere: held
    assert backlog.held == [0, 150] and person.held == [0, 150]
    waiting = asyncio.ensure_future(reader.read(150))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # over the connection's bound: the reader waits
    server = CountingWriter(Sink(), backlog, upstream=True)
    server.write(b"y" * 110)  # passed on upstream: 40 held, under half the bound
    assert len(await asyncio.wait_for(waiting, 1)) == 150
    assert verdicts == [] and server.is_closing() is False  # the writer stands in whole


async def test_the_person_bound_holds_across_connections_and_each_direction_is_apart() -> None:
    person = Backlog(200)
    first, second = Backlog(150, parent=person), Backlog(150, parent=person)
    first.read(True, 120)
    second.read(True, 90)  # each under its own bound, the person over theirs
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(second.room(True), 0.05)
    await asyncio.wait_for(second.room(False), 0.05)  # downloads are not held back
    first.settle()  # its exchange ended: what it counted leaves the person's count too
    assert person.held == [0, 90]
    await asyncio.wait_for(second.room(True), 0.05)


async def test_a_connection_that_passes_bytes_through_stops_counting():
    """A WebSocket or raw TCP relay: re-framing makes the count drift with nothing in
    flight to settle it; such a connection is never held back (its messages are bounded
    elsewhere) and gives back what it counted."""
    person = Backlog(200)
    websocket = Backlog(100, parent=person)
    websocket.read(True, 150)
    websocket.passthrough()
    assert websocket.held == [0, 0] and person.held == [0, 0]
    websocket.read(True, 10_000)
    await asyncio.wait_for(websocket.room(True), 0.05)
    assert person.held == [0, 0]


async def test_attach_with_a_backlog_counts_the_writer_too() -> None:
    class IO:
        reader = asyncio.StreamReader()
        writer = Sink()

    handler = type("Handler", (), {"transports": {"server": IO}})()
    backlog = Backlog(100)
    guard = ConnectionGuard(LIMITS, time.monotonic())
    writer = gate.attach(handler, "server", guard, print, backlog, upstream=False)
    assert isinstance(writer, CountingWriter) and IO.writer is writer
    backlog.read(True, 50)
    writer.write(b"z" * 50)  # a server's writer passes the upload on
    assert backlog.held == [0, 0] and IO.writer.data == b"z" * 50
