"""The gate's reader (`gate.GuardedReader`): counts, deadlines that move, slices."""

from __future__ import annotations

import asyncio
import time

from auditproxy import gate
from auditproxy.decide.admission import Limits, Reason
from auditproxy.decide.guard import IDLE, ConnectionGuard

LIMITS = Limits(head_max_bytes=10_000, head_timeout=0.3, idle_timeout=0.6, body_timeout=0.3)


def reader_for(
    data: bytes = b"", eof: bool = False
) -> tuple[asyncio.StreamReader, gate.GuardedReader, ConnectionGuard, list]:
    inner = asyncio.StreamReader()
    if data:
        inner.feed_data(data)
    if eof:
        inner.feed_eof()
    guard = ConnectionGuard(LIMITS, time.monotonic())
    verdicts: list = []
    return inner, gate.GuardedReader(inner, guard, verdicts.append), guard, verdicts


async def read_all(reader: gate.GuardedReader) -> bytes:
    out = b""
    while chunk := await reader.read(65535):
        out += chunk
    return out


async def test_bytes_pass_through_in_slices() -> None:
    body = bytes(range(256)) * 256  # 64 KiB in one read
    _, reader, guard, verdicts = reader_for(body, eof=True)
    guard.request_started("f", has_body=True, multiplexed=False, now=time.monotonic())
    first = await reader.read(65535)
    assert len(first) == gate.FIRST_SLICE  # a first slice, the rest after others had a turn
    assert first + await read_all(reader) == body and verdicts == []


async def test_a_head_over_the_cap_reads_as_closed() -> None:
    _, reader, _, verdicts = reader_for(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 3000)
    data = await read_all(reader)
    assert verdicts == [Reason.HEAD_SIZE] and len(data) < 20_000


async def test_a_head_that_the_hooks_have_seen_is_not_cut() -> None:
    """mitmproxy reads ahead of its hooks: a head and the body behind it may be read
    before `requestheaders` runs. The verdict waits for the hooks to catch up."""
    _, reader, guard, verdicts = reader_for(b"POST / HTTP/1.1\r\n\r\n" + b"x" * 20_000)

    async def hooks() -> None:
        await asyncio.sleep(0)
        guard.request_started("f", has_body=True, multiplexed=False, now=time.monotonic())

    task = asyncio.create_task(hooks())
    data = b""
    while len(data) < 20_019:
        data += await reader.read(65535)
    await task
    assert verdicts == []


async def test_a_silent_connection_goes_quietly_at_its_deadline() -> None:
    _, reader, _, verdicts = reader_for()
    started = time.monotonic()
    assert await reader.read(100) == b""
    assert verdicts == [IDLE] and 0.25 < time.monotonic() - started < 2


async def test_a_slow_head_is_cut_at_the_head_timeout() -> None:
    _, reader, _, verdicts = reader_for(b"G")
    assert await reader.read(100) == b"G"
    assert await reader.read(100) == b""
    assert verdicts == [Reason.HEAD_TIMEOUT]


async def test_a_pending_read_follows_its_moving_deadline() -> None:
    _, reader, guard, verdicts = reader_for()
    guard.request_started("f", has_body=False, multiplexed=False, now=time.monotonic())
    pending = asyncio.create_task(reader.read(100))  # waiting for a response: no deadline
    await asyncio.sleep(0.4)
    assert not pending.done()
    guard.exchange_done("f", time.monotonic())  # answered: the idle timeout starts now
    started = time.monotonic()
    assert await pending == b""
    assert verdicts == [IDLE] and 0.45 < time.monotonic() - started < 2


async def test_attach_puts_the_reader_in_mitmproxys_place() -> None:
    class IO:
        reader = asyncio.StreamReader()
        writer = object()

    handler = type("Handler", (), {"transports": {"client": IO}})()
    guard = ConnectionGuard(LIMITS, time.monotonic())
    assert gate.attach(handler, "client", guard, print) is IO.writer
    assert isinstance(IO.reader, gate.GuardedReader)
    assert gate.attach(object(), "client", guard, print) is None  # another shape: off
    assert gate.attach(handler, "other", guard, print) is None


def test_answers_for_plain_http1_clients() -> None:
    answer = gate.answer(Reason.HEAD_SIZE)
    assert answer is not None and answer.startswith(b"HTTP/1.1 431 ")
    assert b"Connection: close" in answer
    assert gate.answer(Reason.HEAD_TIMEOUT).startswith(b"HTTP/1.1 408 ")  # type: ignore[union-attr]
    assert gate.answer(Reason.CLIENT) is None and gate.answer(IDLE) is None


def test_open_files_are_counted() -> None:
    count = gate.count_open_files()
    assert count is None or count > 2
