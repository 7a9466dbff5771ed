"""Hostile clients and files against `auditproxy run`, with figures: what each attack costs
the proxy and an innocent person (issue #13). Run from the repository root:

    .venv/bin/python bench/attacks.py [--json FILE] [--only NAME,...]

To measure another tree (before a change), put its `addons` first on the path:
`PYTHONPATH=/path/to/other/addons .venv/bin/python bench/attacks.py --baseline`
(`--baseline` leaves out the options that tree does not know).

Each attack runs for a few seconds against a fresh proxy in upstream mode towards the
tests' one-process internet (tests/support), on loopback; an innocent client (127.0.0.3)
sends one request after another meanwhile. Reported: the innocent requests' median and
worst latency and failures, /healthz's worst latency, the proxy's resident memory at start,
at its highest and after, and what the attacker saw. Everything is bounded (bytes per
connection, connections, seconds) so that the old code, which has no limits, cannot take
the machine down.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from support import CertAuthority, ProxyClient, Reply, Upstream  # noqa: E402
from support import hostile as h  # noqa: E402
from support.paths import POLICIES  # noqa: E402
from support.proxy import AuditProxyProcess  # noqa: E402

OUTSIDER, INSIDER, INNOCENT = "127.0.0.2", "127.0.0.1", "127.0.0.3"
MAX_ATTACK_BYTES = 300 * 1024 * 1024  # per endless-header connection: the old code keeps all


class Bench:
    def __init__(self, work: Path, baseline: bool) -> None:
        self.work, self.baseline = work, baseline
        self.ca = CertAuthority()
        self.stop = threading.Event()
        self.upstream = Upstream(self.ca).start()
        self.ca_file = self.ca.write_ca(work)
        up = self.upstream
        up.route("endless.example", "/", h.endless_body(self.stop), prefix=True)
        up.route("tiny.example", "/", h.tiny_chunked_body(self.stop), prefix=True)
        up.route("news.example", "/", Reply(200, b"<p>ok</p>"), prefix=True)
        text = (
            (POLICIES / "small.yaml")
            .read_text()
            .replace(
                'allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]',
                f"allow: [{INSIDER}/32, {INNOCENT}/32]",
            )
        )
        self.policy = work / "policy.yaml"
        self.policy.write_text(text)
        self.n = 0

    def proxy(self, *args: str, nofile: tuple[int, int] | None = None) -> AuditProxyProcess:
        self.n += 1
        workdir = self.work / f"proxy-{self.n}"
        workdir.mkdir()
        self.policy.write_text(self.policy.read_text())
        return AuditProxyProcess(
            workdir,
            [] if self.baseline else list(args),
            policy=self.policy,
            upstream_mode=self.upstream.proxy_mode,
            upstream_ca=self.ca_file,
            nofile=nofile,
        )

    def close(self) -> None:
        self.stop.set()
        self.upstream.close()
        self.ca.close()


def innocent(proxy: AuditProxyProcess, stop: threading.Event, out: dict) -> None:
    client = ProxyClient("127.0.0.1", proxy.port, source_address=INNOCENT, timeout=5)
    times, failures, n = [], 0, 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            client.get(f"http://news.example/innocent/{n}")
        except Exception:
            failures += 1
        times.append(time.monotonic() - started)
        n += 1
        stop.wait(0.05)
    out.update(
        innocent_n=len(times),
        innocent_failures=failures,
        innocent_p50_ms=round(statistics.median(times) * 1000, 1) if times else None,
        innocent_max_ms=round(max(times) * 1000, 1) if times else None,
    )


def health(proxy: AuditProxyProcess, stop: threading.Event, out: dict) -> None:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    worst, failures = 0.0, 0
    while not stop.is_set():
        started = time.monotonic()
        try:
            with opener.open(proxy.metrics_url("/healthz"), timeout=5) as response:
                response.read()
        except Exception:
            failures += 1
        worst = max(worst, time.monotonic() - started)
        stop.wait(0.5)
    out.update(healthz_max_ms=round(worst * 1000, 1), healthz_failures=failures)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def measured(proxy: AuditProxyProcess, seconds: float, out: dict) -> Iterator[threading.Event]:
    """Innocent traffic, health checks and memory samples while the block's attack runs."""
    stop = threading.Event()
    samples: list[int] = []
    start_rss, start_cpu = h.rss(proxy.pid), cpu_seconds(proxy.pid)
    threads = [
        threading.Thread(target=innocent, args=(proxy, stop, out)),
        threading.Thread(target=health, args=(proxy, stop, out)),
        threading.Thread(target=lambda: samples.extend(h.sample_until(stop, proxy.pid))),
    ]
    for t in threads:
        t.start()
    try:
        yield stop
        stop.wait(seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    out.update(
        rss_start_mb=start_rss >> 20,
        rss_max_mb=max(samples) >> 20 if samples else None,
        proxy_cpu_percent=round(100 * (cpu_seconds(proxy.pid) - start_cpu) / seconds),
    )


def in_threads(count: int, fn: Callable[[], object]) -> tuple[list, list[threading.Thread]]:
    results: list = []
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(count)]
    for t in threads:
        t.start()
    return results, threads


def endless_headers(b: Bench, source: str) -> dict:
    out: dict = {}
    with b.proxy() as proxy:
        with measured(proxy, 10, out) as stop:

            def attack() -> h.Stats:
                stats = h.Stats()
                while not stop.is_set() and stats.bytes_sent < MAX_ATTACK_BYTES:
                    left = MAX_ATTACK_BYTES - stats.bytes_sent
                    one = h.endless_headers_once(proxy.port, stop, source, left)
                    stats.connections += 1
                    stats.bytes_sent += one.bytes_sent
                    stats.closed_by_proxy += one.closed_by_proxy
                return stats

            results, threads = in_threads(4, attack)
        for t in threads:
            t.join(30)
        time.sleep(2)
        out["rss_after_mb"] = h.rss(proxy.pid) >> 20
    out.update(
        attacker_mb_sent=sum(r.bytes_sent for r in results) >> 20,
        attacker_cut=sum(r.closed_by_proxy for r in results),
    )
    return out


def idle_flood(b: Bench) -> dict:
    out: dict = {}
    with (
        b.proxy(nofile=(1024, 1024)) as proxy,
        h.idle_sockets(proxy.port, 1100, OUTSIDER) as sockets,
        measured(proxy, 10, out),
    ):
        out["opened"] = len(sockets)
    return out


def slow_heads(b: Bench) -> dict:
    out: dict = {}
    with b.proxy() as proxy, measured(proxy, 15, out) as stop:
        socks = []
        for _ in range(200):
            with contextlib.suppress(OSError):
                s = h.dial(proxy.port, INSIDER)
                s.sendall(b"GET http://news.example/slow HTTP/1.1\r\n")
                socks.append(s)
        for second in range(14):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"X")
            stop.wait(1)
            if second == 12:
                out["held_after_13s"] = sum(not h.closed_by_peer(s, 0) for s in socks)
        for s in socks:
            s.close()
    return out


def slow_bodies(b: Bench) -> dict:
    out: dict = {}
    with b.proxy("--set", "auditproxy_body_timeout=5") as proxy, measured(proxy, 12, out) as stop:
        socks = []
        for _ in range(50):
            with contextlib.suppress(OSError):
                s = h.dial(proxy.port, INSIDER)
                s.sendall(
                    b"POST http://news.example/up HTTP/1.1\r\nHost: news.example\r\n"
                    b"Content-Length: 1000000\r\n\r\n"
                )
                socks.append(s)
        for _ in range(11):
            for s in socks:
                with contextlib.suppress(OSError):
                    s.sendall(b"x")
            stop.wait(1)
        out["held_after_11s"] = sum(not h.closed_by_peer(s, 0) for s in socks)
        for s in socks:
            s.close()
    return out


def downloads(b: Bench, url: str) -> dict:
    out: dict = {}
    with b.proxy() as proxy:
        with measured(proxy, 10, out) as stop:
            results, threads = in_threads(3, lambda: h.download(proxy.port, url, stop, INSIDER))
        for t in threads:
            t.join(30)
    out["attacker_mb_read"] = sum(r.bytes_read for r in results) >> 20
    return out


def huge_cookie(b: Bench) -> dict:
    with b.proxy() as proxy:
        return {
            "status_1mb_cookie": h.huge_cookie(proxy.port, 1024 * 1024, INSIDER),
            "status_48kb_cookie": h.huge_cookie(proxy.port, 48 * 1024, INSIDER),
        }


def fifo_policy(b: Bench) -> dict:
    out: dict = {}
    original = b.policy.read_bytes()
    with b.proxy() as proxy, measured(proxy, 6, out):
        time.sleep(0.5)
        b.policy.unlink()
        os.mkfifo(b.policy)
        time.sleep(5)
        with contextlib.suppress(OSError):  # a proxy waiting in open() is let go by a writer
            os.close(os.open(b.policy, os.O_WRONLY | os.O_NONBLOCK))
        b.policy.unlink()
        b.policy.write_bytes(original)
    return out


def large_policy(b: Bench) -> dict:
    out: dict = {}
    original = b.policy.read_bytes()
    with b.proxy() as proxy, measured(proxy, 8, out):
        time.sleep(1)
        b.policy.write_bytes(original + (b"# " + b"padding " * 12 + b"\n") * 600_000)
    b.policy.write_bytes(original)
    return out


def state_removed(b: Bench) -> dict:
    with b.proxy("--set", "proxyauth=any") as proxy:
        db = proxy.workdir / "state.sqlite3"
        ProxyClient("127.0.0.1", proxy.port, proxy_auth=("alice", "pw")).get(
            "http://www.facebook.com/", headers={"Sec-Fetch-Dest": "document"}
        )
        db.unlink()
        started = time.monotonic()
        seen = None
        while time.monotonic() - started < 10:
            if proxy.metric("auditproxy_state_lost_total", cause="removed") >= 1 and db.exists():
                seen = round(time.monotonic() - started, 2)
                break
            time.sleep(0.05)
        return {"recreated_after_s": seen, "file_back": db.exists()}


ATTACKS: dict[str, Callable[[Bench], dict]] = {
    "endless-headers-outsider": lambda b: endless_headers(b, OUTSIDER),
    "endless-headers-insider": lambda b: endless_headers(b, INSIDER),
    "idle-flood-outsider": idle_flood,
    "slow-heads": slow_heads,
    "slow-bodies": slow_bodies,
    "endless-chunked-downloads": lambda b: downloads(b, "http://endless.example/"),
    "tiny-chunk-downloads": lambda b: downloads(b, "http://tiny.example/"),
    "huge-cookie": huge_cookie,
    "fifo-policy": fifo_policy,
    "large-policy-reload": large_policy,
    "state-file-removed": state_removed,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated attack names")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--baseline", action="store_true", help="a tree without the limits")
    args = parser.parse_args(argv)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(8192, hard), hard))
    names = args.only.split(",") if args.only else list(ATTACKS)
    results = {}
    work = Path(tempfile.mkdtemp(prefix="auditproxy-attacks-"))
    bench = Bench(work, args.baseline)
    try:
        for name in names:
            started = time.monotonic()
            try:
                results[name] = ATTACKS[name](bench)
            except Exception as e:
                results[name] = {"error": repr(e)}
            results[name]["seconds"] = round(time.monotonic() - started, 1)
            print(name, json.dumps(results[name]), flush=True)
    finally:
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
