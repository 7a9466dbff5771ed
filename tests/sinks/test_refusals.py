"""Refusal records, bounded (`sinks.refusals`, `records.refusal_event`, the recorder)."""

from __future__ import annotations

from auditproxy.decide.admission import Reason
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import make_privacy_filter
from auditproxy.sinks.metrics import Metrics
from auditproxy.sinks.recorder import Recorder
from auditproxy.sinks.records import ALLOWED_FIELDS
from auditproxy.sinks.refusals import RefusalLog, refusal_event


class Clock:
    now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_the_first_of_each_source_and_reason_now_the_rest_summed_up() -> None:
    clock = Clock()
    log = RefusalLog(interval=10, max_sources=100, clock=clock)
    assert log.note("client", "192.0.2.1") is True
    assert log.note("head-size", "192.0.2.1") is True
    assert [log.note("client", "192.0.2.1") for _ in range(3)] == [False] * 3
    assert not log.due()
    clock.now += 10
    assert log.due()
    (summary,) = log.flush()
    assert (summary.reason, summary.source, summary.count) == ("client", "192.0.2.1", 3)
    assert summary.start == summary.end == 1_000
    assert log.flush() == [] and not log.due()
    assert log.note("client", "192.0.2.1") is True  # a new interval


def test_a_flood_from_many_sources_writes_a_bounded_number_of_records() -> None:
    log = RefusalLog(interval=10, max_sources=100, clock=Clock())
    written = sum(log.note("client", f"2001:db8::{n:x}") for n in range(100_000))
    summaries = log.flush()
    assert written == 100
    assert len(summaries) == 1 and summaries[0].source is None
    assert summaries[0].count == 100_000 - 100


def test_refusal_records_are_ecs_and_pass_the_privacy_filter() -> None:
    record = refusal_event(
        "client", Reason.CLIENT.text, "192.0.2.1", count=4, span=(0.5, 9.25), ruleset="P"
    )
    assert record["event.action"] == "refused" and record["labels.refusal"] == "client"
    assert record["labels.refusal_count"] == "4"  # labels are keyword strings in ECS
    assert record["event.start"] == "1970-01-01T00:00:00.500Z"
    assert record["event.end"] == "1970-01-01T00:00:09.250Z"
    assert set(record) <= ALLOWED_FIELDS
    private = make_privacy_filter(LoggingSettings(source_ip=False, url_path=False))
    assert "source.ip" not in private(None, "info", dict(record))


class Captured:
    def __init__(self) -> None:
        self.records: list[dict] = []

    def emit(self, fields: dict) -> None:
        self.records.append(fields)


def test_the_recorder_counts_every_refusal_and_writes_few() -> None:
    metrics = Metrics()
    recorder = Recorder(metrics)
    recorder.access_log = Captured()  # type: ignore[assignment]
    for _ in range(5):
        recorder.refused(Reason.LIMIT_ADDRESS, "10.0.0.7")
    value = metrics.registry.get_sample_value
    assert value("auditproxy_refusals_total", {"reason": "limit-address"}) == 5
    assert value("auditproxy_refusals_total", {"reason": "client"}) == 0
    recorder.flush_refusals()  # the interval is not over
    assert len(recorder.access_log.records) == 1
    recorder.flush_refusals(force=True)
    first, summary = recorder.access_log.records
    assert first["labels.refusal_count"] == "1" and summary["labels.refusal_count"] == "4"
    assert summary["event.reason"] == Reason.LIMIT_ADDRESS.text
