# Over 300 lines: every metric family of one registry, declared in one place.
"""Prometheus metric families, and the distinct users of the day.

Every family lives in a registry owned by one `Metrics` instance, so the add-on can be
loaded twice (tests, script reloads) without "duplicated timeseries" errors. Label values
come only from the policy (`category`, `site`), fixed vocabularies (`action`, `reason`,
`stage`...) or `other`: never a user, an address, a host or a URL. Only the recorder
(`sinks.recorder`) changes them; `/metrics` is served by `sinks.http`.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from datetime import date
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from auditproxy import __version__
from auditproxy.decide.admission import Reason
from auditproxy.decide.destinations import REASONS as DESTINATION_REASONS
from auditproxy.policy.days import Calendar
from auditproxy.sinks.identity_metrics import IdentityMetrics

# `*_created` series double every counter's cardinality and no dashboard reads them.
disable_created_metrics()

# The add-on's own work per hook is in microseconds; the budget is 50 us at p50.
HOOK_BUCKETS = (
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.01,
    0.1,
)
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# Fixed vocabularies (documented in the README's metric reference).
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
ERROR_STAGES = (  # the add-on's stages and upkeep tasks that can fault
    "classify",
    "enforce",
    "connection",
    "log",
    "metrics",
    "notice",
    "state",
    "tunnel",
    "reload",
    "auth",
    "directory",
    "admit",
)
STATE_BACKENDS = ("sqlite", "redis", "memory")
REFUSAL_REASONS = (  # besides decide.admission's Reason
    "request-bad-host",
    *(f"destination-{reason}" for reason in DESTINATION_REASONS),
)
STATE_LOSSES = ("removed", "replaced", "corrupt", "flushed")  # notice.resilient


LABEL_CACHE_LIMIT = 4096  # children remembered per family; label values are bounded anyway


def remember_children(metric: Any, fast: bool = False) -> None:
    """Make `metric.labels(...)` a dictionary lookup after the first call for a set of
    values. prometheus_client validates the values and takes a lock on every call (about
    2 us; a request asked four families). Only for families whose children are never
    removed: a removed child would stay remembered and count unseen.

    `fast`: the children count without locks (`LoopValue`, `FastCounter`,
    `FastHistogram`): only for families changed from the event loop alone."""
    find: Callable[..., Any] = metric.labels
    children: dict[tuple[str, ...], Any] = {}

    def labels(*values: str, **by_name: str) -> Any:
        if by_name:
            return find(*values, **by_name)
        child = children.get(values)
        if child is None:
            if len(children) >= LABEL_CACHE_LIMIT:
                children.clear()
            child = find(*values)
            if fast:
                histogram = hasattr(child, "_upper_bounds")
                child = FastHistogram(child) if histogram else FastCounter(child)
            children[values] = child
        return child

    metric.labels = labels


class LoopValue:
    """A sample's value without prometheus_client's lock (its `MutexValue` takes one on
    every change: about half a microsecond, and a request changed eight). For values
    changed from one thread only, the event loop's: the /metrics thread only reads them,
    and a float is read whole under the GIL."""

    __slots__ = ("_value",)

    def __init__(self, value: float = 0.0) -> None:
        self._value = value

    def inc(self, amount: float) -> None:
        self._value += amount

    def set(self, value: float, timestamp: float | None = None) -> None:
        self._value = float(value)

    def get(self) -> float:
        return self._value

    def set_exemplar(self, exemplar: Any) -> None:
        pass

    def get_exemplar(self) -> None:
        return None


def _loop_value(value: Any) -> LoopValue:
    """`value` as a `LoopValue` (what it counted so far kept; one already is kept)."""
    return value if isinstance(value, LoopValue) else LoopValue(value.get())


class FastCounter:
    """A counter child's `inc` on a `LoopValue`; anything else goes to the child."""

    __slots__ = ("_child", "_value")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._value = child._value = _loop_value(child._value)

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("Counters can only be incremented by non-negative amounts.")
        self._value._value += amount

    def __getattr__(self, name: str) -> Any:
        return getattr(self._child, name)


class FastHistogram:
    """A histogram child's `observe` on `LoopValue`s: the bucket found by bisection, two
    additions (prometheus_client: a lock for the sum, a loop over the bounds, a lock for
    the bucket). The same samples are exported: the child's values are these."""

    __slots__ = ("_bounds", "_buckets", "_child", "_sum")

    def __init__(self, child: Any) -> None:
        self._child = child
        self._bounds = list(child._upper_bounds)  # ends with +Inf
        self._sum = child._sum = _loop_value(child._sum)
        self._buckets = child._buckets = [_loop_value(b) for b in child._buckets]

    def observe(self, amount: float) -> None:
        self._sum._value += amount
        self._buckets[bisect_left(self._bounds, amount)]._value += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._child, name)


def status_class(status: int | None) -> str:
    if status is None or not 100 <= status <= 599:
        return "none"
    return STATUS_CLASSES[status // 100 - 1]


class Metrics:
    """All of auditproxy's metric families, in a registry of their own."""

    def __init__(self, mitmproxy_version: str = "") -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "auditproxy_requests",
            "Requests handled, by policy category, site, action and response status class.",
            ["category", "site", "action", "status_class"],
            registry=r,
        )
        self.notices = Counter(
            "auditproxy_notices",
            "Notices: shown (in a certain top-level page), offered (in a plain-http response that "
            'may not have been one) and acknowledged (the person said "I understand").',
            ["category", "site", "event"],
            registry=r,
        )
        self.notices_unstyled = Counter(
            "auditproxy_notices_unstyled",
            "Notices shown without their styles because the page's Content-Security-Policy "
            "could not allow them safely (readable, plain; the policy is never weakened).",
            ["category"],
            registry=r,
        )
        self.notice_skipped = Counter(
            "auditproxy_notice_skipped",
            "Pages that were due the daily notice but could not carry it safely, by reason.",
            ["reason"],
            registry=r,
        )
        self.response_bytes = Counter(
            "auditproxy_response_bytes",
            "Response body bytes sent to clients, by policy category.",
            ["category"],
            registry=r,
        )
        self.request_duration = Histogram(
            "auditproxy_request_duration_seconds",
            "Time from the first byte of the request to the end of the response.",
            ["category"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.hook_duration = Histogram(
            "auditproxy_hook_duration_seconds",
            "Time the add-on itself spends in each mitmproxy hook (its overhead per request).",
            ["hook"],
            buckets=HOOK_BUCKETS,
            registry=r,
        )
        self.tunnels = Counter(
            "auditproxy_tunnels",
            "TLS tunnels opened through the proxy, by category and action (bypass: not decrypted).",
            ["category", "action"],
            registry=r,
        )
        self.connections = Counter(
            "auditproxy_connections",
            "Connections that are not one HTTP request, at their end (raw TCP inside a "
            "tunnel, WebSocket), by kind, category, action and outcome.",
            ["kind", "category", "action", "outcome"],
            registry=r,
        )
        self.tls_failures = Counter(
            "auditproxy_tls_failures",
            "TLS handshakes that failed, by category, side (client: e.g. it does not trust "
            "the proxy's CA; server) and reason.",
            ["category", "side", "reason"],
            registry=r,
        )
        self.connect_failures = Counter(
            "auditproxy_connect_failures",
            "Tunnels whose server connection could not be made (closed port, unknown host), "
            "by category.",
            ["category"],
            registry=r,
        )
        self.errors = Counter(
            "auditproxy_errors",
            "Faults inside the add-on, by pipeline stage. Traffic went on unchanged (fail open).",
            ["stage"],
            registry=r,
        )
        self.log_records = Counter(
            "auditproxy_log_records",
            "Access-log records by outcome: written, or dropped (could not be written).",
            ["outcome"],
            registry=r,
        )
        self.log_sequence = Gauge(
            "auditproxy_log_sequence",
            "The event.sequence of the last access-log record sealed, in the chain named by "
            "auditproxy_log_chain_info: the last record in the log files must reach it "
            "(auditproxy verify-log cannot see records cut from the end of the newest file).",
            registry=r,
        )
        self.log_chain_info = Gauge(
            "auditproxy_log_chain_info",
            "The access log's hash chain in use (value 1): its labels.log_chain.",
            ["chain"],
            registry=r,
        )
        self.policy_reloads = Counter(
            "auditproxy_policy_reloads",
            "Policy reloads by result: success, or failure (the last good policy stays).",
            ["result"],
            registry=r,
        )
        self.policy_last_reload_successful = Gauge(
            "auditproxy_policy_last_reload_successful",
            "1 if the last attempt to load the policy file succeeded, else 0.",
            registry=r,
        )
        self.policy_info = Gauge(
            "auditproxy_policy_info",
            "The policy in force (value 1): its name and the SHA-256 of its file.",
            ["name", "sha256"],
            registry=r,
        )
        self.daily_users = Gauge(
            "auditproxy_daily_users",
            "Distinct users seen today (the policy's calendar day), by category.",
            ["category"],
            registry=r,
        )
        self.build_info = Gauge(
            "auditproxy_build_info",
            "Build information (value 1).",
            ["version", "mitmproxy_version"],
            registry=r,
        )
        self.state_backend = Gauge(
            "auditproxy_state_backend",
            "The daily notice state in use (value 1, the others 0): the configured store "
            "(sqlite or redis), or memory, the fallback while that store fails.",
            ["backend"],
            registry=r,
        )
        self.refusals = Counter(
            "auditproxy_refusals",
            "Connections and requests the proxy refused or closed, by reason: client "
            "(outside the policy's networks), its own limits (limit-global, limit-files, "
            "limit-address, head-size, head-timeout, body-timeout, origin-head-size), a "
            "destination it never connects to (destination-loopback, -link-local, "
            "-unspecified, -multicast, -proxy-host, -policy), request-bad-host.",
            ["reason"],
            registry=r,
        )
        self.client_connections = Gauge(
            "auditproxy_client_connections",
            "Client connections open now (admitted ones; refused ones close at once).",
            registry=r,
        )
        self.open_files = Gauge(
            "auditproxy_open_files",
            "Open file descriptors of the proxy process (sockets included), as last counted.",
            registry=r,
        )
        self.open_files_limit = Gauge(
            "auditproxy_open_files_limit",
            "The process's open-file limit (raised to the hard limit at start).",
            registry=r,
        )
        self.state_lost = Counter(
            "auditproxy_state_lost",
            "Times the notice state lost its data while running, by cause: removed, "
            "replaced or corrupt (the SQLite file), flushed (Redis restarted empty or "
            "flushed). Each time today's claims were written back from memory.",
            ["cause"],
            registry=r,
        )
        for reason in Reason:
            self.refusals.labels(reason.value)
        for cause in STATE_LOSSES:
            self.state_lost.labels(cause)
        self.identity = IdentityMetrics(r)  # authentication, groups, balancers
        self.build_info.labels(__version__, mitmproxy_version).set(1)
        for outcome in ("written", "dropped"):
            self.log_records.labels(outcome)
        for result in ("success", "failure"):
            self.policy_reloads.labels(result)
        for stage in ERROR_STAGES:
            self.errors.labels(stage)
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        for backend in STATE_BACKENDS:
            self.state_backend.labels(backend)
        self._policy_labels: tuple[str, str] | None = None
        self._log_chain: str | None = None
        # The families a request or a record changes; not the `*_info` ones (`remove`).
        for family in (
            self.notices,
            self.notice_skipped,
            self.daily_users,
            self.tunnels,
            self.connections,
            self.refusals,
        ):
            remember_children(family)
        # Changed for every request, and only on the event loop (the hooks, the log sink
        # and its upkeep): without prometheus_client's locks (`LoopValue`).
        for family in (
            self.requests,
            self.response_bytes,
            self.request_duration,
            self.log_records,
            self.hook_duration,
        ):
            remember_children(family, fast=True)

    def set_policy(self, name: str, sha256: str) -> None:
        """Expose the policy now in force, replacing the previous one's series."""
        if self._policy_labels is not None:
            self.policy_info.remove(*self._policy_labels)
        self._policy_labels = (name, sha256)
        self.policy_info.labels(name, sha256).set(1)

    def set_log_chain(self, chain: str | None) -> None:
        """Expose the access log's chain now in use, replacing the previous one's series."""
        if chain == self._log_chain:
            return
        if self._log_chain is not None:
            self.log_chain_info.remove(self._log_chain)
        self._log_chain = chain
        if chain is not None:
            self.log_chain_info.labels(chain).set(1)


class DailyUsers:
    """Distinct users per category for the current day; forgets yesterday at midnight."""

    def __init__(self, calendar: Calendar) -> None:
        self.calendar = calendar
        self._day: date | None = None
        self._users: dict[str, set[int]] = {}

    def add(self, category: str, user_key: str) -> bool:
        """Record a user; True when they are new in this category today."""
        day = self.calendar.today()
        if day != self._day:
            self._day, self._users = day, {}
        users = self._users.get(category)
        if users is None:
            users = self._users[category] = set()
        key = hash(user_key)
        if key in users:
            return False
        users.add(key)
        return True

    def counts(self) -> dict[str, int]:
        if self.calendar.today() != self._day:
            self._day, self._users = self.calendar.today(), {}
        return {category: len(users) for category, users in self._users.items()}

    def count(self, category: str) -> int:
        users = self._users.get(category)
        return len(users) if users is not None else 0
