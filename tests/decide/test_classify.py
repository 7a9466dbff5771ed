from __future__ import annotations

import pytest

from auditproxy.decide.classify import OTHER, Classifier, Match, stricter
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import Action


@pytest.fixture
def classifier(small_policy_text) -> Classifier:
    return Classifier(parse_policy(small_policy_text))


@pytest.mark.parametrize(
    "host, site",
    [
        ("facebook.com", "facebook"),
        ("www.facebook.com", "facebook"),
        ("a.b.c.facebook.com", "facebook"),
        ("WWW.FaceBook.COM", "facebook"),
        ("www.facebook.com.", "facebook"),
        ("www.facebook.com:443", "facebook"),
        ("static.xx.fbcdn.net", "facebook"),
        ("twitter.com", "x"),
        # The most specific domain wins: a subdomain carved out into another category.
        ("business.facebook.com", "business-facebook"),
        ("eu.business.facebook.com", "business-facebook"),
    ],
)
def test_matches_domain_and_subdomains(classifier, host, site):
    assert classifier.classify(host).site == site


@pytest.mark.parametrize(
    "host",
    [
        "notfacebook.com",
        "facebook.com.evil.test",
        "facebookcom",
        "wwwfacebook.com",
        "facebook.co",
        "com",
        "x.co",
        "xx.com",
    ],
)
def test_look_alikes_never_match(classifier, host):
    match = classifier.classify(host)
    assert match == Match.default(Action.LOG)
    assert (match.category, match.site, match.rule) == (OTHER, OTHER, "default")


def test_actions_and_notice(classifier):
    assert classifier.classify("facebook.com").action is Action.MONITOR
    assert classifier.classify("facebook.com").notice is True
    assert classifier.classify("bank.test").action is Action.BYPASS
    assert classifier.classify("bank.test").notice is False
    assert classifier.classify("www.malware.test").action is Action.BLOCK
    assert classifier.classify("example.org").action is Action.LOG
    assert classifier.classify("facebook.com").rule == "social/facebook"


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("Example.COM", "example.com"),
        ("example.com.", "example.com"),
        ("example.com:8080", "example.com"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("2001:0db8:0:0::1", "2001:db8::1"),
        ("192.0.2.1", "192.0.2.1"),
        ("192.0.2.1:80", "192.0.2.1"),
        ("  example.com ", "example.com"),
    ],
)
def test_normalize_host(raw, normalized):
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize(
    "raw", ["", ".", "[::1", "a..b", ".example.com", "example.com:http", "x" * 300]
)
def test_normalize_host_rejects(raw):
    with pytest.raises(ValueError):
        normalize_host(raw)


def test_garbage_host_falls_under_the_default(classifier):
    assert classifier.classify("[::1").rule == "default"
    assert classifier.classify("").rule == "default"


def test_classify_url(classifier):
    assert classifier.classify_url("https://user:pw@WWW.facebook.com:443/p?q=1")[0] == (
        "www.facebook.com"
    )
    host, match = classifier.classify_url("x.com")
    assert (host, match.site) == ("x.com", "x")
    with pytest.raises(ValueError):
        classifier.classify_url("http:///nohost")


def test_stricter_prefers_the_stricter_action():
    monitor = Match("social", "facebook", Action.MONITOR, "social/facebook", True)
    bypass = Match("banking", "bank", Action.BYPASS, "banking/bank", False)
    block = Match("malware", "bad", Action.BLOCK, "malware/bad", False)
    log = Match.default(Action.LOG)
    assert stricter(bypass, monitor) is monitor
    assert stricter(monitor, bypass) is monitor
    assert stricter(log, block) is block
    assert stricter(log, bypass) is log


def test_lookup_cost_does_not_depend_on_rule_count(small_policy_text):
    """The index is a dict keyed by domain: a lookup touches one entry per host label."""
    lines = ["      big:", "        - facebook.org"]
    lines += [f"        - d{i}.example" for i in range(20_000)]
    text = small_policy_text.replace(
        "      bad: [malware.test]", "      bad: [malware.test]\n" + "\n".join(lines)
    )
    big = Classifier(parse_policy(text))
    assert len(big) > 20_000
    probes = []

    class CountingDict(dict):
        def get(self, key, default=None):
            probes.append(key)
            return super().get(key, default)

    big._index = CountingDict(big._index)
    assert big.lookup("a.b.d19999.example").site == "big"
    assert probes == ["a.b.d19999.example", "b.d19999.example", "d19999.example"]
