"""HTTPS through the proxy, as departments' traffic mostly is: the same A/B comparison as
the plain-HTTP load test, with the origin on TLS too.

    keepalive   HTTPS over one CONNECT per connection, keep-alive HTTP/1.1 inside
    h2          HTTP/2 from the client inside the tunnel
    handshake   a new connection, CONNECT and TLS handshake on each request (tabs opening)

The load generator is `hey` (Debian), which speaks through an HTTP proxy with CONNECT,
HTTP/2 included. nginx serves TLS on two loopback addresses: 127.0.0.10 is a site the
policy monitors (its notice already seen), 127.0.0.20 one it does not name. Both proxies
run in regular mode (they resolve and connect themselves; the policy allows 127.0.0.0/8
as destinations), with the options `auditproxy run` sets, and trust the origin's CA. The
proxy's CPU time per request comes from /proc/PID/stat.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import subprocess
from collections.abc import Iterator
from pathlib import Path

import trustme
import workloads as w
from procs import free_port, pinned, process

MONITORED, UNCLASSIFIED = "127.0.0.10", "127.0.0.20"
MODES = {
    "keepalive": [],
    "h2": ["-h2"],
    "handshake": ["-disable-keepalive"],
}
PAGE = "/index.html"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

NGINX_TLS = """{user}worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp-body;
    proxy_temp_path {root}/tmp-proxy;
    fastcgi_temp_path {root}/tmp-fastcgi;
    uwsgi_temp_path {root}/tmp-uwsgi;
    scgi_temp_path {root}/tmp-scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    types {{ text/html html; application/javascript js; text/css css; image/png png; }}
    default_type application/octet-stream;
    server {{
        listen {monitored}:{port} ssl http2;
        listen {unclassified}:{port} ssl http2;{extra_listen}
        ssl_certificate {root}/origin.pem;
        ssl_certificate_key {root}/origin.pem;
        ssl_session_cache shared:SSL:1m;
        root {root}/www;
    }}
}}
"""


def bench_policy(tmp: Path) -> Path:
    """The example policy, with the monitored test address as a social site and the
    test addresses allowed as destinations (loopback is refused by default)."""
    text = w.EXAMPLE_POLICY.read_text(encoding="utf-8")
    anchor = "      govloop: [govloop.com]"
    assert anchor in text, "the example policy changed: update bench_policy"
    text = text.replace(anchor, f"{anchor}\n      bench: [{MONITORED}]")
    text += "\ndestinations:\n  allow: [127.0.0.0/8]\n"
    path = tmp / "https-policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def tls_origin(
    tmp: Path, load_cpu: str, *, extra_hosts: tuple[str, ...] = (), plain_port: int | None = None
) -> Iterator[tuple[int, Path]]:
    """nginx with TLS (HTTP/1.1 and HTTP/2) on both test addresses (and `extra_hosts`); its
    CA's file. With `plain_port`, the same files over plain HTTP on that port too."""
    root = tmp / "nginx-tls"
    www = root / "www"
    for path, (body, _type) in w.origin_files().items():
        target = www / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    ca = trustme.CA()
    ca.issue_cert(
        MONITORED, UNCLASSIFIED, *extra_hosts
    ).private_key_and_cert_chain_pem.write_to_path(str(root / "origin.pem"))
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    listen = [f"{host}:{port} ssl http2" for host in extra_hosts]
    if plain_port is not None:
        listen += [f"{host}:{plain_port}" for host in (MONITORED, UNCLASSIFIED)]
    conf = root / "nginx.conf"
    conf.write_text(
        NGINX_TLS.format(
            user=user,
            root=root,
            port=port,
            monitored=MONITORED,
            unclassified=UNCLASSIFIED,
            extra_listen="".join(f"\n        listen {x};" for x in listen),
        )
    )
    command = pinned(load_cpu, ["nginx", "-p", str(root), "-e", str(root / "error.log")])
    with process([*command, "-c", str(conf)], port, root / "nginx.out", host=MONITORED):
        yield port, ca_file


def hey(proxy_port: int, url: str, mode: str, duration: float, workers: int, cpu: str) -> dict:
    """One `hey` run through the proxy: requests/s, p50/p99 (ms), errors."""
    command = pinned(
        cpu,
        [
            "hey", "-z", f"{max(1, round(duration))}s", "-c", str(workers), "-t", "10",
            "-x", f"http://127.0.0.1:{proxy_port}", "-H", "Sec-Fetch-Dest: document",
            "-H", "Accept: text/html", *MODES[mode], url,
        ],
    )  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = re.search(r"50% in ([\d.]+) secs", out)
    p99 = re.search(r"99% in ([\d.]+) secs", out)
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", out))
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    return {
        "rps": rps,
        "p50_ms": float(p50.group(1)) * 1000 if p50 else None,
        "p99_ms": float(p99.group(1)) * 1000 if p99 else None,
        "ok": ok,
        "failed": total - ok + (len(errors.group(1).strip().splitlines()) if errors else 0),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and its threads, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def https_section(tmp: Path, args: object, proxy_factory: type, load_cpu: str) -> dict:
    """Interleaved rounds: for each mode, (a) mitmdump, (b) monitored, (c) unclassified."""
    duration = getattr(args, "duration", 8)
    rounds = max(1, getattr(args, "rounds", 3))
    workers = getattr(args, "connections", 10)
    policy = bench_policy(tmp)
    results: dict = {mode: {"a": [], "b": [], "c": []} for mode in MODES}
    with tls_origin(tmp, load_cpu) as (origin_port, ca_file):
        extra = ["--set", f"ssl_verify_upstream_trusted_ca={ca_file}"]
        proxies = {
            "a": proxy_factory("mitmdump", tmp / "https-a", None, extra=extra, regular=True),
            "bc": proxy_factory(
                "auditproxy", tmp / "https-bc", None, extra=extra, regular=True, policy=policy
            ),
        }
        for p in proxies.values():
            p.tmp.mkdir(exist_ok=True)
        with proxies["a"].running() as a, proxies["bc"].running() as bc:
            urls = {
                "a": f"https://{MONITORED}:{origin_port}{PAGE}",
                "b": f"https://{MONITORED}:{origin_port}{PAGE}",
                "c": f"https://{UNCLASSIFIED}:{origin_port}{PAGE}",
            }
            for key in ("b", "c"):  # warm up; the monitored site's notice goes out once
                hey(bc.port, urls[key], "keepalive", 1, 2, load_cpu)
            hey(a.port, urls["a"], "keepalive", 1, 2, load_cpu)
            for _ in range(rounds):
                for mode in MODES:
                    for key, proxy in (("a", a), ("b", bc), ("c", bc)):
                        before = cpu_seconds(proxy.pid)
                        result = hey(proxy.port, urls[key], mode, duration, workers, load_cpu)
                        spent = cpu_seconds(proxy.pid) - before
                        done = max(1, result["ok"])
                        result["cpu_us_per_request"] = spent / done * 1e6
                        results[mode][key].append(result)
    summary: dict = {}
    for mode, by_key in results.items():
        summary[mode] = {}
        base = [r["rps"] for r in by_key["a"]]
        for key, runs in by_key.items():
            ratios = [r["rps"] / b for r, b in zip(runs, base, strict=True) if b]
            summary[mode][key] = {
                "rps": statistics.median(r["rps"] for r in runs),
                "p50_ms": statistics.median(r["p50_ms"] or 0 for r in runs),
                "p99_ms": statistics.median(r["p99_ms"] or 0 for r in runs),
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
                "failed": sum(r["failed"] for r in runs),
                "ratio": statistics.median(ratios) if ratios else None,
            }
    return {"duration": duration, "rounds": rounds, "workers": workers, "modes": summary}


def print_https(result: dict) -> None:
    print(
        f"\n-- https: hey -c{result['workers']} through the proxy, {result['duration']:.0f} s, "
        f"{result['rounds']} rounds interleaved (medians)"
    )
    names = {
        "a": "(a) plain mitmdump",
        "b": "(b) auditproxy, monitored, notice seen",
        "c": "(c) auditproxy, unclassified",
    }
    print(f"{'mode':10} {'scenario':42} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'ratio':>6} {'cpu us/req':>10} {'failed':>6}")  # fmt: skip
    for mode, by_key in result["modes"].items():
        for key, r in by_key.items():
            ratio = f"{r['ratio']:.3f}" if r["ratio"] is not None else "-"
            print(
                f"{mode:10} {names[key]:42} {r['rps']:7.0f} {r['p50_ms']:7.2f} "
                f"{r['p99_ms']:7.2f} {ratio:>6} {r['cpu_us_per_request']:10.0f} {r['failed']:6}"
            )
