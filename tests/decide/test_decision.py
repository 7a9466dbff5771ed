from __future__ import annotations

import pytest

from auditproxy.decide.decision import Engine
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import Action, IdentitySource

KEY = b"k" * 32


@pytest.fixture
def engine(small_policy_text) -> Engine:
    return Engine(parse_policy(small_policy_text), KEY)


def test_decide_classifies_identifies_and_admits(engine):
    d = engine.decide(host="www.facebook.com:443", client_address="10.1.1.1", proxyauth_user="al")
    assert (d.match.site, d.action, d.host) == ("facebook", Action.MONITOR, "www.facebook.com")
    assert d.user == {"user.name": "al"}
    assert d.identity.source is IdentitySource.PROXY_AUTH
    assert d.allowed_client
    assert d.action_label == "monitor"
    assert d.ruleset == "Test Policy"
    assert d.version == engine.policy.sha256


def test_refused_client(engine):
    d = engine.decide(host="example.org", client_address="203.0.113.9")
    assert not d.allowed_client
    assert d.action is None
    assert d.action_label == "refuse"


def test_domain_fronting_takes_the_stricter_action(engine):
    # TLS says "bank" (bypass) but the Host header says facebook: monitor wins.
    d = engine.decide(host="www.facebook.com", sni="bank.test", client_address="10.0.0.1")
    assert d.action is Action.MONITOR
    assert (d.host, d.sni) == ("www.facebook.com", "bank.test")
    d = engine.decide(host="bank.test", sni="malware.test", client_address="10.0.0.1")
    assert d.action is Action.BLOCK
    # A CONNECT target given as another name counts too.
    d = engine.decide(host="example.org", other_names=("x.com",), client_address="10.0.0.1")
    assert d.action is Action.MONITOR


def test_no_usable_name_falls_under_the_default(engine):
    d = engine.decide(host=None, other_names=("", "[bad"), client_address="10.0.0.1")
    assert (d.match.rule, d.action, d.host) == ("default", Action.LOG, "")


def test_pseudonyms_need_a_long_enough_secret(small_policy_text):
    text = small_policy_text.replace("log_as: name", "log_as: pseudonym")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Engine(parse_policy(text), b"short")
    engine = Engine(parse_policy(text), b"k" * 32)
    d = engine.decide(host="x.com", client_address="10.0.0.1", proxyauth_user="alice")
    assert set(d.user) == {"user.hash", "labels.user_key_id"}
    assert Engine(parse_policy(small_policy_text), b"k" * 32).pseudonymize is None


REQUESTS = [
    {"host": "www.facebook.com:443", "client_address": "10.1.1.1", "proxyauth_user": "al"},
    {"host": "www.facebook.com:443", "client_address": "10.1.1.1", "proxyauth_user": "bo"},
    {"host": "www.facebook.com", "sni": "bank.test", "client_address": "10.1.1.1"},
    {"host": "example.org", "client_address": "203.0.113.9"},
    {"host": "x.com", "client_address": "10.1.1.2", "connect_to": "x.com"},
    {"host": "x.com", "client_address": "10.1.1.2", "connect_to": "x.com", "forwarded": "f"},
    {"host": "x.com", "client_address": "10.1.1.2", "header_value": "mallory"},
]


def test_a_remembered_decision_is_the_one_a_fresh_engine_makes(small_policy_text):
    """Decisions are remembered per engine; each argument is part of what is remembered."""
    policy = parse_policy(small_policy_text)
    engine = Engine(policy, KEY)
    first = [engine.decide(**request) for request in REQUESTS]
    again = [engine.decide(**request) for request in reversed(REQUESTS)][::-1]
    fresh = [Engine(policy, KEY).decide(**request) for request in REQUESTS]
    assert first == again == fresh
    assert all(a is b for a, b in zip(first, again, strict=True))  # remembered
    assert len({id(d) for d in first}) == len(REQUESTS)  # no two requests share one


def test_a_destination_given_as_an_address_is_decided_afresh(small_policy_text, monkeypatch):
    """Whether an address is the proxy's own can change while the engine lives (an
    interface gains an address), so such decisions are never remembered."""
    from ipaddress import ip_address

    own: set[object] = set()
    engine = Engine(parse_policy(small_policy_text), KEY)
    monkeypatch.setattr(engine.destinations, "_is_own", lambda ip: ip in own)
    request = {"host": "example.org", "client_address": "10.1.1.1", "connect_to": "192.0.2.7"}
    assert engine.decide(**request).refusal is None
    own.add(ip_address("192.0.2.7"))
    assert engine.decide(**request).refusal == "proxy-host"
