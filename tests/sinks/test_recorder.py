"""The recorder's metrics: the same samples whether a decision's children are found for
the first time or remembered (`Recorder._children`)."""

from __future__ import annotations

import dataclasses

import pytest

from auditproxy.decide.decision import Engine
from auditproxy.flowstate import FlowState
from auditproxy.policy.load import parse_policy
from auditproxy.sinks.metrics import Metrics
from auditproxy.sinks.recorder import Recorder
from auditproxy.sinks.records import Exchange


@pytest.fixture
def engine(small_policy_text) -> Engine:
    return Engine(parse_policy(small_policy_text), b"k" * 32)


def exchange(status: int | None, size: int | None = 100) -> Exchange:
    return Exchange("GET", "http", 80, "/", "1.1", status, size, 2_000_000, "10.0.0.1")


def record(recorder: Recorder, decision, ex: Exchange) -> None:
    state = FlowState({})
    state.decision = decision
    recorder.request(state, ex)


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_each_request_counts_under_its_own_labels(engine):
    metrics = Metrics()
    recorder = Recorder(metrics)
    plain = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="alice")
    grouped = dataclasses.replace(plain, group="staff")
    category, site = plain.match.category, plain.match.site
    for decision, ex in [
        (plain, exchange(200)),
        (plain, exchange(200)),  # remembered
        (plain, exchange(404, size=None)),  # another status, same decision
        (plain, exchange(None, size=0)),  # no response
        (grouped, exchange(200)),
        (grouped, exchange(503)),
    ]:
        record(recorder, decision, ex)
    labels = {"category": category, "site": site, "action": plain.action_label}
    requests = "auditproxy_requests_total"
    assert sample(metrics, requests, **labels, status_class="2xx") == 3
    assert sample(metrics, requests, **labels, status_class="4xx") == 1
    assert sample(metrics, requests, **labels, status_class="5xx") == 1
    assert sample(metrics, requests, **labels, status_class="none") == 1
    assert sample(metrics, "auditproxy_response_bytes_total", category=category) == 400
    duration = "auditproxy_request_duration_seconds_count"
    assert sample(metrics, duration, category=category) == 6
    group = {"group": "staff", "category": category, "action": plain.action_label}
    assert sample(metrics, "auditproxy_group_requests_total", **group) == 2


def test_one_set_of_children_per_label_set_not_per_person(engine, monkeypatch):
    """Children depend only on the labels: people are many, label sets few (the soak's
    resident memory stays flat). Past the limit, forgotten and made again."""
    from auditproxy.sinks import recorder as module

    recorder = Recorder(Metrics())
    alice = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="alice")
    bob = engine.decide(host="x.com", client_address="10.0.0.2", proxyauth_user="bob")
    assert alice is not bob and recorder._children(alice) is recorder._children(bob)
    staff = dataclasses.replace(alice, group="staff")
    assert recorder._children(staff) is not recorder._children(alice)
    assert len(recorder._by_labels) == 2
    monkeypatch.setattr(module, "CHILDREN_LIMIT", 1)
    recorder = Recorder(Metrics())
    first = recorder._children(alice)
    assert recorder._children(staff) is not first and len(recorder._by_labels) == 1
    assert recorder._children(alice) is not first  # forgotten, made again
