"""The floor under issue #16's in-process target: the least any audit add-on does for one
request, measured exactly as `run.py --only hooks` measures auditproxy.

    .venv/bin/python bench/floor.py [--requests 20000] [--gc-threshold N]

A stand-in add-on that keeps one sealed access record and three metric changes per
request, with auditproxy's own parts for them (the log chain's `Mac`, `line_head`,
orjson, the `Metrics` children, one `os.write` to a file) and nothing else: its
"decision" is one dict lookup, its header view one comprehension, and it has no identity,
no proxy authentication, no notice (no state read), no admission or body limits, no
refusals, no allow-list, no daily users. It runs in `workloads.HookDriver` in place of
`AuditProxy` (the same flows, mitmproxy's hook objects, the same mix of monitored sites,
one flow made before each request and not counted), so its p50 is what the 25 us target
leaves for everything auditproxy does beyond a record: on this machine about 21 us
(bench/RESULTS.md, part 4). The figures are a reference, not a target: no assertion here.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson
import workloads as w

from auditproxy.sinks.accesslog import ECS_CONSTANTS, line_head
from auditproxy.sinks.metrics import Metrics
from auditproxy.sinks.seal import Mac

WARM_UP_ROUNDS = 20  # the mix, before timing


class LeastAudit:
    """One sealed record and three metric changes a request; nothing else."""

    def __init__(self, log_path: Path) -> None:
        metrics = Metrics()
        self.requests = metrics.requests.labels("social", "example", "monitor", "2xx")
        self.response_bytes = metrics.response_bytes.labels("social")
        self.duration = metrics.request_duration.labels("social")
        self.mac = Mac(b"k" * 32)
        self.previous, self.sequence = b"", 0
        self.fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.decisions: dict[tuple[bytes | None, str], bytes] = {}

    def close(self) -> None:
        os.close(self.fd)

    def decision(self, host: bytes | None, peer: str) -> bytes:
        """The rule part of the record, rendered once per (host, client)."""
        found = self.decisions.get((host, peer))
        if found is None:
            fields = {
                **ECS_CONSTANTS,
                "rule.name": "social",
                "labels.category": "social",
                "labels.site": (host or b"").decode(),
                "labels.action": "monitor",
                "user.hash": "0" * 16,
            }
            found = self.decisions[(host, peer)] = orjson.dumps(fields)[1:-1]
        return found

    def requestheaders(self, flow: Any) -> None:
        view = {name.lower(): value for name, value in reversed(flow.request.headers.fields)}
        prefix = self.decision(view.get(b"host"), flow.client_conn.peername[0])
        flow.metadata["floor"] = (prefix, view)

    def responseheaders(self, flow: Any) -> None:
        _prefix, view = flow.metadata["floor"]
        if view.get(b"sec-fetch-dest") == b"document" and flow.response.stream:
            pass  # where a notice would be considered

    def response(self, flow: Any) -> None:
        prefix, _view = flow.metadata["floor"]
        request, response = flow.request, flow.response
        path = request.path
        size = len(response.raw_content or b"")
        duration = response.timestamp_end - request.timestamp_start
        fields = {
            "event.action": "access",
            "event.category": ["network", "web"],
            "event.type": ["access"],
            "event.outcome": "success" if response.status_code < 400 else "failure",
            "source.ip": flow.client_conn.peername[0],
            "url.scheme": request.scheme,
            "url.domain": request.host,
            "url.port": request.port,
            "url.path": path.partition("?")[0],
            "http.version": request.http_version,
            "http.request.method": request.method,
            "http.response.status_code": response.status_code,
            "http.response.body.bytes": size,
            "event.duration": int(duration * 1e9),
        }
        line = b'%b,%b,%b,"message":"access"' % (line_head(), prefix, orjson.dumps(fields)[1:-1])
        self.sequence += 1
        body = b'%b,"event.sequence":%d,"labels.log_chain":"0123456789abcdef"' % (
            line,
            self.sequence,
        )
        self.previous = self.mac.seal(self.previous, body)
        os.write(self.fd, b'%b,"event.hash":"%b"}\n' % (body, self.previous))
        self.requests.inc()
        self.response_bytes.inc(size)
        self.duration.observe(duration)


def measure(requests: int, threshold: int | None) -> dict[str, float]:
    from mitmproxy.proxy.layers import http as http_layer

    mix = w.request_mix(w.MONITORED_SITES)
    with tempfile.TemporaryDirectory() as folder, w.HookDriver(Path(folder)) as driver:
        audit = LeastAudit(Path(folder) / "floor.log")
        handlers = {
            "requestheaders": audit.requestheaders,
            "responseheaders": audit.responseheaders,
            "response": audit.response,
        }

        def invoke(event: Any) -> None:  # the driver's dispatch, for one add-on
            handlers[event.name](*event.args())

        driver.hook_requestheaders = lambda f: invoke(http_layer.HttpRequestHeadersHook(f))
        driver.hook_responseheaders = lambda f: invoke(http_layer.HttpResponseHeadersHook(f))
        driver.hook_response = lambda f: invoke(http_layer.HttpResponseHook(f))
        for request in mix * WARM_UP_ROUNDS:
            driver.exchange(request)
        if threshold is not None:
            gc.collect()
            gc.freeze()
            gc.set_threshold(threshold)
        samples = sorted(driver.exchange(mix[i % len(mix)]) for i in range(requests))
        audit.close()
        records = (Path(folder) / "floor.log").read_bytes().count(b"\n")
        driver.hook_done = lambda: None  # `AuditProxy` was configured but never ran
    n = len(samples)
    return {
        "p50_us": samples[n // 2] / 1000,
        "p99_us": samples[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": sum(samples) / n / 1000,
        "records": records,  # one line a request, the warm-up's too
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument(
        "--gc-threshold", type=int, help="gc.freeze() and this generation-0 threshold first"
    )
    args = parser.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result = measure(args.requests, args.gc_threshold)
    print(
        f"{started}, load {os.getloadavg()[0]:.2f}: the least audit, in-process, "
        f"{args.requests} requests (mix b): p50 {result['p50_us']:.1f} us, "
        f"p99 {result['p99_us']:.1f} us, mean {result['mean_us']:.1f} us"
    )


if __name__ == "__main__":
    main()
