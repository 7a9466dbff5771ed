"""What the access log's hash chain adds per record: `AccessLog.emit` with and without it,
interleaved rounds, in CPU time (so a busy shared machine does not inflate the figures).

    .venv/bin/python bench/chain_cost.py [--rounds 40] [--records 2000]

Prints min and median per record of each, and the median of the paired differences (the
chain's share). A real log file in a temporary folder; the example policy's records.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import timeit
from pathlib import Path

from auditproxy.decide.decision import Engine
from auditproxy.policy.load import DEFAULT_POLICY, load_policy
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import Exchange, access_event
from auditproxy.sinks.seal import derive_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    engine = Engine(load_policy(DEFAULT_POLICY), bytes(range(32)))
    decision = engine.decide(host="www.facebook.com", client_address="10.1.2.3")
    exchange = Exchange("GET", "http", 80, "/groups/x", "1.1", 200, 48213, 5_042_314, "10.1.2.3")
    exchange.response_head_bytes = 313
    fields = access_event(decision, exchange)
    settings = LoggingSettings(source_ip=False, url_path=False)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        chain = LogChain(derive_key(b"k" * 32))
        logs = {
            "unchained": AccessLog(LogSink(str(tmp / "a.log"), lambda _: None), settings),
            "chained": AccessLog(LogSink(str(tmp / "b.log"), lambda _: None), settings, chain),
        }
        times: dict[str, list[float]] = {name: [] for name in logs}
        for _ in range(args.rounds):
            for name, log in logs.items():
                emit = log.emit
                timer = timeit.Timer(lambda emit=emit: emit(dict(fields)), timer=time.process_time)
                times[name].append(timer.timeit(number=args.records) / args.records * 1e6)
        size = len((tmp / "b.log").read_text().splitlines()[-1])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"emit, {name:9s}  min {min(values):6.2f} us  median {median:6.2f} us")
    paired = [c - u for c, u in zip(times["chained"], times["unchained"], strict=True)]
    print(f"the chain's share: median {statistics.median(paired):.2f} us per record ({size} bytes)")


if __name__ == "__main__":
    main()
