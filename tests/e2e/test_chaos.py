"""The chaos run (issue #13, item 5): every hostile client and origin at once against the
real `auditproxy run`, while an innocent person keeps browsing.

For `ATTACK_SECONDS`, with the proxy's open-file limit at 1,024:

    outsider (127.0.0.2)   1,100 idle connections; 4 connections of endless header lines
    insider  (127.0.0.1)   4 connections of endless header lines; 150 idle connections;
                           heads and bodies sent a byte at a time; 256 KiB cookies;
                           uploads of 100,000 one-byte chunks; downloads of endless chunked
                           responses (fast, slowly, and in one-byte chunks); an origin
                           whose response head is 5 MB
    innocent (127.0.0.3)   one request after another, on new connections, plain and HTTPS

What must hold, with bounds generous enough never to flake on a busy machine (an innocent
request takes about 20 ms here when nothing else runs):

    - every innocent request is answered, each within INNOCENT_BOUND, and has exactly one
      access record;
    - resident memory stays under the memory at start plus MEMORY_BOUND;
    - /healthz answers 200 throughout, and every limit says it worked in
      auditproxy_refusals_total; refusal records stay few (summed up per source).

The figures of a run (latencies, memory) are in bench/RESULTS.md, not asserted here.
"""

from __future__ import annotations

import contextlib
import json
import resource
import threading
import time
import urllib.request
from collections.abc import Callable

import pytest

from support import ProxyClient, Reply, Upstream
from support import hostile as h
from support.paths import POLICIES
from support.proxy import AuditProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ATTACK_SECONDS = 15.0
INNOCENT_BOUND = 2.0  # seconds per innocent request
MEMORY_BOUND = 300 * 1024 * 1024  # bytes over the resident memory at start
OUTSIDER, INSIDER, INNOCENT = "127.0.0.2", "127.0.0.1", "127.0.0.3"


def raise_own_file_limit(wanted: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Innocent:
    """One request after another from 127.0.0.3: each path unique, each timed."""

    def __init__(self, proxy: AuditProxyProcess) -> None:
        self.plain = ProxyClient("127.0.0.1", proxy.port, source_address=INNOCENT, timeout=10)
        self.tls = ProxyClient(
            "127.0.0.1", proxy.port, proxy.ca_file, source_address=INNOCENT, timeout=10
        )
        self.paths: list[str] = []
        self.times: list[float] = []
        self.failures: list[str] = []

    def run(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            path, client = f"/innocent/{n}", self.tls if n % 5 == 4 else self.plain
            scheme = "https" if client is self.tls else "http"
            started = time.monotonic()
            try:
                status = client.get(f"{scheme}://news.example{path}").status
                if status != 200:
                    self.failures.append(f"{path}: {status}")
            except Exception as e:
                self.failures.append(f"{path}: {e!r}")
            self.times.append(time.monotonic() - started)
            self.paths.append(path)
            n += 1
            stop.wait(0.05)


def health_checks(proxy: AuditProxyProcess, stop: threading.Event, answers: list) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while not stop.is_set():
        started = time.monotonic()
        try:
            with opener.open(proxy.metrics_url("/healthz"), timeout=5) as response:
                answers.append((response.status, time.monotonic() - started))
        except Exception as e:
            answers.append((repr(e), time.monotonic() - started))
        stop.wait(0.5)


@pytest.fixture
def chaos_policy(tmp_path):
    text = (POLICIES / "small.yaml").read_text()
    allowed = f"allow: [{INSIDER}/32, {INNOCENT}/32]"
    text = text.replace('allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]', allowed)
    assert allowed in text
    path = tmp_path / "chaos.yaml"
    path.write_text(text)
    return path


def test_an_innocent_client_is_served_through_the_chaos(
    start_proxy: Callable[..., AuditProxyProcess], chaos_policy, upstream: Upstream
) -> None:
    raise_own_file_limit(4096)
    stop = threading.Event()
    upstream.route("endless.example", "/", h.endless_body(stop), prefix=True)
    upstream.route("tiny.example", "/", h.tiny_chunked_body(stop), prefix=True)
    upstream.route("giant.example", "/", h.giant_head(5000))
    upstream.route("news.example", "/upload", Reply(200, b"ok"), prefix=True)
    proxy = start_proxy(
        "--set", "auditproxy_head_timeout=3", "--set", "auditproxy_body_timeout=3",
        "--set", "auditproxy_idle_timeout=5",
        policy=chaos_policy, nofile=(1024, 1024),
    )  # fmt: skip
    assert (
        ProxyClient("127.0.0.1", proxy.port, source_address=INNOCENT)
        .get("http://news.example/warm-up")
        .status
        == 200
    )
    start_rss = h.rss(proxy.pid)

    innocent = Innocent(proxy)
    health: list = []
    results: dict[str, list] = {}

    def attack(name: str, fn: Callable[[], object]) -> threading.Thread:
        def run() -> None:
            try:
                results.setdefault(name, []).append(fn())
            except Exception as e:  # an attacker's own failure is not the test's
                results.setdefault(name, []).append(repr(e))

        return threading.Thread(target=run, name=name, daemon=True)

    def repeat(fn: Callable[[], object]) -> Callable[[], list]:
        def loop() -> list:
            out = []
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    out.append(fn())
                stop.wait(0.2)
            return out

        return loop

    threads = [
        *(attack("outsider-headers", lambda: h.endless_headers(proxy.port, stop, OUTSIDER))
          for _ in range(4)),
        *(attack("insider-headers", lambda: h.endless_headers(proxy.port, stop, INSIDER))
          for _ in range(4)),
        *(attack("slow-head", lambda: h.slow_head(proxy.port, stop, INSIDER)) for _ in range(8)),
        *(attack("slow-body", lambda: h.slow_body(proxy.port, stop, INSIDER)) for _ in range(8)),
        *(attack("download", lambda: h.download(proxy.port, "http://endless.example/", stop,
                                                INSIDER)) for _ in range(2)),
        *(attack("slow-download", lambda: h.download(proxy.port, "http://endless.example/s",
                                                     stop, INSIDER, rate=20_000))
          for _ in range(2)),
        *(attack("tiny-download", lambda: h.download(proxy.port, "http://tiny.example/", stop,
                                                     INSIDER)) for _ in range(2)),
        attack("cookies", repeat(lambda: h.huge_cookie(proxy.port, 256 * 1024, INSIDER))),
        attack("tiny-upload", repeat(lambda: h.tiny_chunks(proxy.port, 100_000, INSIDER,
                                                           "/upload/tiny"))),
        attack("giant-head", repeat(lambda: ProxyClient("127.0.0.1", proxy.port,
                                                        source_address=INSIDER)
                                    .get("http://giant.example/").status)),
        threading.Thread(target=innocent.run, args=(stop,), daemon=True),
        threading.Thread(target=health_checks, args=(proxy, stop, health), daemon=True),
    ]  # fmt: skip
    samples: list[int] = []
    sampler = threading.Thread(target=lambda: samples.extend(h.sample_until(stop, proxy.pid)))
    with (
        h.idle_sockets(proxy.port, 1100, OUTSIDER) as outsiders,
        h.idle_sockets(proxy.port, 150, INSIDER) as insiders,
    ):
        sampler.start()
        for thread in threads:
            thread.start()
        time.sleep(ATTACK_SECONDS)
        stop.set()
        for thread in [*threads, sampler]:
            thread.join(30)
        opened = len(outsiders), len(insiders)
    alive = proxy.process is not None and proxy.process.poll() is None
    assert alive, f"the proxy died:\n{proxy.stderr()[-3000:]}"

    # The innocent person was served throughout, promptly, and logged once per request.
    assert innocent.failures == [], innocent.failures[:5]
    assert len(innocent.paths) >= 20, len(innocent.paths)
    assert max(innocent.times) < INNOCENT_BOUND, sorted(innocent.times)[-5:]
    wanted = set(innocent.paths)
    records = proxy.wait_for_records(
        len(wanted), lambda r: r.get("url.path") in wanted and r["event.action"] == "access", 20
    )
    per_path = [r["url.path"] for r in records]
    assert sorted(per_path) == sorted(wanted), "an innocent request without exactly one record"

    # Memory within the stated bound; health answered all along.
    assert max(samples) - start_rss < MEMORY_BOUND, (start_rss, max(samples))
    assert health and all(status == 200 for status, _ in health), health
    # Every limit was hit, and said so.
    for reason in ("client", "head-size", "head-timeout", "body-timeout", "origin-head-size"):
        assert proxy.metric("auditproxy_refusals_total", reason=reason) >= 1, reason
    refused = [r for r in proxy.records() if r["event.action"] == "refused"]
    attempts = sum(proxy.metric("auditproxy_refusals_total", reason=r) for r in ("client",))
    assert len(refused) < 50 < attempts, (len(refused), attempts)  # summed up, not one each
    print(
        "\nchaos:",
        json.dumps(
            {
                "innocent_requests": len(innocent.times),
                "innocent_max_s": round(max(innocent.times), 3),
                "innocent_worst": [
                    (p, round(t, 2))
                    for t, p in sorted(zip(innocent.times, innocent.paths, strict=True))[-4:]
                ],
                "innocent_median_s": round(sorted(innocent.times)[len(innocent.times) // 2], 3),
                "rss_start_mb": round(start_rss / 2**20),
                "rss_max_mb": round(max(samples) / 2**20),
                "health_max_s": round(max(t for _, t in health), 3),
                "idle_opened": opened,
                "refused_records": len(refused),
                "refusal_attempts_client": attempts,
            }
        ),
    )
