"""Records for connections that are not one HTTP request, and the TLS failure reasons."""

from __future__ import annotations

import pytest

from auditproxy.decide.decision import Engine
from auditproxy.policy.load import load_policy
from auditproxy.sinks.connections import (
    TLS_REASONS,
    Traffic,
    connect_failure_event,
    tcp_event,
    tls_failure_event,
    tls_failure_reason,
    websocket_event,
)
from auditproxy.sinks.records import ALLOWED_FIELDS
from support.paths import POLICIES

ENGINE = Engine(load_policy(POLICIES / "small.yaml"), b"k" * 32)
TRAFFIC = Traffic(8022, "10.1.2.3", ("10.0.0.7", 8022), 120, 4096, 2_500_000_000)


def decision(host: str = "x.com", **kw: object):
    return ENGINE.decide(host=host, client_address="10.1.2.3", connect_to=host, **kw)


def test_a_tcp_record_has_bytes_each_way_and_where_it_connected() -> None:
    record = tcp_event(decision(), TRAFFIC)
    assert record["event.action"] == "tcp" and record["event.outcome"] == "success"
    assert (record["source.bytes"], record["destination.bytes"]) == (120, 4096)
    assert (record["destination.ip"], record["destination.port"]) == ("10.0.0.7", 8022)
    assert record["event.duration"] == 2_500_000_000
    assert record["event.category"] == ["network"]
    assert set(record) <= ALLOWED_FIELDS


def test_a_refused_tcp_connection_names_why() -> None:
    blocked = tcp_event(decision("malware.test"), TRAFFIC, refused=True)
    assert blocked["event.action"] == "blocked" and "denied" in blocked["event.type"]
    refused = tcp_event(decision("127.0.0.1"), TRAFFIC, refused=True)
    assert refused["event.action"] == "refused"
    assert refused["labels.refusal"] == "destination-loopback"


def test_a_websocket_record_counts_messages_never_their_content() -> None:
    record = websocket_event(decision(), TRAFFIC, 3, 5)
    assert record["labels.websocket_messages_client"] == "3"
    assert record["labels.websocket_messages_server"] == "5"
    assert record["network.protocol"] == "websocket"
    assert set(record) <= ALLOWED_FIELDS


def test_tls_failure_and_connect_failure_records() -> None:
    failed = tls_failure_event(decision(), 443, "10.1.2.3", "client", "certificate-rejected", "x")
    assert failed["event.action"] == "tls-failed" and failed["labels.tls_side"] == "client"
    assert failed["event.reason"] == "certificate-rejected"
    assert set(failed) <= ALLOWED_FIELDS
    connect = connect_failure_event(decision(), 9, "10.1.2.3", "Connection refused")
    assert connect["event.action"] == "connect-failed" and connect["url.port"] == 9


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "The client does not trust the proxy's certificate for x.com (sslv3 alert "
            "certificate unknown)",
            "certificate-rejected",
        ),
        ("The client disconnected during the handshake.", "closed-during-handshake"),
        ("Certificate verify failed: unable to get issuer", "server-certificate-invalid"),
        ("The remote server does not speak TLS.", "not-tls"),
        ("something new in mitmproxy 13", "handshake-failed"),
    ],
)
def test_tls_failure_reasons_are_a_fixed_vocabulary(message: str, reason: str) -> None:
    assert tls_failure_reason("client", message) == reason
    assert reason in TLS_REASONS
