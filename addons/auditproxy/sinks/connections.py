"""Records for what is not one HTTP request: raw TCP inside a tunnel, WebSocket
connections, failed TLS handshakes, connections that could not be made, and refusals.

Every connection through the proxy leaves at least one record, whatever it carries
(`event.action`: `tcp`, `websocket`, `tls-failed`, `connect-failed`, `refused`; the
README's vocabulary). ECS: bytes each way are `source.bytes` (client to server) and
`destination.bytes` (server to client); where the proxy connected is `destination.ip`
and `.port`. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditproxy.decide.decision import Decision
from auditproxy.sinks.records import destination_fields, refusal_fields, rule_fields, url_domain


@dataclass(frozen=True, slots=True)
class Traffic:
    """What went through one connection."""

    port: int
    client_address: str
    destination: tuple[str, int] | None  # where the proxy connected (ip, port)
    bytes_from_client: int
    bytes_from_server: int
    duration_ns: int | None
    error: str | None = None  # how it ended, if not by a normal close


def _connection_fields(decision: Decision, traffic: Traffic) -> dict[str, Any]:
    fields = rule_fields(decision)
    fields.update(
        {
            "event.category": ["network"],
            "source.ip": traffic.client_address,
            "url.domain": url_domain(decision.host),
            "url.port": traffic.port,
            "network.transport": "tcp",
            "source.bytes": traffic.bytes_from_client,
            "destination.bytes": traffic.bytes_from_server,
        }
    )
    fields.update(destination_fields(traffic.destination))
    if traffic.duration_ns is not None:
        fields["event.duration"] = traffic.duration_ns
    if traffic.error:
        fields["error.message"] = traffic.error[:300]
    return fields


def tcp_event(
    decision: Decision, traffic: Traffic, *, refused: bool = False, start: bool = False
) -> dict:
    """A raw TCP connection inside a tunnel (not TLS, not HTTP): when its first bytes pass
    (`start`), and at its end."""
    fields = _connection_fields(decision, traffic)
    if start:
        fields.update(
            {
                "event.action": "tcp",
                "event.type": ["connection", "start"],
                "event.outcome": "success",
            }
        )
        return fields
    if refused:
        fields.update(
            {
                "event.action": "blocked" if decision.refusal is None else "refused",
                "event.type": ["connection", "denied"],
                "event.outcome": "failure",
            }
        )
        if decision.refusal is not None:
            fields.update(refusal_fields(decision))
        else:
            fields["event.reason"] = f"blocked by policy category {decision.match.category!r}"
        return fields
    fields.update(
        {
            "event.action": "tcp",
            "event.type": ["connection", "end"],
            "event.outcome": "failure" if traffic.error else "success",
            "labels.connection_end": "error" if traffic.error else "closed",
        }
    )
    return fields


def idle_tunnel_event(decision: Decision, traffic: Traffic) -> dict:
    """A tunnel (CONNECT) that ended having carried nothing else worth a record: left idle,
    or closed before its first request. Still a connection through the proxy."""
    fields = _connection_fields(decision, traffic)
    fields.update(
        {
            "event.action": "tunnel",
            "event.type": ["connection", "end"],
            "event.outcome": "success",
            "labels.connection_end": "idle",
        }
    )
    return fields


def websocket_event(
    decision: Decision, traffic: Traffic, messages_from_client: int, messages_from_server: int
) -> dict:
    """A WebSocket connection, at its end: its messages counted each way, never read."""
    fields = _connection_fields(decision, traffic)
    fields.update(
        {
            "event.action": "websocket",
            "event.type": ["connection", "end"],
            "event.outcome": "failure" if traffic.error else "success",
            "network.protocol": "websocket",
            "labels.websocket_messages_client": str(messages_from_client),
            "labels.websocket_messages_server": str(messages_from_server),
        }
    )
    return fields


def tls_failure_event(
    decision: Decision, port: int, client_address: str, side: str, reason: str, detail: str
) -> dict:
    """A TLS handshake that failed: with the client (`side` client: it did not trust our
    certificate, no shared cipher, ...) or with the server."""
    fields = rule_fields(decision)
    fields.update(
        {
            "event.action": "tls-failed",
            "event.category": ["network"],
            "event.type": ["connection"],  # with outcome failure (ECS: no `error` for network)
            "event.outcome": "failure",
            "event.reason": reason,
            "labels.tls_side": side,
            "source.ip": client_address,
            "url.domain": url_domain(decision.host),
            "url.port": port,
            "network.transport": "tcp",
            "error.message": detail[:300],
        }
    )
    return fields


def connect_failure_event(decision: Decision, port: int, client_address: str, error: str) -> dict:
    """A connection the proxy could not make for a tunnel (closed port, no such host)."""
    fields = rule_fields(decision)
    fields.update(
        {
            "event.action": "connect-failed",
            "event.category": ["network"],
            "event.type": ["connection"],
            "event.outcome": "failure",
            "source.ip": client_address,
            "url.domain": url_domain(decision.host),
            "url.port": port,
            "network.transport": "tcp",
            "error.message": error[:300],
        }
    )
    return fields


# mitmproxy's handshake error texts -> a bounded reason (the metric's `reason` label).
_TLS_REASONS = (
    ("does not trust the proxy's certificate", "certificate-rejected"),
    ("disconnected during the handshake", "closed-during-handshake"),
    ("connection closed early", "closed-early"),
    ("cannot agree on a TLS version", "protocol-version"),
    ("no shared cipher", "no-shared-cipher"),
    ("Cannot parse ClientHello", "bad-client-hello"),
    ("Certificate verify failed", "server-certificate-invalid"),
    ("does not speak TLS", "not-tls"),
)
TLS_REASONS = tuple(sorted({reason for _, reason in _TLS_REASONS} | {"handshake-failed"}))


def tls_failure_reason(side: str, message: str) -> str:
    """A handshake failure's reason, from mitmproxy's message, in a fixed vocabulary."""
    for text, reason in _TLS_REASONS:
        if text in message:
            return reason
    return "handshake-failed"
