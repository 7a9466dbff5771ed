"""Where the in-process time goes (issue #16): each stage's hook alone, and mitmdump's
default add-ons per hook, in place (the figures of `run.py --only hooks` are sums of these
plus mitmproxy's dispatch).

    .venv/bin/python bench/stage_cost.py [--requests 5000] [--mix b|c]

`stages`: `AuditProxy` in mitmproxy's test context (`workloads.HookDriver`, as the `hooks`
section), each stage's hook timed where the pipeline calls it; medians over the requests.
`defaults`: mitmdump's default add-ons (no auditproxy) through `AddonManager` with
auditproxy's `dispatch.HookIndex`, one flow per call; medians. Timing each stage adds
about 0.1 us to each; in place every step costs several times its `timeit` figure (the
caches are shared with everything else a request runs).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as w


def stages(requests: int, mix_key: str) -> None:
    import auditproxy.addon as addon

    times: dict[str, list[int]] = defaultdict(list)
    chain = addon._chain

    def timed_chain(
        handlers: list[Callable[[Any], Any]], runtime: Any, timer: Any
    ) -> Callable[[Any], Any]:
        def timed(handler: Callable[[Any], Any]) -> Callable[[Any], Any]:
            name = f"{type(handler.__self__).__name__}.{handler.__name__}"  # type: ignore[attr-defined]

            def run(arg: Any) -> Any:
                start = time.perf_counter_ns()
                result = handler(arg)
                times[name].append(time.perf_counter_ns() - start)
                return result

            return run

        return chain([timed(h) for h in handlers], runtime, timer)

    addon._chain = timed_chain  # type: ignore[assignment]
    sites = w.MONITORED_SITES if mix_key == "b" else w.UNCLASSIFIED_SITES
    with tempfile.TemporaryDirectory() as folder, w.HookDriver(Path(folder)) as driver:
        for request in w.document_requests(sites):
            driver.exchange(request)
        mix = w.request_mix(sites)
        for request in mix * 20:
            driver.exchange(request)
        times.clear()
        totals = [driver.exchange(mix[i % len(mix)]) for i in range(requests)]
    print(f"({mix_key}) per request, p50 {statistics.median(totals) / 1000:.1f} us (timed stages)")
    for name, samples in times.items():
        print(f"  {name:<34} {statistics.median(samples) / 1000:7.2f} us")


async def defaults(requests: int) -> None:
    from mitmproxy import options
    from mitmproxy.proxy.layers import http
    from mitmproxy.test import tflow
    from mitmproxy.tools.dump import DumpMaster

    from auditproxy import dispatch

    master = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    dispatch.install(master.addons)
    total = 0.0
    print(f"mitmdump's {len(master.addons.chain)} default add-ons, indexed dispatch:")
    for hook in (
        http.HttpRequestHeadersHook,
        http.HttpRequestHook,
        http.HttpResponseHeadersHook,
        http.HttpResponseHook,
    ):
        samples = []
        for _ in range(requests):
            flow = tflow.tflow(resp=True)
            start = time.perf_counter_ns()
            await master.addons.handle_lifecycle(hook(flow))
            samples.append(time.perf_counter_ns() - start)
        median = statistics.median(samples) / 1000
        total += median
        print(f"  {hook.name:<34} {median:7.2f} us")
    print(f"  {'per request':<34} {total:7.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--mix", choices=("b", "c"), default="b")
    args = parser.parse_args()
    stages(args.requests, args.mix)
    asyncio.run(defaults(min(args.requests, 3000)))


if __name__ == "__main__":
    main()
