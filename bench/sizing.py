"""Sizing for an IT team (issue #16): memory per connection and per person, CPU per request
by traffic class, cores per head count, and two instances behind HAProxy against one.

    .venv/bin/python bench/sizing.py [--quick] [--json FILE] [--only idle,people,cpu,scale]

Everything runs on loopback (127.0.0.0/8) with the HTTPS benchmark's origin
(`https_load.tls_origin`: nginx with TLS on 127.0.0.10, a site the policy monitors, and
127.0.0.20, one it does not name; here also 127.0.0.30, a site the benchmark policy puts in
the `banking` category, which is `bypass`: never decrypted; and plain HTTP on both test
addresses). `auditproxy run` is the benchmark's `run.Proxy` in regular mode, pinned to
CPU 0; the clients (this script's own connections, `hey`), nginx, Redis and HAProxy run on
CPU 1. Sections:

    idle    resident memory of one proxy before and after N idle keep-alive client
            connections that each made one request: plain HTTP, and HTTPS through CONNECT
            with TLS on both sides (each also holds its connection to the origin)
    people  K distinct people (identity by address: each a distinct 127.x.y.z) each open
            a monitored page (the day's notice is shown and claimed in the SQLite state),
            then four more requests; resident memory and the state's size on disk, per 1,000
    cpu     the proxy's CPU time per request for each traffic class alone (interleaved
            rounds, medians), req/s per core of a stated mix, then a run of all classes at
            once to check the prediction against the CPU it really used
    scale   the same load through two instances behind HAProxy (the shipped HTTP-mode
            configuration, shared Redis state), against one instance alone and one behind
            HAProxy, interleaved

Absolute figures on a shared 2-core machine move by 20 % or more between runs; the load
average is recorded with each measurement. The arithmetic (mix, cores, memory) is in pure
functions that `bench/test_sizing.py` checks in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import math
import os
import resource
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import https_load as hl  # noqa: E402
import workloads as w  # noqa: E402
from procs import free_port, pinned, process  # noqa: E402

BYPASS = "127.0.0.30"
NOTICE_MARK = b'id="auditproxy-notice"'
SECTIONS = ("idle", "people", "cpu", "scale")

# The traffic classes measured alone: (scheme and host, hey mode).
CLASSES = {
    "https_monitored": ("https", hl.MONITORED, "keepalive"),
    "https_unclassified": ("https", hl.UNCLASSIFIED, "keepalive"),
    "https_handshake": ("https", hl.UNCLASSIFIED, "handshake"),
    "http_plain": ("http", hl.UNCLASSIFIED, "keepalive"),
    "bypass_tunnel": ("https", BYPASS, "handshake"),
}
CLASS_LABELS = {
    "https_monitored": "HTTPS keep-alive, monitored site (notice seen)",
    "https_unclassified": "HTTPS keep-alive, unclassified site",
    "https_handshake": "HTTPS, new connection + CONNECT + 2 TLS handshakes",
    "http_plain": "plain HTTP keep-alive",
    "bypass_tunnel": "bypass tunnel (CONNECT, not decrypted), new each time",
}
# The stated mix: 70 % HTTPS on kept-alive connections (a fifth of it to monitored sites),
# 10 % requests that open a new HTTPS connection, 15 % plain HTTP, 5 % bypass tunnels.
MIX = {
    "https_monitored": 0.15,
    "https_unclassified": 0.55,
    "https_handshake": 0.10,
    "http_plain": 0.15,
    "bypass_tunnel": 0.05,
}
STAFF = (1_000, 5_000, 20_000)
PER_MINUTE = (30, 60)  # requests per person per minute at the peak
UTILISATION = 0.5  # each core planned at half its measured capacity
CONNECTIONS_PER_PERSON = 10  # open client connections per person at the peak


# ---------------------------------------------------------------------------------------
# Arithmetic (pure: tested in CI by bench/test_sizing.py)


def mix_us(us_per_request: dict[str, float], shares: dict[str, float]) -> float:
    """CPU microseconds per request of a mix: sum of share x microseconds."""
    if abs(sum(shares.values()) - 1) > 1e-9:
        raise ValueError(f"shares add up to {sum(shares.values())}, not 1")
    return sum(share * us_per_request[name] for name, share in shares.items())


def rps_per_core(us_per_request: dict[str, float], shares: dict[str, float]) -> float:
    """Requests a second one fully used core serves for that mix."""
    return 1e6 / mix_us(us_per_request, shares)


def cores_needed(staff: int, per_minute: float, per_core: float, utilisation: float) -> int:
    """Cores (one instance each) so that the peak uses at most `utilisation` of each."""
    peak = staff * per_minute / 60
    return max(1, math.ceil(peak / (per_core * utilisation) - 1e-9))


def memory_mb(
    staff: int,
    instances: int,
    *,
    base_kb: float,
    per_connection_bytes: float,
    per_1000_people_bytes: float,
    connections_per_person: int = CONNECTIONS_PER_PERSON,
) -> float:
    """Resident memory of one instance at the peak: its base, its share of the open
    connections, and every person's per-person memory (behind leastconn every instance
    sees everyone over a day: the upper bound)."""
    total = (
        base_kb * 1024
        + staff * connections_per_person * per_connection_bytes / instances
        + staff / 1000 * per_1000_people_bytes
    )
    return total / 2**20


def cores_table(
    per_core: float,
    *,
    staff: tuple[int, ...] = STAFF,
    per_minute: tuple[float, ...] = PER_MINUTE,
    utilisation: float = UTILISATION,
    memory: dict | None = None,
) -> list[dict]:
    """One row per (staff, requests per person per minute): peak req/s, cores for the
    instances, the same plus one spare instance (N+1), and memory when `memory` has
    base_kb, per_connection_bytes, per_1000_people_bytes."""
    rows = []
    for rpm in per_minute:
        for n in staff:
            cores = cores_needed(n, rpm, per_core, utilisation)
            row = {
                "staff": n,
                "per_minute": rpm,
                "peak_rps": n * rpm / 60,
                "cores": cores,
                "cores_n_plus_1": cores + 1,
            }
            if memory:
                row["memory_per_instance_mb"] = memory_mb(n, cores + 1, **memory)
            rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------
# Machine and processes


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def raise_open_files() -> int:
    """The soft open-file limit to the hard one (inherited by the proxy, nginx, hey)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def sizing_policy(tmp: Path, *, balancer: bool = False) -> Path:
    """The HTTPS benchmark's policy, plus 127.0.0.30 as a banking (bypass) site and, for
    HAProxy, 127.0.0.1 as a trusted balancer."""
    text = hl.bench_policy(tmp).read_text(encoding="utf-8")
    anchor = "      simplii: [simplii.com]"
    assert anchor in text, "the example policy changed: update sizing_policy"
    text = text.replace(anchor, f"{anchor}\n      bench-bypass: [{BYPASS}]")
    if balancer:
        text += "\nbalancers:\n  trusted: [127.0.0.1/32]\n"
    path = tmp / ("sizing-policy-balancer.yaml" if balancer else "sizing-policy.yaml")
    path.write_text(text, encoding="utf-8")
    return path


def new_proxy(tmp: Path, name: str, ca_file: Path, policy: Path, *extra: str, cpu: str = "0"):
    import run

    workdir = tmp / name
    workdir.mkdir()
    proxy = run.Proxy(
        "auditproxy",
        workdir,
        None,
        regular=True,
        policy=policy,
        extra=["--set", f"ssl_verify_upstream_trusted_ca={ca_file}", *extra],
    )
    if proxy.command[:2] == ["taskset", "-c"]:
        proxy.command[2] = cpu
    return proxy


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def gauge(metrics_port: int, name: str) -> float:
    import run

    return sum(v for (n, _labels), v in run.scrape(metrics_port).items() if n == name)


# ---------------------------------------------------------------------------------------
# An asyncio client: keep-alive connections through the proxy from chosen source addresses


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the proxy's throw-away CA
    context.set_alpn_protocols(["http/1.1"])
    return context


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, host: str, kind: str
) -> bytes:
    """One HTTP/1.1 request on the connection (kept alive); the response body."""
    path, headers = w.KINDS[kind]
    del path
    fields = "".join(f"{k}: {v}\r\n" for k, v in {**w.COMMON, **headers}.items())
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n{fields}\r\n".encode())
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise RuntimeError(f"{target}: {head.splitlines()[0].decode()}")
    lower = head.lower()
    if b"transfer-encoding: chunked" in lower:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            body += (await reader.readexactly(size + 2))[:-2]  # no trailers expected
            if size == 0:
                return body
    length = int(lower.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    return await reader.readexactly(length)


async def connect(
    proxy_port: int, source: str, scheme: str, host: str, port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client connection to the proxy from `source`; for https, CONNECT and TLS."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port, local_addr=(source, 0))
    if scheme == "https":
        writer.write(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200" not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(f"CONNECT {host}: {head.splitlines()[0].decode()}")
        await writer.start_tls(client_tls(), server_hostname=host)
    return reader, writer


def target_of(scheme: str, host: str, port: int, path: str) -> str:
    """Absolute form for plain HTTP through a proxy, origin form inside a tunnel."""
    return f"http://{host}:{port}{path}" if scheme == "http" else path


def address(block: int, i: int) -> str:
    """The i-th client address of a block: 127.<block + i // 62,500>.<1..250>.<1..250>."""
    high, low = divmod(i, 250 * 250)
    return f"127.{block + high}.{low // 250 + 1}.{low % 250 + 1}"


async def gather_bounded(coroutines: list, limit: int) -> list:
    gate = asyncio.Semaphore(limit)

    async def one(c):
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coroutines), return_exceptions=True)


# ---------------------------------------------------------------------------------------
# idle: memory per idle keep-alive connection


def idle_section(tmp: Path, origin: dict, n: int) -> dict:
    policy = sizing_policy(tmp)
    results = {}
    for scheme in ("http", "https"):
        port = origin["plain_port"] if scheme == "http" else origin["tls_port"]
        proxy = new_proxy(
            tmp,
            f"idle-{scheme}",
            origin["ca"],
            policy,
            "--set", "auditproxy_idle_timeout=900",
            "--set", "auditproxy_head_timeout=60",
        )  # fmt: skip
        with proxy.running() as p:

            async def run(p=p, port=port, scheme=scheme) -> dict:
                async def open_one(i: int, block: int):
                    reader, writer = await connect(
                        p.port, address(block, i), scheme, hl.UNCLASSIFIED, port
                    )
                    target = target_of(scheme, hl.UNCLASSIFIED, port, hl.PAGE)
                    await exchange(reader, writer, target, hl.UNCLASSIFIED, "document")
                    return writer

                # Warm: code paths, certificates, caches; then closed.
                warm = await gather_bounded([open_one(i, 200) for i in range(100)], 20)
                for x in warm:
                    if not isinstance(x, BaseException):
                        x.close()
                await asyncio.sleep(2)
                before = {"rss_kb": rss_kb(p.pid), "fds": open_files(p.pid)}
                load = load_average()
                t0 = time.monotonic()
                opened = await gather_bounded([open_one(i, 1) for i in range(n)], 50)
                seconds = time.monotonic() - t0
                writers = [x for x in opened if not isinstance(x, BaseException)]
                failures = [repr(x) for x in opened if isinstance(x, BaseException)]
                await asyncio.sleep(3)
                after = {"rss_kb": rss_kb(p.pid), "fds": open_files(p.pid)}
                open_now = gauge(p.metrics_port, "auditproxy_client_connections")
                for x in writers:
                    x.close()
                ok = len(writers)
                return {
                    "connections": ok,
                    "failed": len(failures),
                    "failures_sample": failures[:3],
                    "open_seconds": round(seconds, 1),
                    "proxy_reports_open": open_now,
                    "rss_before_kb": before["rss_kb"],
                    "rss_after_kb": after["rss_kb"],
                    "fds_per_connection": (after["fds"] - before["fds"]) / max(ok, 1),
                    "bytes_per_connection": (after["rss_kb"] - before["rss_kb"])
                    * 1024
                    / max(ok, 1),
                    "load_average": load,
                }

            results[scheme] = asyncio.run(run())
            print(
                f"  idle {scheme}: {results[scheme]['connections']} open "
                f"({results[scheme]['failed']} failed), "
                f"{results[scheme]['bytes_per_connection'] / 1024:.1f} KiB each, "
                f"RSS {results[scheme]['rss_before_kb'] / 1024:.0f} -> "
                f"{results[scheme]['rss_after_kb'] / 1024:.0f} MB, "
                f"load {results[scheme]['load_average']}",
                flush=True,
            )
    return {"n": n, **results}


# ---------------------------------------------------------------------------------------
# people: memory and state per 1,000 people


PERSON_VISIT = (
    (hl.MONITORED, "/index.html", "document"),  # the day's notice: shown, claimed
    (hl.MONITORED, "/static/app.js", "script"),
    (hl.MONITORED, "/img/photo.png", "image"),
    (hl.MONITORED, "/api/feed.json", "fetch"),
    (hl.UNCLASSIFIED, "/index.html", "document"),
)


def people_section(tmp: Path, origin: dict, k: int) -> dict:
    policy = sizing_policy(tmp)
    port = origin["plain_port"]
    proxy = new_proxy(tmp, "people", origin["ca"], policy)
    state = proxy.tmp / "state.sqlite3"
    with proxy.running() as p:

        async def run() -> dict:
            async def visit(i: int, block: int) -> bool:
                reader, writer = await connect(p.port, address(block, i), "http", "", 0)
                try:
                    noticed = False
                    for host, path, kind in PERSON_VISIT:
                        body = await exchange(
                            reader, writer, f"http://{host}:{port}{path}", host, kind
                        )
                        noticed |= NOTICE_MARK in body
                    return noticed
                finally:
                    writer.close()

            def shown() -> float:
                return sum(
                    v
                    for (name, labels), v in run_scrape(p.metrics_port).items()
                    if name == "auditproxy_notices_total" and ("event", "shown") in labels
                )

            warm = await gather_bounded([visit(i, 200) for i in range(50)], 20)
            assert all(x is True for x in warm), warm[:3]
            await asyncio.sleep(3)

            def sample() -> dict:
                return {
                    "rss_kb": rss_kb(p.pid),
                    "state": w.state_size(state),  # with the WAL (checkpointed at 4 MB)
                    "db": state.stat().st_blocks * 512,  # the database file alone
                    "shown": shown(),
                }

            # Two halves: the second half's growth is the marginal cost of a person, without
            # what the allocator grows once whatever the number of people.
            marks, seen, failures = [sample()], 0, []
            load = load_average()
            t0 = time.monotonic()
            half = k // 2
            for start, stop in ((0, half), (half, k)):
                done = await gather_bounded([visit(i, 10) for i in range(start, stop)], 50)
                seen += sum(x is True for x in done)
                failures += [repr(x) for x in done if isinstance(x, BaseException)]
                await asyncio.sleep(3)
                marks.append(sample())
            seconds = time.monotonic() - t0
            before, middle, after = marks
            second = k - half
            return {
                "people": seen,
                "failed": len(failures),
                "failures_sample": failures[:3],
                "requests_each": len(PERSON_VISIT),
                "seconds": round(seconds, 1),
                "notices_shown": after["shown"] - before["shown"],
                "daily_users_gauge": gauge(p.metrics_port, "auditproxy_daily_users"),
                "rss_kb": [m["rss_kb"] for m in marks],
                "state_bytes": [m["state"] for m in marks],
                "rss_per_1000_all_bytes": (after["rss_kb"] - before["rss_kb"]) * 1024e3 / k,
                "rss_per_1000_bytes": (after["rss_kb"] - middle["rss_kb"]) * 1024e3 / second,
                "state_db_bytes": [m["db"] for m in marks],
                "state_per_1000_bytes": (after["state"] - before["state"]) * 1e3 / k,
                "state_db_per_1000_bytes": (after["db"] - before["db"]) * 1e3 / k,
                "load_average": load,
            }

        result = asyncio.run(run())
    print(
        f"  people: {result['people']} ({result['failed']} failed, "
        f"{result['notices_shown']:.0f} notices shown) in {result['seconds']} s; per 1,000: "
        f"RSS {result['rss_per_1000_bytes'] / 2**20:.2f} MB (second half; all: "
        f"{result['rss_per_1000_all_bytes'] / 2**20:.2f} MB), database "
        f"{result['state_db_per_1000_bytes'] / 1024:.0f} KiB; load {result['load_average']}",
        flush=True,
    )
    return {"k": k, **result}


def run_scrape(port: int) -> dict:
    import run

    return run.scrape(port)


def rss_kb(pid: int) -> int:
    import run

    return run.rss_kb(pid)


# ---------------------------------------------------------------------------------------
# cpu: CPU time per request, by class, and the mix


def class_url(name: str, origin: dict) -> tuple[str, str]:
    scheme, host, mode = CLASSES[name]
    port = origin["plain_port"] if scheme == "http" else origin["tls_port"]
    return f"{scheme}://{host}:{port}{hl.PAGE}", mode


def cpu_section(tmp: Path, origin: dict, rounds: int, duration: float, workers: int) -> dict:
    from run import LOAD_CPU

    policy = sizing_policy(tmp)
    proxy = new_proxy(tmp, "cpu", origin["ca"], policy)
    runs: dict[str, list[dict]] = {name: [] for name in CLASSES}
    with proxy.running() as p:
        for name in CLASSES:  # warm; the monitored page's notice goes out once
            url, mode = class_url(name, origin)
            hl.hey(p.port, url, mode, 1, 2, LOAD_CPU)
        for round_ in range(rounds):
            for name in CLASSES:
                url, mode = class_url(name, origin)
                load = load_average()
                before = hl.cpu_seconds(p.pid)
                result = hl.hey(p.port, url, mode, duration, workers, LOAD_CPU)
                spent = hl.cpu_seconds(p.pid) - before
                result["cpu_us_per_request"] = spent / max(1, result["ok"]) * 1e6
                result["cpu_share"] = spent / duration
                result["load_average"] = load
                runs[name].append(result)
                print(
                    f"  round {round_ + 1} {name}: {result['rps']:.0f} req/s, "
                    f"{result['cpu_us_per_request']:.0f} us CPU/req, "
                    f"proxy CPU {result['cpu_share']:.0%}, failed {result['failed']}, "
                    f"load {load}",
                    flush=True,
                )
        classes = {
            name: {
                "label": CLASS_LABELS[name],
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
                "cpu_us_range": [
                    min(r["cpu_us_per_request"] for r in rs),
                    max(r["cpu_us_per_request"] for r in rs),
                ],
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_ms": statistics.median(r["p50_ms"] or 0 for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] or 0 for r in rs),
                "failed": sum(r["failed"] for r in rs),
                "load_average": [r["load_average"] for r in rs],
            }
            for name, rs in runs.items()
        }
        us = {name: c["cpu_us_per_request"] for name, c in classes.items()}
        combined = combined_run(p, origin, us, duration, workers)
    return {
        "rounds": rounds,
        "duration": duration,
        "workers": workers,
        "classes": classes,
        "mix": MIX,
        "mix_us_per_request": mix_us(us, MIX),
        "rps_per_core": rps_per_core(us, MIX),
        "combined": combined,
    }


def combined_run(p, origin: dict, us: dict, duration: float, workers: int) -> dict:
    """All classes at once (one `hey` each, 2 workers): the CPU the proxy used against the
    sum of requests x each class's measured cost."""
    from run import LOAD_CPU

    names = list(CLASSES)
    each = max(2, workers // len(names))
    load = load_average()
    before = hl.cpu_seconds(p.pid)
    with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
        futures = {
            name: pool.submit(hl.hey, p.port, *class_url(name, origin), duration, each, LOAD_CPU)
            for name in names
        }
        results = {name: f.result() for name, f in futures.items()}
    spent = hl.cpu_seconds(p.pid) - before
    done = {name: r["ok"] for name, r in results.items()}
    total = sum(done.values())
    predicted = sum(done[name] * us[name] for name in names) / 1e6
    result = {
        "requests": done,
        "shares": {name: n / max(total, 1) for name, n in done.items()},
        "cpu_seconds": spent,
        "predicted_cpu_seconds": predicted,
        "measured_over_predicted": spent / predicted if predicted else None,
        "rps": total / duration,
        "cpu_us_per_request": spent / max(total, 1) * 1e6,
        "failed": sum(r["failed"] for r in results.values()),
        "load_average": load,
    }
    print(
        f"  combined: {total} requests, CPU {spent:.2f} s measured vs {predicted:.2f} s "
        f"predicted from the classes ({result['measured_over_predicted']:.2f}x), load {load}",
        flush=True,
    )
    return result


# ---------------------------------------------------------------------------------------
# scale: two instances behind HAProxy against one


@contextlib.contextmanager
def redis_server(tmp: Path, cpu: str) -> Iterator[int]:
    port = free_port()
    command = [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--dir", str(tmp),
    ]  # fmt: skip
    with process(pinned(cpu, command), port, tmp / "redis.log"):
        yield port


@contextlib.contextmanager
def haproxy(tmp: Path, name: str, servers: list, cpu: str) -> Iterator[int]:
    """The shipped deploy/haproxy/haproxy.cfg with these servers (as the e2e tests run it)."""
    sys.path.insert(0, str(BENCH.parent / "tests"))
    from support.haproxy import SHIPPED_HAPROXY, HAProxy, haproxy_config

    port, stats_port = free_port(), free_port()
    config = tmp / f"haproxy-{name}.cfg"
    config.write_text(
        haproxy_config(
            SHIPPED_HAPROXY.read_text(),
            port,
            stats_port,
            [(f"s{i}", s.port, s.metrics_port) for i, s in enumerate(servers)],
        )
    )
    log = tmp / f"haproxy-{name}.log"
    with process(pinned(cpu, ["haproxy", "-db", "-f", str(config)]), port, log) as h:
        HAProxy(port, stats_port, h, log).wait_for({f"s{i}": "UP" for i in range(len(servers))})
        yield port


SCALE_SHAPES = {
    "https": ("https", hl.MONITORED, "keepalive"),
    "http": ("http", hl.UNCLASSIFIED, "keepalive"),
}
SCALE_LABELS = {
    "one": "1 instance (CPU 0), direct",
    "one_haproxy": "1 instance behind HAProxy",
    "two_haproxy": "2 instances (CPU 0, CPU 1) behind HAProxy",
}


def scale_section(tmp: Path, origin: dict, rounds: int, duration: float, workers: int) -> dict:
    from run import LOAD_CPU, PROXY_CPU

    policy = sizing_policy(tmp, balancer=True)
    runs: dict = {shape: {k: [] for k in SCALE_LABELS} for shape in SCALE_SHAPES}
    with redis_server(tmp, LOAD_CPU) as redis_port:
        state = ["--state", f"redis://127.0.0.1:{redis_port}/0"]
        a = new_proxy(tmp, "scale-a", origin["ca"], policy, *state, cpu=PROXY_CPU)
        b = new_proxy(tmp, "scale-b", origin["ca"], policy, *state, cpu=LOAD_CPU)
        with (
            a.running(),
            b.running(),
            haproxy(tmp, "one", [a], LOAD_CPU) as h1,
            haproxy(tmp, "two", [a, b], LOAD_CPU) as h2,
        ):
            ports = {"one": a.port, "one_haproxy": h1, "two_haproxy": h2}
            for shape in SCALE_SHAPES:  # warm every path
                url, mode = scale_url(shape, origin)
                for port in ports.values():
                    hl.hey(port, url, mode, 1, 4, LOAD_CPU)
            for round_ in range(rounds):
                for shape in SCALE_SHAPES:
                    url, mode = scale_url(shape, origin)
                    for key, port in ports.items():
                        load = load_average()
                        cpu0 = {x: hl.cpu_seconds(x.pid) for x in (a, b)}
                        result = hl.hey(port, url, mode, duration, workers, LOAD_CPU)
                        used = {n: hl.cpu_seconds(x.pid) - cpu0[x] for n, x in (("a", a), ("b", b))}
                        result["proxy_cpu_seconds"] = used
                        result["cpu_us_per_request"] = (
                            sum(used.values()) / max(1, result["ok"]) * 1e6
                        )
                        result["load_average"] = load
                        runs[shape][key].append(result)
                        print(
                            f"  round {round_ + 1} {shape} {key}: {result['rps']:.0f} "
                            f"req/s, p50 {result['p50_ms']:.1f} ms, p99 "
                            f"{result['p99_ms']:.1f} ms, CPU a {used['a']:.1f} s "
                            f"b {used['b']:.1f} s, failed {result['failed']}, load {load}",
                            flush=True,
                        )
    summary: dict = {}
    for shape, by_key in runs.items():
        summary[shape] = {}
        for key, rs in by_key.items():
            ratios = [r["rps"] / o["rps"] for r, o in zip(rs, by_key["one"], strict=True)]
            summary[shape][key] = {
                "label": SCALE_LABELS[key],
                "rps": statistics.median(r["rps"] for r in rs),
                "p50_ms": statistics.median(r["p50_ms"] or 0 for r in rs),
                "p99_ms": statistics.median(r["p99_ms"] or 0 for r in rs),
                "ratio_to_one": statistics.median(ratios),
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rs),
                "failed": sum(r["failed"] for r in rs),
                "load_average": [r["load_average"] for r in rs],
            }
    return {"rounds": rounds, "duration": duration, "workers": workers, "shapes": summary}


def scale_url(shape: str, origin: dict) -> tuple[str, str]:
    scheme, host, mode = SCALE_SHAPES[shape]
    port = origin["plain_port"] if scheme == "http" else origin["tls_port"]
    return f"{scheme}://{host}:{port}{hl.PAGE}", mode


# ---------------------------------------------------------------------------------------
# Report


def sizing_tables(results: dict) -> dict:
    """The cores table (and memory) from the measured figures."""
    cpu, idle, people = results.get("cpu"), results.get("idle"), results.get("people")
    if not cpu:
        return {}
    memory = None
    if idle and people:
        memory = {
            "base_kb": idle["https"]["rss_before_kb"],
            "per_connection_bytes": max(0.0, idle["https"]["bytes_per_connection"]),
            "per_1000_people_bytes": max(0.0, people["rss_per_1000_bytes"]),
        }
    return {
        "assumptions": {
            "per_minute": PER_MINUTE,
            "utilisation": UTILISATION,
            "connections_per_person": CONNECTIONS_PER_PERSON,
            "memory": memory,
        },
        "rows": cores_table(cpu["rps_per_core"], memory=memory),
    }


def print_report(results: dict) -> None:
    m = results["machine"]
    print(
        f"\n== sizing, {m['date']}, {m['cpu']}, commit {m['commit']}, mitmproxy "
        f"{m['mitmproxy']}, load average at start {m['load_average'][0]:.2f}"
    )
    if idle := results.get("idle"):
        print(f"\n-- idle keep-alive connections (N = {idle['n']}), one fresh proxy each")
        for scheme in ("http", "https"):
            r = idle[scheme]
            print(
                f"  {scheme:5} {r['connections']:5} open, {r['failed']} failed: "
                f"{r['bytes_per_connection'] / 1024:6.1f} KiB/connection "
                f"(RSS {r['rss_before_kb'] / 1024:.0f} -> {r['rss_after_kb'] / 1024:.0f} MB, "
                f"{r['fds_per_connection']:.2f} fds each), load {r['load_average']}"
            )
    if people := results.get("people"):
        print(
            f"\n-- people: {people['people']} distinct client addresses, each a monitored "
            f"page (notice shown: {people['notices_shown']:.0f}) + "
            f"{people['requests_each'] - 1} requests"
        )
        rss = " -> ".join(f"{x / 1024:.0f}" for x in people["rss_kb"])
        print(
            f"  per 1,000 people: RSS +{people['rss_per_1000_bytes'] / 2**20:.2f} MB (second "
            f"half; over all: +{people['rss_per_1000_all_bytes'] / 2**20:.2f} MB), SQLite "
            f"database +{people['state_db_per_1000_bytes'] / 1024:.0f} KiB (with its WAL "
            f"+{people['state_per_1000_bytes'] / 1024:.0f} KiB) (RSS {rss} MB), "
            f"load {people['load_average']}"
        )
    if cpu := results.get("cpu"):
        print(
            f"\n-- CPU per request by class: hey -c{cpu['workers']}, {cpu['duration']:.0f} s, "
            f"{cpu['rounds']} rounds interleaved (medians)"
        )
        print(f"  {'class':20} {'share':>5} {'us/req':>7} {'range':>11} {'req/s':>6} "
              f"{'p50 ms':>6} {'p99 ms':>6} {'failed':>6}")  # fmt: skip
        for name, c in cpu["classes"].items():
            lo, hi = c["cpu_us_range"]
            print(
                f"  {name:20} {MIX[name]:5.0%} {c['cpu_us_per_request']:7.0f} "
                f"{lo:5.0f}-{hi:<5.0f} {c['rps']:6.0f} {c['p50_ms']:6.1f} {c['p99_ms']:6.1f} "
                f"{c['failed']:6}"
            )
        comb = cpu["combined"]
        print(
            f"  mix: {cpu['mix_us_per_request']:.0f} us CPU/request -> "
            f"{cpu['rps_per_core']:.0f} req/s per core; all classes at once: "
            f"{comb['cpu_us_per_request']:.0f} us/req measured, "
            f"{comb['measured_over_predicted']:.2f}x the classes' prediction"
        )
    if scale := results.get("scale"):
        print(
            f"\n-- scale: hey -c{scale['workers']}, {scale['duration']:.0f} s, "
            f"{scale['rounds']} rounds interleaved (medians), Redis state"
        )
        for shape, by_key in scale["shapes"].items():
            for r in by_key.values():
                print(
                    f"  {shape:5} {r['label']:42} {r['rps']:6.0f} req/s "
                    f"x{r['ratio_to_one']:.2f}  p50 {r['p50_ms']:5.1f} ms  "
                    f"p99 {r['p99_ms']:6.1f} ms  {r['cpu_us_per_request']:5.0f} us CPU/req  "
                    f"failed {r['failed']}"
                )
    if tables := results.get("tables"):
        a = tables["assumptions"]
        print(
            f"\n-- cores at {a['utilisation']:.0%} of measured capacity "
            f"({cpu['rps_per_core']:.0f} req/s per core for the mix), one instance per core"
        )
        for row in tables["rows"]:
            mem = row.get("memory_per_instance_mb")
            mem = f", {mem:.0f} MB per instance" if mem is not None else ""
            print(
                f"  {row['staff']:6,} staff x {row['per_minute']} req/min: peak "
                f"{row['peak_rps']:6.0f} req/s -> {row['cores']} cores "
                f"(+1 spare: {row['cores_n_plus_1']}){mem}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round: a check")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections to run")
    parser.add_argument("--connections", type=int, help="idle connections (default 2000)")
    parser.add_argument("--people", type=int, help="distinct people (default 5000)")
    parser.add_argument("--rounds", type=int, help="rounds of cpu and scale (default 3)")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 8)")
    args = parser.parse_args(argv)
    only = set(args.only.split(","))
    quick = args.quick
    n = args.connections or (200 if quick else 2000)
    k = args.people or (300 if quick else 5000)
    rounds = args.rounds or (1 if quick else 3)
    duration = args.duration or (3 if quick else 8)

    from run import LOAD_CPU, machine

    limit = raise_open_files()
    if (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {int(LOAD_CPU)})  # this script's clients share CPU 1
    results: dict = {"machine": machine(), "open_file_limit": limit}
    print(f"load average at start {results['machine']['load_average'][0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="auditproxy-sizing-") as name:
        tmp = Path(name)
        plain_port = free_port()
        extra = (BYPASS,)
        with hl.tls_origin(tmp, LOAD_CPU, extra_hosts=extra, plain_port=plain_port) as (
            tls_port,
            ca,
        ):
            origin = {"tls_port": tls_port, "plain_port": plain_port, "ca": ca}
            if "idle" in only:
                results["idle"] = idle_section(tmp, origin, n)
            if "people" in only:
                results["people"] = people_section(tmp, origin, k)
            if "cpu" in only:
                results["cpu"] = cpu_section(tmp, origin, rounds, duration, 10)
            if "scale" in only:
                results["scale"] = scale_section(tmp, origin, rounds, duration, 20)
    results["tables"] = sizing_tables(results)
    results["load_average_at_end"] = os.getloadavg()
    print_report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
