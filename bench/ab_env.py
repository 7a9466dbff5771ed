"""Interleaved A/B load runs of proxies that differ by kind or environment (issue #16).

    .venv/bin/python bench/ab_env.py ROUNDS SECONDS {b,c} VARIANTS_JSON

VARIANTS_JSON is a list of [name, kind, env]: `kind` as `run.Proxy` takes it ("mitmdump"
or "auditproxy"), `env` the environment it starts with, e.g. to compare mitmproxy's own
dispatch with auditproxy's (`AUDITPROXY_DISPATCH=mitmproxy`):

    .venv/bin/python bench/ab_env.py 3 8 b '[["mitmdump","mitmdump",{}],
        ["mitmproxy-dispatch","auditproxy",{"AUDITPROXY_DISPATCH":"mitmproxy"}],
        ["indexed","auditproxy",{}]]'

nginx is the origin and wrk the client with the `load` section's page-view mix (`b`:
monitored sites, notice already seen; `c`: sites the policy does not name). Rounds are
interleaved (a b c a b c ...); it prints each run, then per variant the median requests a
second, the median ratio to the first variant (per round) and the median p99.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import run
import workloads as w


def main(argv: list[str]) -> int:
    rounds, seconds, key, variants = int(argv[0]), int(argv[1]), argv[2], json.loads(argv[3])
    sites = w.MONITORED_SITES if key == "b" else w.UNCLASSIFIED_SITES
    mix = w.request_mix(sites)
    names = [v[0] for v in variants]
    rps: dict[str, list[float]] = {name: [] for name in names}
    p99: dict[str, list[float]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        tmp.chmod(0o755)
        with run.nginx(tmp) as origin:
            script = run.wrk_script(mix, tmp / "wrk.lua")
            for round_ in range(rounds):
                for name, kind, env in variants:
                    saved = {k: os.environ.get(k) for k in env}
                    os.environ.update(env)
                    try:
                        workdir = tmp / f"{name}-{round_}"
                        workdir.mkdir()
                        with run.Proxy(kind, workdir, origin).running() as proxy:
                            for request in w.document_requests(sites):
                                run.fetch_through(proxy.port, request)
                            run.wrk(proxy.port, script, 2, 10)  # warm-up
                            out = run.wrk(proxy.port, script, seconds, 10)
                    finally:
                        for k, v in saved.items():
                            if v is None:
                                os.environ.pop(k, None)
                            else:
                                os.environ[k] = v
                    rps[name].append(out["rps"])
                    p99[name].append(out["p99_us"] / 1000)
                    print(name, round(out["rps"]), out["errors"], flush=True)
    base = rps[names[0]]
    for name in names:
        ratio = statistics.median(x / b for x, b in zip(rps[name], base, strict=True))
        print(
            f"{name:20} median {statistics.median(rps[name]):7.0f} req/s  ratio {ratio:.3f}  "
            f"p99 {statistics.median(p99[name]):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
