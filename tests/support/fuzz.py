"""Hypothesis settings shared by the property tests.

`fuzz(n)`: n examples by default, AUDITPROXY_FUZZ_SCALE times more for a long run
(`AUDITPROXY_FUZZ_SCALE=50 ./scripts/test -k fuzz`); no deadline (CI machines stall).
In CI (`CI=true`) the examples are derandomised and no example database is read or
written: a run that lands is a run that can be repeated, whatever an earlier run saved in
`.hypothesis/`; random exploration happens on developers' machines.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

SCALE = max(1, int(os.environ.get("AUDITPROXY_FUZZ_SCALE", "1")))

settings.register_profile("ci", derandomize=True, database=None, deadline=None, print_blob=True)
if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    settings.load_profile("ci")


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples * SCALE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
