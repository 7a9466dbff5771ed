from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from auditproxy.sinks.http import Heartbeat, MetricsServer
from auditproxy.sinks.metrics import Metrics, status_class
from support.metrics import exported_names

BRIEF_FAMILIES = {
    "auditproxy_requests_total": {"category", "site", "action", "status_class"},
    "auditproxy_notices_total": {"category", "site", "event"},
    "auditproxy_notice_skipped_total": {"reason"},
    "auditproxy_response_bytes_total": {"category"},
    "auditproxy_request_duration_seconds": {"category"},
    "auditproxy_hook_duration_seconds": {"hook"},
    "auditproxy_tunnels_total": {"category", "action"},
    "auditproxy_errors_total": {"stage"},
    "auditproxy_log_records_total": {"outcome"},
    "auditproxy_policy_reloads_total": {"result"},
    "auditproxy_policy_info": {"name", "sha256"},
    "auditproxy_daily_users": {"category"},
    "auditproxy_build_info": {"version", "mitmproxy_version"},
    # The access log's anchor (issue #12): the last sequence sealed, and in which chain.
    "auditproxy_log_sequence": set(),
    "auditproxy_log_chain_info": {"chain"},
}


def test_every_family_of_the_brief_with_its_labels():
    metrics = Metrics("12.2.3")
    # Families without samples yet: touch them so their label names show.
    metrics.requests.labels("c", "s", "monitor", "2xx").inc()
    metrics.notices.labels("c", "s", "shown").inc()
    metrics.notice_skipped.labels("csp").inc()
    metrics.response_bytes.labels("c").inc()
    metrics.request_duration.labels("c").observe(0.1)
    metrics.hook_duration.labels("response").observe(0.00001)
    metrics.tunnels.labels("c", "bypass").inc()
    metrics.daily_users.labels("c").set(1)
    metrics.notices_unstyled.labels("c").inc()
    metrics.set_policy("P", "abc")
    metrics.set_log_chain("0123456789abcdef")
    seen = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        if family.samples:  # families beyond the brief may have none yet
            seen[name] = set(family.samples[0].labels) - {"le"}
    for name, expected in BRIEF_FAMILIES.items():
        assert seen[name] == expected, name


def test_base_units_and_no_created_series():
    names = exported_names()
    assert "auditproxy_request_duration_seconds_bucket" in names
    assert not any(n.endswith("_created") for n in names)


def test_set_policy_replaces_the_previous_series():
    metrics = Metrics()
    metrics.set_policy("A", "1")
    metrics.set_policy("B", "2")
    samples = [
        s
        for f in metrics.registry.collect()
        if f.name == "auditproxy_policy_info"
        for s in f.samples
    ]
    assert [(s.labels["name"], s.value) for s in samples] == [("B", 1.0)]


def test_set_log_chain_replaces_the_previous_series():
    metrics = Metrics()
    metrics.set_log_chain("a" * 16)
    metrics.set_log_chain("b" * 16)
    samples = [
        s
        for f in metrics.registry.collect()
        if f.name == "auditproxy_log_chain_info"
        for s in f.samples
    ]
    assert [(s.labels["chain"], s.value) for s in samples] == [("b" * 16, 1.0)]


@pytest.mark.parametrize(
    "status, cls",
    [
        (101, "1xx"),
        (200, "2xx"),
        (304, "3xx"),
        (404, "4xx"),
        (503, "5xx"),
        (None, "none"),
        (999, "none"),
    ],
)
def test_status_class(status, cls):
    assert status_class(status) == cls


def test_two_instances_do_not_clash():
    Metrics().requests.labels("a", "b", "log", "2xx").inc()
    Metrics().requests.labels("a", "b", "log", "2xx").inc()


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_server_metrics_and_health():
    metrics = Metrics("12")
    clock = FakeClock()
    heartbeat = Heartbeat(max_age=10, clock=clock)
    server = MetricsServer(metrics, heartbeat, "127.0.0.1", 0, lambda: {"policy": "P"})
    server.start()
    host, port = server.address
    base = f"http://{host}:{port}"
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
            text = r.read().decode()
            assert r.headers["Content-Type"].startswith("text/plain")
        assert 'auditproxy_build_info{mitmproxy_version="12",version="0.1.0"} 1.0' in text
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            body = json.load(r)
        assert body["status"] == "ok" and body["policy"] == "P"
        clock.now += 11  # the event loop stopped ticking
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/healthz", timeout=5)
        assert info.value.code == 503
        assert json.load(info.value)["status"] == "stalled"
        heartbeat.beat()
        with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
            assert r.status == 200
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(base + "/other", timeout=5)
        assert info.value.code == 404
    finally:
        server.stop()
