"""The access log's records: what happened, as ECS fields (flat dotted keys).

One builder per kind of record (`access_event`, `tunnel_event`, `notice_event`); the
fields a record may carry at all are `ALLOWED_FIELDS`, which the log's privacy filter
enforces whatever the code before it put in. Pure: no I/O.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from auditproxy.decide.decision import Decision

ECS_VERSION = "8.11.0"
DATASET = "auditproxy.access"

# Every field a record may carry. Anything else is dropped by `enforce_privacy`.
ALLOWED_FIELDS = frozenset(
    {
        "@timestamp",
        "message",
        "ecs.version",
        "event.kind",
        "event.module",
        "event.dataset",
        "event.action",
        "event.category",
        "event.type",
        "event.outcome",
        "event.duration",
        "event.reason",
        "user.name",
        "user.hash",
        "labels.user_key_id",
        "labels.identity_source",
        "labels.identity_header",
        "labels.notice_scope",
        "labels.category",
        "labels.site",
        "labels.action",
        "source.ip",
        "url.scheme",
        "url.domain",
        "url.port",
        "url.path",
        "http.version",
        "http.request.method",
        "http.response.status_code",
        "http.response.bytes",
        "tls.client.server_name",
        "rule.ruleset",
        "rule.version",
        "rule.name",
        "rule.category",
        "error.message",
        "observer.product",
        "observer.vendor",
        "observer.version",
        "observer.hostname",
        # refusals (`refusal_event`)
        "labels.refusal",
        "labels.refusal_count",
        "event.start",
        "event.end",
    }
)


def strip_query(path: str) -> str:
    """A path without its query string, fragment or matrix parameters."""
    for sep in ("?", "#", ";"):
        cut = path.find(sep)
        if cut >= 0:
            path = path[:cut]
    return path


@dataclass(slots=True)
class Exchange:
    """What the log needs to know about one HTTP exchange, taken off the flow."""

    method: str
    scheme: str
    port: int
    path: str
    http_version: str
    status: int | None
    response_bytes: int | None
    duration_ns: int | None
    client_address: str
    error: str | None = None


def _rule_fields(decision: Decision) -> dict[str, Any]:
    match = decision.match
    fields: dict[str, Any] = {
        "rule.ruleset": decision.ruleset,
        "rule.version": decision.version,
        "rule.name": match.rule,
        "rule.category": match.category,
        "labels.category": match.category,
        "labels.site": match.site,
        "labels.action": decision.action_label,
        "labels.identity_source": decision.identity.source.value,
    }
    fields.update(decision.user)
    if decision.identity.untrusted_header:
        # Someone sent the front proxy's identity header straight to us: ignored, noted.
        fields["labels.identity_header"] = "ignored-untrusted-client"
    if decision.sni:
        fields["tls.client.server_name"] = decision.sni.lower()
    return fields


def access_event(decision: Decision, exchange: Exchange, action: str = "access") -> dict:
    """An `access` (or `blocked`) record for one HTTP request."""
    fields = _rule_fields(decision)
    status = exchange.status
    if exchange.error is not None or status is None or action == "blocked":
        outcome = "failure"
    else:
        outcome = "success" if status < 400 else "failure"
    fields.update(
        {
            "event.action": action,
            "event.category": ["network", "web"],
            "event.type": ["denied"] if action == "blocked" else ["access"],
            "event.outcome": outcome,
            "source.ip": exchange.client_address,
            "url.scheme": exchange.scheme,
            "url.domain": decision.host,
            "url.port": exchange.port,
            "url.path": exchange.path,
            "http.version": exchange.http_version,
            "http.request.method": exchange.method,
        }
    )
    if status is not None:
        fields["http.response.status_code"] = status
    if exchange.response_bytes is not None:
        fields["http.response.bytes"] = exchange.response_bytes
    if exchange.duration_ns is not None:
        fields["event.duration"] = exchange.duration_ns
    if exchange.error:
        fields["error.message"] = exchange.error
    if action == "blocked":
        fields["event.reason"] = (
            "client address outside the policy's allowed networks"
            if not decision.allowed_client
            else f"blocked by policy category {decision.match.category!r}"
        )
    return fields


def tunnel_event(decision: Decision, port: int, client_address: str) -> dict:
    """A `tunnel` record: a TLS connection passed through undecrypted (host and port only)."""
    fields = _rule_fields(decision)
    fields.update(
        {
            "event.action": "tunnel",
            "event.category": ["network"],
            "event.type": ["connection", "allowed"],
            "event.outcome": "success",
            "source.ip": client_address,
            "url.domain": decision.host,
            "url.port": port,
        }
    )
    return fields


def notice_event(decision: Decision, action: str, scope: str) -> dict:
    """A `notice-shown` or `notice-acknowledged` record."""
    fields = _rule_fields(decision)
    fields.update(
        {
            "event.action": action,
            "event.category": ["web"],
            "event.type": ["info"],
            "event.outcome": "success",
            "url.domain": decision.host,
            "labels.notice_scope": scope,
        }
    )
    return fields


def _iso(seconds: float) -> str:
    whole = int(seconds)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{stamp}.{int((seconds - whole) * 1000):03d}Z"


def refusal_event(
    reason: str,
    why: str,
    source: str | None,
    *,
    count: int = 1,
    span: tuple[float, float] | None = None,
    ruleset: str | None = None,
    version: str | None = None,
) -> dict:
    """A `refused` record: a connection turned away before (or instead of) a request.

    `count` > 1 with its `span` (first, last) sums up the refusals of one reason and source
    that were not written one by one (`sinks.refusals`). `source` None: from many sources.
    """
    fields: dict[str, Any] = {
        "event.action": "refused",
        "event.category": ["network"],
        "event.type": ["connection", "denied"],
        "event.outcome": "failure",
        "event.reason": why,
        "labels.refusal": reason,
        "labels.refusal_count": count,
    }
    if source is not None:
        fields["source.ip"] = source
    if span is not None:
        fields["event.start"], fields["event.end"] = _iso(span[0]), _iso(span[1])
    if ruleset is not None:
        fields["rule.ruleset"], fields["rule.version"] = ruleset, version
    return fields
