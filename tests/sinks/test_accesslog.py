from __future__ import annotations

import json
import os
import re
import time

import pytest

from auditproxy.decide.decision import Engine
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import AccessLog, add_timestamp, make_privacy_filter
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.paths import strip_query
from auditproxy.sinks.records import (
    ALLOWED_FIELDS,
    Exchange,
    access_event,
    tunnel_event,
)

PRIVATE = LoggingSettings(source_ip=False, url_path=False)
OPEN = LoggingSettings(source_ip=True, url_path=True)

KEY = b"k" * 32


class Outcomes(list):
    def __call__(self, outcome: str) -> None:
        self.append(outcome)


@pytest.fixture
def engine(small_policy_text) -> Engine:
    return Engine(parse_policy(small_policy_text), KEY)


def exchange(**overrides) -> Exchange:
    values = dict(
        method="GET",
        scheme="https",
        port=443,
        path="/profile/alice?token=SECRET#frag",
        http_version="2.0",
        status=200,
        response_bytes=1234,
        duration_ns=5_000_000,
        client_address="10.1.2.3",
        response_head_bytes=100,
    )
    values.update(overrides)
    return Exchange(**values)


def read_records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_access_record_has_the_ecs_fields(engine, tmp_path):
    log_path = tmp_path / "access.log"
    outcomes = Outcomes()
    log = AccessLog(LogSink(str(log_path), outcomes), OPEN)
    decision = engine.decide(
        host="www.facebook.com", client_address="10.1.2.3", proxyauth_user="al"
    )
    log.emit(access_event(decision, exchange()))
    (record,) = read_records(log_path)
    assert next(iter(record)) == "@timestamp"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["@timestamp"])
    expected = {
        "ecs.version": "8.11.0",
        "event.dataset": "auditproxy.access",
        "event.kind": "event",
        "event.action": "access",
        "event.category": ["network", "web"],
        "event.outcome": "success",
        "event.duration": 5_000_000,
        "user.name": "al",
        "source.ip": "10.1.2.3",
        "url.scheme": "https",
        "url.domain": "www.facebook.com",
        "url.port": 443,
        "url.path": "/profile/alice",
        "http.request.method": "GET",
        "http.version": "2.0",
        "http.response.status_code": 200,
        "http.response.bytes": 1334,  # ECS: head and body
        "http.response.body.bytes": 1234,
        "rule.ruleset": "Test Policy",
        "rule.version": engine.policy.sha256,
        "rule.name": "social/facebook",
        "labels.category": "social",
        "labels.site": "facebook",
        "labels.action": "monitor",
        "message": "access",
    }
    assert {k: record[k] for k in expected} == expected
    assert set(record) <= ALLOWED_FIELDS
    assert outcomes == ["written"]


def test_private_by_default_no_path_no_address_no_query(engine, tmp_path):
    log_path = tmp_path / "access.log"
    log = AccessLog(LogSink(str(log_path), Outcomes()), PRIVATE)
    decision = engine.decide(host="x.com", client_address="10.1.2.3")
    fields = access_event(decision, exchange())
    fields["http.request.headers.cookie"] = "session=SECRET"  # a bug elsewhere...
    fields["http.request.body.content"] = "password=SECRET"
    log.emit(fields)
    line = log_path.read_text()
    (record,) = read_records(log_path)
    assert "url.path" not in record and "source.ip" not in record
    assert "SECRET" not in line and "token" not in line
    assert "10.1.2.3" not in line.replace(record["user.name"], "")  # only as the identity


def test_blocked_and_refused_records(engine):
    blocked = access_event(
        engine.decide(host="malware.test", client_address="10.0.0.1"),
        exchange(status=403),
        "blocked",
    )
    assert blocked["event.type"] == ["denied"] and blocked["event.outcome"] == "failure"
    assert blocked["event.category"] == ["network"]  # ECS: `denied` is a network type
    assert "malware" in blocked["event.reason"]
    refused = access_event(
        engine.decide(host="x.com", client_address="203.0.113.5"), exchange(status=403), "blocked"
    )
    assert refused["labels.action"] == "refuse"
    assert "outside the policy's allowed networks" in refused["event.reason"]


def test_error_record(engine):
    fields = access_event(
        engine.decide(host="x.com", client_address="10.0.0.1"),
        exchange(
            status=None, response_bytes=None, response_head_bytes=None, error="Connection reset"
        ),
    )
    assert fields["event.outcome"] == "failure"
    assert fields["error.message"] == "Connection reset"
    assert "http.response.status_code" not in fields
    assert "http.response.bytes" not in fields and "http.response.body.bytes" not in fields


def test_tunnel_record_is_host_and_port_only(engine):
    decision = engine.decide(host="bank.test", sni="bank.test", client_address="10.0.0.1")
    fields = tunnel_event(decision, 443, "10.0.0.1")
    assert fields["event.action"] == "tunnel"
    assert (fields["url.domain"], fields["url.port"]) == ("bank.test", 443)
    assert fields["labels.action"] == "bypass"
    assert not {"url.path", "http.request.method", "url.scheme"} & set(fields)


def test_untrusted_identity_header_is_noted(engine):
    decision = engine.decide(host="x.com", client_address="10.0.0.1", header_value="ceo")
    fields = access_event(decision, exchange())
    assert fields["labels.identity_header"] == "ignored-untrusted-client"
    assert fields["user.name"] == "10.0.0.1"


def test_no_line_injection(engine, tmp_path):
    log_path = tmp_path / "access.log"
    log = AccessLog(LogSink(str(log_path), Outcomes()), OPEN)
    decision = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="a\u2028b")
    log.emit(access_event(decision, exchange(method='GET\n{"forged":1}', path="/a\r\nb")))
    assert len(log_path.read_text().splitlines()) == 1
    assert "forged" not in read_records(log_path)[0]


@pytest.mark.parametrize(
    "path, stripped",
    [
        ("/a?b=1", "/a"),
        ("/a#x", "/a"),
        ("/a;jsessionid=1", "/a"),
        ("/a", "/a"),
        ("?q", ""),
        # What a server serves, not what a matrix parameter or a dot segment hides:
        ("/;/../private/report-42", "/private/report-42"),
        ("/a;jsessionid=1/b", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/a/..", "/"),
        ("/../../etc", "/etc"),
        ("/file.v2.html", "/file.v2.html"),
        ("/.well-known/x.json", "/.well-known/x.json"),
        ("./a", "a"),
        ("../a/./b", "a/b"),
        ("a/.hidden/../b", "a/b"),
        ("/a/.", "/a/"),
        # Encoded, once or more (a server that decodes first reads the real thing):
        ("/a%3Ftoken=SECRET", "/a"),
        ("/f%3fq=SECRET", "/f"),
        ("/d%253Fq=SECRET", "/d"),
        ("/a%23frag", "/a"),
        ("/b%3bjsessionid=SECRET/c", "/b/c"),
        ("/%2e%2e/%3bSECRET", "/"),
        ("/x/%2E%2E/private", "/private"),
        ("/a%20b/%41", "/a%20b/%41"),  # other encodings are left as they are
    ],
)
def test_strip_query(path, stripped):
    assert strip_query(path) == stripped


def test_privacy_filter_alone():
    enforce = make_privacy_filter(PRIVATE)
    event = {"url.path": "/x", "source.ip": "1.2.3.4", "user.name": "u", "cookie": "c"}
    assert enforce(None, "info", event) == {"user.name": "u"}
    enforce = make_privacy_filter(OPEN)
    assert enforce(None, "info", {"url.path": "/x?y"}) == {"url.path": "/x"}


@pytest.mark.parametrize("settings", [PRIVATE, OPEN])
@pytest.mark.parametrize("chained", [False, True])
def test_emit_writes_what_the_processors_write(engine, tmp_path, monkeypatch, settings, chained):
    """`emit` does the processors' work in one go: the same bytes, line for line (an
    error record, a user name outside ASCII, a field the allow-list drops, and one that
    holds a key the processors write themselves, which goes through them)."""
    from auditproxy.sinks import accesslog
    from auditproxy.sinks.chain import LogChain

    monkeypatch.setattr(accesslog.time, "time", lambda: 1_764_400_000.123)
    decision = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="\u00e9\u2028")
    records = [
        access_event(decision, exchange()),
        access_event(decision, exchange(status=None, error="reset by peer?x=1")),
        {**tunnel_event(decision, 443, "10.0.0.1"), "cookie": "SECRET"},
        {"event.action": "access", "message": "kept where it is", "url.path": "/a?b"},
    ]
    lines = []
    for how in ("emit", "emit_through_processors"):
        path = tmp_path / f"{how}.log"
        chain = LogChain(KEY, chain_id="0123456789abcdef") if chained else None
        log = AccessLog(LogSink(str(path), Outcomes()), settings, chain)
        for fields in records:
            getattr(log, how)(dict(fields))
        lines.append(path.read_bytes())
    assert lines[0] == lines[1]
    assert b"SECRET" not in lines[0] and b"\\u00e9" in lines[0]


@pytest.mark.parametrize("settings", [PRIVATE, OPEN])
@pytest.mark.parametrize("chained", [False, True])
def test_emit_access_writes_what_emit_writes(engine, tmp_path, monkeypatch, settings, chained):
    """`emit_access` splices the decision's part, rendered once, with the request's: the
    same bytes as `emit(access_event(...))` (ASCII or not, errors, refusals, blocks, a
    field the allow-list drops, the same decision twice)."""
    from auditproxy.sinks import accesslog
    from auditproxy.sinks.chain import LogChain
    from auditproxy.sinks.records import request_fields

    monkeypatch.setattr(accesslog.time, "time", lambda: 1_764_400_000.5)
    plain = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="alice")
    accented = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="\u00e9")
    refused = plain.refused("loopback")
    cases = [
        (plain, exchange(), "access"),
        (plain, exchange(path="/caf\u00e9?q=1"), "access"),
        (accented, exchange(), "access"),
        (plain, exchange(status=None, error="reset", destination=("10.9.9.9", 80)), "access"),
        (refused, exchange(), "refused"),
        (plain, exchange(status=403), "blocked"),
        (plain, exchange(response_bytes=2**70), "access"),  # past orjson's integers
    ]
    lines = []
    for how in ("emit", "emit_access"):
        path = tmp_path / f"{how}.log"
        chain = LogChain(KEY, chain_id="0123456789abcdef") if chained else None
        log = AccessLog(LogSink(str(path), Outcomes()), settings, chain)
        for decision, exch, action in cases:
            if how == "emit":
                log.emit(access_event(decision, exch, action))
            else:
                log.emit_access(decision, request_fields(decision, exch, action))
        lines.append(path.read_bytes())
    assert lines[0] == lines[1]
    assert lines[0].count(b"\n") == len(cases)


@pytest.mark.parametrize(
    "now", [1_764_400_000.0, 1_764_400_000.0005, 1_764_400_000.999_999_9, 1_764_400_001.5, 1.25]
)
def test_a_spliced_line_s_timestamp_is_the_processor_s(monkeypatch, now):
    from auditproxy.sinks import accesslog

    monkeypatch.setattr(accesslog.time, "time", lambda: now)
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(now)))
    expected = f"{seconds}.{int((now - int(now)) * 1000):03d}Z"  # as it was formatted before
    for _ in range(2):  # the second formatted, then remembered
        assert accesslog.line_head() == b'{"@timestamp":"%b"' % expected.encode()
        assert accesslog.timestamp() == expected


def test_timestamp_processor_cache_moves_on():
    first = add_timestamp(None, "info", {})["@timestamp"]
    assert first.endswith("Z") and len(first) == 24


# --- the sink ---------------------------------------------------------------------------


def test_sink_follows_rotation(tmp_path):
    path = tmp_path / "access.log"
    outcomes = Outcomes()
    sink = LogSink(str(path), outcomes)
    sink.write("one")
    os.rename(path, tmp_path / "access.log.1")  # logrotate
    sink.write("two")  # still the old file until upkeep notices
    sink.maintain()
    sink.write("three")
    assert (tmp_path / "access.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    assert outcomes == ["written"] * 3


def test_sink_recreates_a_removed_file(tmp_path):
    path = tmp_path / "access.log"
    sink = LogSink(str(path), Outcomes())
    path.unlink()
    sink.reopen()
    sink.write("after")
    assert path.read_text() == "after\n"


def test_sink_full_disk_keeps_a_bounded_backlog_and_counts(tmp_path):
    """/dev/full answers every write with ENOSPC, like a full disk."""
    outcomes = Outcomes()
    sink = LogSink("/dev/full", outcomes, backlog_limit=3)
    for i in range(5):
        sink.write(f"r{i}")
    assert not sink.healthy
    assert sink.backlog == 3
    assert outcomes == ["dropped", "dropped"]  # the two oldest made room
    # The disk has room again: point the sink at a real file and let upkeep flush.
    target = tmp_path / "access.log"
    sink.path = str(target)
    sink._fd = None
    sink.maintain()
    assert target.read_text() == "r2\nr3\nr4\n"
    assert sink.healthy and sink.backlog == 0
    assert outcomes.count("written") == 3
    sink.write("r5")
    assert target.read_text().endswith("r5\n")


def test_sink_close_counts_what_it_could_not_write():
    outcomes = Outcomes()
    sink = LogSink("/dev/full", outcomes)
    sink.write("lost")
    sink.close()
    assert outcomes == ["dropped"]


def test_sink_unopenable_path_raises(tmp_path):
    with pytest.raises(OSError):
        LogSink(str(tmp_path / "no" / "such" / "dir.log"), Outcomes())


def test_sink_to_stdout(capfd):
    outcomes = Outcomes()
    sink = LogSink("-", outcomes)
    sink.write('{"a":1}')
    sink.maintain()
    assert capfd.readouterr().out == '{"a":1}\n'
    assert outcomes == ["written"]


def test_sink_removed_file_loses_nothing(tmp_path):
    """Deleted (not rotated) between checks: what went to it is written again."""
    path = tmp_path / "access.log"
    outcomes = Outcomes()
    sink = LogSink(str(path), outcomes)
    sink.write("one")
    sink.maintain()  # a check: "one" is safely in the file
    sink.write("two")
    path.unlink()  # someone removes the file (not logrotate)
    sink.write("three")  # lands in the deleted file
    sink.maintain()
    sink.write("four")
    assert path.read_text() == "two\nthree\nfour\n"
    assert outcomes == ["written"] * 4  # each counted once


def test_sink_rotation_does_not_duplicate(tmp_path):
    path = tmp_path / "access.log"
    sink = LogSink(str(path), Outcomes())
    sink.write("one")
    os.rename(path, tmp_path / "access.log.1")
    sink.write("two")
    sink.maintain()
    sink.write("three")
    assert (tmp_path / "access.log.1").read_text() == "one\ntwo\n"
    assert path.read_text() == "three\n"


def test_sink_cuts_back_a_half_written_line(tmp_path, monkeypatch):
    """A full disk takes part of a line, then refuses: the part is removed again."""
    path = tmp_path / "access.log"
    sink = LogSink(str(path), Outcomes())
    sink.write("whole")
    real_write = os.write
    calls = []

    def full_disk(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[:3]))  # what fitted
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    sink.write("cut-in-half")
    monkeypatch.undo()
    assert path.read_text() == "whole\n"
    sink.maintain()
    assert path.read_text() == "whole\ncut-in-half\n"


def test_sink_failure_is_reported_once_per_fault():
    faults = []
    sink = LogSink("/dev/full", Outcomes(), on_fault=faults.append)
    for _ in range(3):
        sink.write("x")
    assert len(faults) == 1 and "No space left on device" in faults[0]


def test_a_record_that_fails_to_render_is_still_counted(tmp_path):
    """Every record is counted once, written or dropped, even when a processor fails."""
    outcomes = Outcomes()
    log = AccessLog(LogSink(str(tmp_path / "access.log"), outcomes), OPEN)
    with pytest.raises(TypeError):
        log.emit({"event.action": "access", "url.path": 42})  # a bug upstream
    assert outcomes == ["dropped"]


def test_a_spliced_record_that_fails_is_still_counted(engine, tmp_path):
    outcomes = Outcomes()
    log = AccessLog(LogSink(str(tmp_path / "access.log"), outcomes), OPEN)
    decision = engine.decide(host="x.com", client_address="10.0.0.1")
    with pytest.raises(TypeError):
        log.emit_access(decision, {"event.action": "access", "url.path": 42})
    assert outcomes == ["dropped"]
