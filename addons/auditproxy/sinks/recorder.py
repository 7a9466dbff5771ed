"""The one place that writes what happened: access records and metrics.

Stages leave what they decided in the flow's `FlowState` (or, for a tunnel, return it);
the recorder turns that into the access log's records and the metric changes, and counts
faults. Nothing else writes a record or changes a request metric. Pure: no mitmproxy.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from auditproxy.decide.admission import Reason
from auditproxy.decide.decision import Decision, Engine
from auditproxy.flowstate import Answered, Counts, FlowState
from auditproxy.notice.reasons import SkipReason
from auditproxy.policy.model import Action
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.connections import (
    Traffic,
    connect_failure_event,
    idle_tunnel_event,
    tcp_event,
    tls_failure_event,
    tls_failure_reason,
    websocket_event,
)
from auditproxy.sinks.metrics import DailyUsers, Metrics, status_class
from auditproxy.sinks.records import (
    Exchange,
    log_dropped_event,
    notice_event,
    request_fields,
    tunnel_event,
)
from auditproxy.sinks.refusals import RefusalLog, refusal_event

logger = logging.getLogger("auditproxy")

FAULT_LOG_INTERVAL = 10.0  # seconds between tracebacks of the same stage
CHILDREN_LIMIT = 4096  # label sets whose metric children `Recorder` remembers


class _Children:
    """The metric children every request of one decision changes: looked up once per
    label set (category, site, action, group: few, whatever the number of people), not
    four label lookups a request. `requests` by response status (None: no response)."""

    __slots__ = ("group_requests", "request_duration", "requests", "response_bytes")

    def __init__(self, metrics: Metrics, decision: Decision) -> None:
        category = decision.match.category
        self.requests: dict[int | None, Any] = {}
        self.response_bytes = metrics.response_bytes.labels(category)
        self.request_duration = metrics.request_duration.labels(category)
        self.group_requests = (
            metrics.identity.group_requests.labels(decision.group, category, decision.action_label)
            if decision.group is not None
            else None
        )


class Recorder:
    """Access records and metrics, for the access log and the daily-user count in force."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.access_log: AccessLog | None = None
        self.daily_users: DailyUsers | None = None
        self.refusals = RefusalLog()
        self._last_fault_log: dict[str, float] = {}
        # By the labels they carry: a per-decision key would grow with people x sites.
        self._by_labels: dict[tuple[str, str, str, str | None], _Children] = {}

    def emit(self, fields: dict) -> None:
        if self.access_log is not None:
            self.access_log.emit(fields)

    def emit_access(self, decision: Decision, exchange: Exchange, action: str) -> None:
        """An `access_event` record, its decision's part rendered once (`AccessLog`)."""
        if self.access_log is not None:
            self.access_log.emit_access(decision, request_fields(decision, exchange, action))

    # ------------------------------------------------------------------ requests

    def request(self, state: FlowState, exchange: Exchange) -> None:
        """A request's records (the notice's first, then its own) and its metrics. Once."""
        decision = state.decision
        if state.recorded or decision is None:
            return
        state.recorded = True
        match = decision.match
        m = self.metrics
        if state.notice_shown is not None:
            # Without fetch metadata (plain http) the response may have gone to a frame or
            # a script's fetch(): the notice was offered, not certainly shown.
            shown = state.notice_shown.certain
            m.notices.labels(match.category, match.site, "shown" if shown else "offered").inc()
            if not state.notice_styled:
                m.notices_unstyled.labels(match.category).inc()
            action = "notice-shown" if shown else "notice-offered"
            self.emit(notice_event(decision, action, state.notice_shown.scope))
        if state.acknowledged_scope is not None:
            m.notices.labels(match.category, match.site, "acknowledged").inc()
            self.emit(notice_event(decision, "notice-acknowledged", state.acknowledged_scope))
        elif decision.refusal is not None:
            m.refusals.labels(decision.refusal_label).inc()
            self.emit_access(decision, exchange, "refused")
        else:
            if not decision.allowed_client:
                m.refusals.labels("client").inc()
            blocked = state.answered in (Answered.BLOCKED, Answered.REFUSED)
            self.emit_access(decision, exchange, "blocked" if blocked else "access")
        children = self._children(decision)
        status = exchange.status
        requests = children.requests.get(status)
        if requests is None:
            requests = children.requests[status] = m.requests.labels(
                match.category, match.site, decision.action_label, status_class(status)
            )
        requests.inc()
        if children.group_requests is not None:
            children.group_requests.inc()
        if exchange.response_bytes:
            children.response_bytes.inc(exchange.response_bytes)
        if exchange.duration_ns is not None:
            children.request_duration.observe(exchange.duration_ns / 1e9)
        users = self.daily_users
        if (
            users is not None
            and decision.allowed_client
            and users.add(match.category, decision.identity.key)
        ):
            m.daily_users.labels(match.category).set(users.count(match.category))

    def _children(self, decision: Decision) -> _Children:
        """The metric children a decision's requests change, found once per label set."""
        match = decision.match
        key = (match.category, match.site, decision.action_label, decision.group)
        found = self._by_labels.get(key)
        if found is None:
            if len(self._by_labels) >= CHILDREN_LIMIT:
                self._by_labels.clear()
            found = self._by_labels[key] = _Children(self.metrics, decision)
        return found

    # ------------------------------------------------------------------ who

    def auth_validated(self, scheme: str, outcome: str) -> None:
        self.metrics.identity.auth_validations.labels(scheme, outcome).inc()

    def auth_challenged(self, reason: str) -> None:
        self.metrics.identity.auth_challenges.labels(reason).inc()

    def auth_fallback(self, reason: str) -> None:
        self.metrics.identity.auth_fallbacks.labels(reason).inc()

    def directory_lookup(self, reason: str, cached: bool) -> None:
        source = "cache" if cached else "directory"
        self.metrics.identity.directory_lookups.labels(reason, source).inc()

    def forwarded(self, result: str) -> None:
        self.metrics.identity.forwarded.labels(result).inc()

    def notice_skipped(self, reason: SkipReason) -> None:
        """A page due the notice that could not carry it, by reason."""
        self.metrics.notice_skipped.labels(reason.value).inc()

    # ------------------------------------------------------------------ tunnels

    def tunnel(
        self,
        decision: Decision,
        port: int,
        client_address: str,
        destination: tuple[str, int] | None = None,
    ) -> None:
        """A TLS tunnel classified at its ClientHello; `bypass` ones get a `tunnel` record."""
        self.metrics.tunnels.labels(decision.match.category, decision.action_label).inc()
        if decision.action is Action.BYPASS:
            self.emit(tunnel_event(decision, port, client_address, destination))

    # ------------------------------------------------------------------ connections

    def connection(self, kind: str, decision: Decision, traffic: Traffic, counts: Counts) -> None:
        """A raw TCP or WebSocket connection, at its end (`kind`: tcp, websocket)."""
        outcome = "failure" if traffic.error else "success"
        m = self.metrics
        m.connections.labels(kind, decision.match.category, decision.action_label, outcome).inc()
        if kind == "websocket":
            fields = websocket_event(
                decision, traffic, counts.messages_from_client, counts.messages_from_server
            )
        else:
            fields = tcp_event(decision, traffic)
        self.emit(fields)

    def connection_start(self, kind: str, decision: Decision, traffic: Traffic) -> None:
        """A raw TCP connection's first bytes: it is on record even if it never ends."""
        self.emit(tcp_event(decision, traffic, start=True))

    def idle_tunnel(self, decision: Decision, traffic: Traffic) -> None:
        """A tunnel that carried nothing else worth a record."""
        self.metrics.tunnels.labels(decision.match.category, decision.action_label).inc()
        self.emit(idle_tunnel_event(decision, traffic))

    def connection_refused(self, decision: Decision, traffic: Traffic) -> None:
        """A raw TCP connection the proxy refused to open (blocked site or destination)."""
        m = self.metrics
        m.connections.labels("tcp", decision.match.category, decision.action_label, "failure").inc()
        if decision.refusal is not None:
            m.refusals.labels(decision.refusal_label).inc()
        self.emit(tcp_event(decision, traffic, refused=True))

    def tls_failure(
        self, decision: Decision, port: int, client_address: str, side: str, message: str
    ) -> None:
        reason = tls_failure_reason(side, message)
        self.metrics.tls_failures.labels(decision.match.category, side, reason).inc()
        self.emit(tls_failure_event(decision, port, client_address, side, reason, message))

    def connect_failure(
        self, decision: Decision, port: int, client_address: str, error: str
    ) -> None:
        self.metrics.connect_failures.labels(decision.match.category).inc()
        self.emit(connect_failure_event(decision, port, client_address, error))

    # ------------------------------------------------------------------ refusals

    def refused(self, reason: Reason, source: str, engine: Engine | None = None) -> None:
        """A connection turned away: counted always, written as `sinks.refusals` allows."""
        self.metrics.refusals.labels(reason.value).inc()
        if self.refusals.note(reason.value, source):
            policy = engine.policy if engine is not None else None
            self.emit(
                refusal_event(
                    reason.value,
                    reason.text,
                    source,
                    ruleset=policy.name if policy else None,
                    version=policy.sha256 if policy else None,
                )
            )

    def flush_refusals(self, engine: Engine | None = None, *, force: bool = False) -> None:
        """Write the refusals summed up over the interval that ended (upkeep, every tick)."""
        if not (force or self.refusals.due()):
            return
        policy = engine.policy if engine is not None else None
        for s in self.refusals.flush():
            self.emit(
                refusal_event(
                    s.reason,
                    Reason(s.reason).text,
                    s.source,
                    count=s.count,
                    span=(s.start, s.end),
                    ruleset=policy.name if policy else None,
                    version=policy.sha256 if policy else None,
                )
            )

    # ------------------------------------------------------------------ faults

    def fault(self, stage: str, message: str | None = None) -> None:
        """Count a fault inside the add-on and log it (tracebacks at most every 10 s)."""
        self.metrics.errors.labels(stage).inc()
        now = time.monotonic()
        if now - self._last_fault_log.get(stage, float("-inf")) < FAULT_LOG_INTERVAL:
            return
        self._last_fault_log[stage] = now
        # WARNING, not ERROR: the proxy survives these, and mitmproxy aborts its start-up
        # on any ERROR (a corrupt state file must not keep the web from staff). The
        # counter is what alerts.
        if message:
            logger.warning("auditproxy %s fault (traffic continues): %s", stage, message)
        else:
            logger.warning("auditproxy %s fault (traffic continues)", stage, exc_info=True)

    def log_record(self, outcome: str) -> None:
        """The log file's report for each record: `written` or `dropped`."""
        self.metrics.log_records.labels(outcome).inc()

    def log_dropped(self, chain: LogChain) -> None:
        """A `log-dropped` record for each range of records the log sink gave up on, once
        the log takes writes again. Each names the hash of the record it follows (sealed
        the moment it is emitted), so that it verifies even right after the gap."""
        for value, count in chain.take_dropped():
            self.emit(log_dropped_event(value, count, chain.cursor.hash))
