"""The notice's work off the event loop (`notice.worker`), and its deadline through the
add-on's hooks: a page is never held long, never cut, and never uses up the day."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from auditproxy.notice import stage as stage_module
from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.worker import Offload
from support.harness import PAGE, Harness, harness_for


def spin(budget: Budget) -> str:
    """Pure work that would take forever, checking its budget as the scan does."""
    while True:
        budget.check()


async def test_a_result_in_time() -> None:
    assert await Offload(deadline=5).run(lambda budget: "done") == "done"


async def test_the_deadline_abandons_the_work_and_it_stops() -> None:
    offload = Offload(workers=1, deadline=0.2)
    started = time.monotonic()
    assert await offload.run(spin) == SkipReason.DEADLINE
    assert time.monotonic() - started < 2
    # The abandoned work stopped at its next check: the one worker is free again.
    assert await offload.run(lambda budget: "next") == "next"
    offload.close()


async def test_work_that_gives_up_itself_is_a_deadline() -> None:
    def gives_up(budget: Budget) -> None:
        raise DeadlineExceeded

    assert await Offload().run(gives_up) == SkipReason.DEADLINE


async def test_queued_work_past_its_deadline_never_starts() -> None:
    offload = Offload(workers=1, deadline=0.2)
    release = threading.Event()
    started: list[str] = []

    def blocking(budget: Budget) -> None:
        started.append("first")
        release.wait(5)

    def second(budget: Budget) -> None:
        started.append("second")

    first = asyncio.ensure_future(offload.run(blocking))
    while not started:
        await asyncio.sleep(0.01)
    assert await offload.run(second) == SkipReason.DEADLINE
    release.set()
    await first
    await asyncio.sleep(0.1)
    assert started == ["first"]
    offload.close()


async def test_the_event_loop_keeps_turning_while_a_page_is_worked_on() -> None:
    """The point of it all: the loop answers within milliseconds while a worker computes."""
    offload = Offload(workers=1, deadline=1.0)
    task = asyncio.ensure_future(offload.run(spin))
    gaps = []
    for _ in range(20):
        before = time.monotonic()
        await asyncio.sleep(0.01)
        gaps.append(time.monotonic() - before)
    await task
    assert max(gaps) < 0.5  # generous: ~0.015 s here; a blocked loop would be ~1 s


# --- through the hooks -------------------------------------------------------------------


@pytest.fixture
def harness(tmp_path: Path):
    yield from harness_for(tmp_path)


def test_past_the_deadline_the_page_goes_out_unchanged_and_the_day_is_kept(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.addon.runtime.notice.offload.deadline = 0.2
    real_insert = stage_module._insert
    monkeypatch.setattr(stage_module, "_insert", lambda *args: spin(args[-1]))
    f = harness.page(body=PAGE)
    assert f.response is not None and f.response.raw_content == PAGE
    assert "Cache-Control" not in f.response.headers
    assert harness.metric("auditproxy_notice_skipped_total", reason="deadline") == 1
    assert len(harness.records("access")) == 1  # the later stages ran, once
    assert harness.records("notice-shown") == []
    monkeypatch.setattr(stage_module, "_insert", real_insert)
    again = harness.page(body=PAGE)  # the claim was given back: the next page shows it
    assert b'id="auditproxy-notice"' in again.response.content
    assert len(harness.records("notice-shown")) == 1


def test_a_fault_in_the_work_is_counted_and_the_day_is_kept(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(stage_module, "_insert", broken)
    f = harness.page(body=PAGE)
    assert f.response.raw_content == PAGE
    assert harness.metric("auditproxy_errors_total", stage="notice") == 1
    assert len(harness.records("access")) == 1
    monkeypatch.undo()
    assert b'id="auditproxy-notice"' in harness.page(body=PAGE).response.content
