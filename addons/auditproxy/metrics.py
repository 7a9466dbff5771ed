"""Prometheus metric families, and the small HTTP server for /metrics and /healthz.

Every family lives in a registry owned by one `Metrics` instance, so the add-on can be
loaded twice (tests, script reloads) without "duplicated timeseries" errors. Label values
come only from the policy (`category`, `site`), fixed vocabularies (`action`, `reason`,
`stage`...) or `other`: never a user, an address, a host or a URL.

The server runs in its own thread: a scrape never waits for the proxy's event loop, and
/healthz can tell when that loop has stalled (its heartbeat is older than it should be).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from auditproxy import __version__

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
ERROR_STAGES = (
    "policy",
    "classify",
    "identify",
    "enforce",
    "log",
    "metrics",
    "notice",
    "state",
    "tunnel",
    "reload",
)
STATE_BACKENDS = ("sqlite", "redis", "memory")


def status_class(status: int | None) -> str:
    if status is None or not 100 <= status <= 599:
        return "none"
    return STATUS_CLASSES[status // 100 - 1]


class _CachedLabels:
    """`labels(*values)` from a dict once a child exists: prometheus_client validates and
    locks on every call, and the proxy asks for the same few children on every request.
    (Only for families whose children are never removed.)"""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._children: dict[tuple, Any] = {}
        super().__init__(*args, **kwargs)

    def labels(self, *values: Any, **kwargs: Any) -> Any:
        if kwargs:
            return super().labels(*values, **kwargs)  # type: ignore[misc]
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = super().labels(*values)  # type: ignore[misc]
        return child


class _Counter(_CachedLabels, Counter):
    pass


class _Gauge(_CachedLabels, Gauge):
    pass


class _Histogram(_CachedLabels, Histogram):
    pass


class Metrics:
    """All of auditproxy's metric families, in a registry of their own."""

    def __init__(self, mitmproxy_version: str = "") -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = _Counter(
            "auditproxy_requests",
            "Requests handled, by policy category, site, action and response status class.",
            ["category", "site", "action", "status_class"],
            registry=r,
        )
        self.notices = _Counter(
            "auditproxy_notices",
            "Daily notices: shown (injected into a page) and acknowledged (link followed).",
            ["category", "site", "event"],
            registry=r,
        )
        self.notices_unstyled = _Counter(
            "auditproxy_notices_unstyled",
            "Notices shown without their styles because the page's Content-Security-Policy "
            "could not allow them safely (readable, plain; the policy is never weakened).",
            ["category"],
            registry=r,
        )
        self.notice_skipped = _Counter(
            "auditproxy_notice_skipped",
            "Pages that were due the daily notice but could not carry it safely, by reason.",
            ["reason"],
            registry=r,
        )
        self.response_bytes = _Counter(
            "auditproxy_response_bytes",
            "Response body bytes sent to clients, by policy category.",
            ["category"],
            registry=r,
        )
        self.request_duration = _Histogram(
            "auditproxy_request_duration_seconds",
            "Time from the first byte of the request to the end of the response.",
            ["category"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.hook_duration = _Histogram(
            "auditproxy_hook_duration_seconds",
            "Time the add-on itself spends in each mitmproxy hook (its overhead per request).",
            ["hook"],
            buckets=HOOK_BUCKETS,
            registry=r,
        )
        self.tunnels = _Counter(
            "auditproxy_tunnels",
            "TLS tunnels opened through the proxy, by category and action (bypass: not decrypted).",
            ["category", "action"],
            registry=r,
        )
        self.errors = _Counter(
            "auditproxy_errors",
            "Faults inside the add-on, by pipeline stage. Traffic went on unchanged (fail open).",
            ["stage"],
            registry=r,
        )
        self.log_records = _Counter(
            "auditproxy_log_records",
            "Access-log records by outcome: written, or dropped (could not be written).",
            ["outcome"],
            registry=r,
        )
        self.policy_reloads = _Counter(
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
        self.daily_users = _Gauge(
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
        self.build_info.labels(__version__, mitmproxy_version).set(1)
        for outcome in ("written", "dropped"):
            self.log_records.labels(outcome)
        for result in ("success", "failure"):
            self.policy_reloads.labels(result)
        for stage in ERROR_STAGES:
            self.errors.labels(stage)
        for backend in STATE_BACKENDS:
            self.state_backend.labels(backend)
        self._policy_labels: tuple[str, str] | None = None

    def set_policy(self, name: str, sha256: str) -> None:
        """Expose the policy now in force, replacing the previous one's series."""
        if self._policy_labels is not None:
            self.policy_info.remove(*self._policy_labels)
        self._policy_labels = (name, sha256)
        self.policy_info.labels(name, sha256).set(1)

    def family_names(self) -> set[str]:
        """Every metric name this registry exports (as Prometheus sees it after a scrape)."""
        names: set[str] = set()
        for family in self.registry.collect():
            for sample in family.samples:
                names.add(sample.name)
            if family.type == "counter":
                names.add(family.name + "_total")
            elif family.type == "histogram":
                names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
            else:
                names.add(family.name)
        return names


class Heartbeat:
    """The proxy's event loop ticks this; /healthz fails when it stops ticking."""

    def __init__(self, max_age: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.max_age = max_age
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        self._last = self._clock()

    def age(self) -> float:
        return self._clock() - self._last

    def healthy(self) -> bool:
        return self.age() <= self.max_age


class MetricsServer:
    """`/metrics` (Prometheus text format) and `/healthz` on their own port and thread."""

    def __init__(
        self,
        metrics: Metrics,
        heartbeat: Heartbeat,
        host: str,
        port: int,
        status: Callable[[], dict] | None = None,
    ) -> None:
        self.metrics = metrics
        self.heartbeat = heartbeat
        self.status = status or dict
        handler = _make_handler(self)
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="auditproxy-metrics", daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def _make_handler(server: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = f"auditproxy/{__version__}"
        timeout = 10

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.metrics.registry))
            elif path == "/healthz":
                age = server.heartbeat.age()
                ok = server.heartbeat.healthy()
                body = {"status": "ok" if ok else "stalled", "event_loop_age_seconds": age}
                body.update(server.status())
                payload = json.dumps(body, sort_keys=True).encode() + b"\n"
                self._send(200 if ok else 503, "application/json", payload)
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics\n")

        def do_HEAD(self) -> None:
            self.do_GET()

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every 15 s would drown the proxy's own log

    return Handler
