"""The access log's records: what happened, as ECS fields (flat dotted keys).

One builder per kind of record (`access_event`, `tunnel_event`, `notice_event`); the
fields a record may carry at all are `ALLOWED_FIELDS`, which the log's privacy filter
enforces whatever the code before it put in. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from auditproxy.decide.decision import BAD_HOST, Decision

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
        "http.response.body.bytes",
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
        # Where the proxy connected, and connection-level records (sinks.connections).
        "destination.domain",
        "destination.ip",
        "destination.port",
        "destination.bytes",
        "source.bytes",
        "network.transport",
        "network.protocol",
        "labels.names_differ",
        "labels.identity_scripts",
        "labels.tls_side",
        "labels.connection_end",
        "labels.websocket_messages_client",
        "labels.websocket_messages_server",
        "labels.log_dropped",
        "labels.log_dropped_after",
        # Who the person is (issue #14): the policy group that decided, how proxy
        # authentication went, and a balancer's forwarded address worth noting.
        "user.group.name",
        "labels.auth_scheme",
        "labels.auth_failure",
        "labels.forwarded",
    }
)


@dataclass(slots=True)
class Exchange:
    """What the log needs to know about one HTTP exchange, taken off the flow."""

    method: str
    scheme: str
    port: int
    path: str
    http_version: str
    status: int | None
    response_bytes: int | None  # the body's bytes as sent
    duration_ns: int | None
    client_address: str
    error: str | None = None
    destination: tuple[str, int] | None = None  # where the proxy connected (ip, port)
    response_head_bytes: int | None = None  # status line and headers (README: how counted)


def url_domain(host: str) -> str:
    """ECS `url.domain`: an IPv6 literal keeps its brackets (RFC 2732), as ECS asks."""
    return f"[{host}]" if ":" in host else host


# The rule fields of recent decisions (`Engine.decide` remembers its decisions: the same
# object comes back for every request of a person to a site), by the decision's identity;
# the decision is held with them, so the identity cannot be another's. Event loop only.
_RULE_FIELDS: dict[int, tuple[Decision, dict[str, Any]]] = {}
RULE_FIELDS_LIMIT = 4096


def rule_fields(decision: Decision) -> dict[str, Any]:
    """The policy's and the person's fields (a fresh dict): made once per decision."""
    found = _RULE_FIELDS.get(id(decision))
    if found is not None and found[0] is decision:
        return found[1].copy()
    fields = _rule_fields(decision)
    if len(_RULE_FIELDS) >= RULE_FIELDS_LIMIT:
        _RULE_FIELDS.clear()
    _RULE_FIELDS[id(decision)] = (decision, fields)
    return fields.copy()


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
    identity = decision.identity
    if identity.ignored_header is not None:
        # The front proxy's identity header came from where that proxy could not have
        # put it (straight from a client, or inside a tunnel): ignored, noted.
        fields["labels.identity_header"] = identity.ignored_header.value
    if identity.mixed_scripts is not None:
        fields["labels.identity_scripts"] = identity.mixed_scripts  # a look-alike name
    if decision.group is not None:
        fields["user.group.name"] = decision.group  # the policy's name, never the directory's
    auth = decision.auth
    if auth is not None:
        if auth.scheme is not None and auth.failure is None:
            fields["labels.auth_scheme"] = auth.scheme.value
        if auth.failure is not None:
            fields["labels.auth_failure"] = auth.failure  # identified by address: why
    if decision.forwarded is not None:
        fields["labels.forwarded"] = decision.forwarded
    if decision.sni:
        fields["tls.client.server_name"] = decision.sni.lower()
    if decision.destination is not None:
        fields["destination.domain"] = decision.destination
    if decision.names_differ:
        fields["labels.names_differ"] = "true"  # classified by the strictest name
    return fields


def destination_fields(destination: tuple[str, int] | None) -> dict[str, Any]:
    """`destination.ip` and `.port`: where the proxy actually connected."""
    if destination is None:
        return {}
    return {"destination.ip": destination[0], "destination.port": destination[1]}


def refusal_fields(decision: Decision) -> dict[str, Any]:
    """A refused destination's reason, for the record."""
    if decision.refusal == BAD_HOST:
        reason = "request refused: its Host header is repeated or names no host"
    else:
        where = decision.destination or decision.host
        reason = f"destination refused: {decision.refusal} ({where})"
    return {"labels.refusal": decision.refusal_label, "event.reason": reason}


def access_event(decision: Decision, exchange: Exchange, action: str = "access") -> dict:
    """An `access` (or `blocked`) record for one HTTP request."""
    fields = rule_fields(decision)
    fields.update(request_fields(decision, exchange, action))
    return fields


def request_fields(decision: Decision, exchange: Exchange, action: str = "access") -> dict:
    """`access_event` without the decision's `rule_fields`: what the request adds."""
    status = exchange.status
    denied = action in ("blocked", "refused")
    if exchange.error is not None or status is None or denied:
        outcome = "failure"
    else:
        outcome = "success" if status < 400 else "failure"
    fields: dict[str, Any] = {
        "event.action": action,
        # ECS expects `denied` for network events, not web ones (web: access, error, info).
        "event.category": ["network"] if denied else ["network", "web"],
        "event.type": ["denied"] if denied else ["access"],
        "event.outcome": outcome,
        "source.ip": exchange.client_address,
        "url.scheme": exchange.scheme,
        "url.domain": url_domain(decision.host),
        "url.port": exchange.port,
        "url.path": exchange.path,
        "http.version": exchange.http_version,
        "http.request.method": exchange.method,
    }
    if status is not None:
        fields["http.response.status_code"] = status
    if exchange.response_bytes is not None:  # ECS: body alone, and head plus body
        fields["http.response.body.bytes"] = exchange.response_bytes
        if exchange.response_head_bytes is not None:
            fields["http.response.bytes"] = exchange.response_head_bytes + exchange.response_bytes
    if exchange.duration_ns is not None:
        fields["event.duration"] = exchange.duration_ns
    if exchange.error:
        fields["error.message"] = exchange.error
    if exchange.destination is not None:
        fields["destination.ip"], fields["destination.port"] = exchange.destination
    if action == "refused":
        fields.update(refusal_fields(decision))
    elif action == "blocked":
        fields["event.reason"] = (
            "client address outside the policy's allowed networks"
            if not decision.allowed_client
            else f"blocked by policy category {decision.match.category!r}"
        )
    return fields


def tunnel_event(
    decision: Decision,
    port: int,
    client_address: str,
    destination: tuple[str, int] | None = None,
) -> dict:
    """A `tunnel` record: a TLS connection passed through undecrypted (host and port, and
    where the proxy connected if it already has)."""
    fields = rule_fields(decision)
    fields.update(destination_fields(destination))
    fields.update(
        {
            "event.action": "tunnel",
            "event.category": ["network"],
            "event.type": ["connection", "allowed"],
            "event.outcome": "success",
            "source.ip": client_address,
            "url.domain": url_domain(decision.host),
            "url.port": port,
        }
    )
    return fields


def notice_event(decision: Decision, action: str, scope: str) -> dict:
    """A `notice-shown`, `notice-offered` (plain http: the response may not have been a
    page the person saw) or `notice-acknowledged` record."""
    fields = rule_fields(decision)
    fields.update(
        {
            "event.action": action,
            "event.category": ["web"],
            "event.type": ["info"],
            "event.outcome": "success",
            "url.domain": url_domain(decision.host),
            "labels.notice_scope": scope,
        }
    )
    return fields


def log_dropped_event(declared: str, count: int, after: str = "") -> dict:
    """A `log-dropped` record: the log sink gave up on records (a disk that refused writes
    for too long); `declared` is the hash chain's range, "CHAIN:FIRST-LAST"; `after`, the
    `event.hash` of the record this one follows (docs/log-chain.md)."""
    fields = {
        "event.action": "log-dropped",
        "event.category": ["file"],
        "event.type": ["info"],
        "event.outcome": "failure",
        "event.reason": f"the access log could not be written: {count} record(s) dropped",
        "labels.log_dropped": declared,
    }
    if after:
        fields["labels.log_dropped_after"] = after
    return fields
