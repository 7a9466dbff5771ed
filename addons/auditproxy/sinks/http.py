"""`/metrics`, `/healthz` and `/readyz` on their own port and thread.

`/metrics` is prometheus_client's own WSGI app (text or OpenMetrics by the scraper's
Accept header, gzip when asked); `/healthz` (liveness) and `/readyz` (readiness, see
`sinks.health`) are small JSON answers next to it. The server runs in its own thread, so
a scrape never waits for the proxy's event loop, and `/healthz` can tell when that loop
has stalled (its heartbeat is older than it should be).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from auditproxy import __version__
from auditproxy.sinks.metrics import Metrics

StartResponse = Callable[..., Any]


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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    server_version = f"auditproxy/{__version__}"
    timeout = 10  # a client that connects and sends nothing is dropped

    def log_message(self, format: str, *args: object) -> None:
        return  # scrapes every 15 s would drown the proxy's own log


def health_app(
    metrics: Metrics,
    heartbeat: Heartbeat,
    status: Callable[[], dict],
    ready: Callable[[], tuple[bool, dict]] | None = None,
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """The WSGI app: `/healthz` and `/readyz` here, `/metrics` by prometheus_client, 404
    otherwise."""
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path == "/healthz":
            ok = heartbeat.healthy()
            body = {"status": "ok" if ok else "stalled", "event_loop_age_seconds": heartbeat.age()}
            body.update(status())
            payload = json.dumps(body, sort_keys=True).encode() + b"\n"
            return _answer(start_response, "200 OK" if ok else "503 Service Unavailable", payload)
        if path == "/readyz" and ready is not None:
            ok, body = ready()
            payload = json.dumps(body, sort_keys=True).encode() + b"\n"
            return _answer(start_response, "200 OK" if ok else "503 Service Unavailable", payload)
        text = b"not found: try /metrics\n"
        return _answer(start_response, "404 Not Found", text, "text/plain; charset=utf-8")

    return app


def _answer(
    start_response: StartResponse,
    status: str,
    body: bytes,
    content_type: str = "application/json",
) -> list[bytes]:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    start_response(status, headers)
    return [body]


class MetricsServer:
    """The endpoint's server and its thread."""

    def __init__(
        self,
        metrics: Metrics,
        heartbeat: Heartbeat,
        host: str,
        port: int,
        status: Callable[[], dict] | None = None,
        ready: Callable[[], tuple[bool, dict]] | None = None,
    ) -> None:
        app = health_app(metrics, heartbeat, status or dict, ready)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        server = type("Server", (_Server,), {"address_family": family})  # IPv4 or IPv6
        self.httpd = make_server(host, port, app, server, handler_class=_QuietHandler)
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
