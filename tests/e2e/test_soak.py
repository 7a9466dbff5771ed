"""Load without loss: a bounded soak of a real `auditproxy run` on loopback.

20,000 requests (and bypassed tunnels) from 50 concurrent keep-alive connections, mixing
monitored pages and assets, logged and blocked sites, bypassed banks and decrypted HTTPS,
for a few hundred people, each seeing the notice once per site. `support.soak.verify`
checks that nothing was lost or doubled (one record per request, one `tunnel` record per
bypassed tunnel, one `notice-shown` per first visit), that the counters agree with the
records, and that resident memory is flat after warm-up.

On this project's 2-core machine it takes 60 s to 90 s (220-330 requests/s with the test
clients and origin on the same cores; more when the neighbours are quiet); resident memory
grew by about 3.5 MiB from the 50% mark to the end (`support.soak.RSS_TOLERANCE`).

The size comes from AUDITPROXY_SOAK_REQUESTS and AUDITPROXY_SOAK_CONNECTIONS (defaults
20,000 and 50); the long form is `PYTHONPATH=tests python -m support.soak --requests
200000` (see tests/support/soak.py).
"""

from __future__ import annotations

import os

import pytest

from support.soak import run_standalone

REQUESTS = int(os.environ.get("AUDITPROXY_SOAK_REQUESTS", "20000"))
CONNECTIONS = int(os.environ.get("AUDITPROXY_SOAK_CONNECTIONS", "50"))

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(max(600, REQUESTS // 20))]


def test_soak_nothing_lost_nothing_doubled_memory_flat() -> None:
    figures = run_standalone(requests=REQUESTS, connections=CONNECTIONS, users=400)
    print(figures["summary"])
    assert figures["requests"] + figures["bypassed_tunnels"] == REQUESTS
    assert figures["first_visits"] > 0, "no first visits: the notice was never exercised"
    assert figures["problems"] == [], "\n".join(figures["problems"])
