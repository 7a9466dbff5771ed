"""Hosts as clients really send them, generated: case, trailing dots, ports, IDN, IP
literals, over-long labels and plain garbage, against a reference classifier.

tests/test_classify.py has the named cases (look-alikes, normalisation examples); here the
properties that must hold for every input:
- `normalize_host` raises nothing but ValueError, and is idempotent;
- case, a trailing dot, a port, brackets and IDN spelling never change the match;
- a host matches a policy domain only as itself or a subdomain (whole labels), the most
  specific domain winning: exactly what a naive reference implementation says;
- when a connection goes by several names (Host, SNI, CONNECT), the strictest action
  among them applies (domain fronting never escapes a rule).

Longer runs: AUDITPROXY_FUZZ_SCALE=50.
"""

from __future__ import annotations

import ipaddress
import json
import string
from collections.abc import Iterator

import pytest
from hypothesis import example, given, reject
from hypothesis import strategies as st

from auditproxy.decide.classify import Classifier, Match
from auditproxy.decide.decision import Engine
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.load import load_policy, parse_policy
from auditproxy.policy.model import Action, Policy, Site
from support.fuzz import fuzz
from support.paths import EXAMPLE_POLICY, FIXTURES, POLICIES


def iter_domains(policy: Policy) -> Iterator[tuple[str, Site]]:
    for site in policy.sites:
        for domain in site.domains:
            yield domain, site


SMALL = load_policy(POLICIES / "small.yaml")
EXAMPLE = load_policy(EXAMPLE_POLICY)


def reference(policy: Policy, host: str) -> Match:
    """The obvious, slow way: every domain the host is or is under; the longest wins."""
    best: tuple[int, Match] | None = None
    for domain, site in iter_domains(policy):
        under = host == domain or host.endswith("." + domain)
        if under and (best is None or len(domain) > best[0]):
            best = (len(domain), Match.for_site(site))
    return best[1] if best else Match.default(policy.default_action)


POLICY_LABELS = sorted(
    {label for p in (SMALL, EXAMPLE) for d, _ in iter_domains(p) for label in d.split(".")}
)
_label = st.one_of(
    st.sampled_from(POLICY_LABELS),
    st.from_regex(r"[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?", fullmatch=True),
    st.sampled_from(["not", "x", "www", "m", "facebookcom", "xn--bcher-kva", "0", "1"]),
)
_domain = st.sampled_from(sorted({d for p in (SMALL, EXAMPLE) for d, _ in iter_domains(p)}))


@st.composite
def plain_hosts(draw: st.DrawFn) -> str:
    """Lower-case ASCII names built from policy labels, random labels and policy domains:
    subdomains, look-alikes ("notfacebook.com") and unrelated names."""
    labels = draw(st.lists(_label, min_size=0, max_size=4))
    tail = draw(st.one_of(_domain, _label))
    glue = draw(st.sampled_from([".", "", "-"])) if labels else ""
    return ".".join(labels) + glue + tail if labels else tail


@st.composite
def decorated(draw: st.DrawFn, host: str) -> str:
    """The same host as a client might write it: any case, a trailing dot, a port,
    surrounding spaces."""
    chars = [c.upper() if draw(st.booleans()) else c for c in host]
    text = "".join(chars)
    if draw(st.booleans()):
        text += "."
    if draw(st.booleans()):
        text += f":{draw(st.integers(0, 65535))}"
    if draw(st.booleans()):
        text = draw(st.sampled_from([" ", "\t", ""])) + text + draw(st.sampled_from([" ", ""]))
    return text


@fuzz(400)
@given(st.data())
def test_classifier_agrees_with_the_reference_whatever_the_spelling(data: st.DataObject) -> None:
    policy = data.draw(st.sampled_from([SMALL, EXAMPLE]))
    classifier = Classifier(policy)
    host = data.draw(plain_hosts())
    spelled = data.draw(decorated(host))
    try:
        normal = normalize_host(host)
    except ValueError:
        assert classifier.classify(spelled) == Match.default(policy.default_action)
        return
    assert normalize_host(spelled) == normal
    assert classifier.classify(spelled) == reference(policy, normal)


@fuzz(300)
@given(_domain, st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True))
@example("facebook.com", "not")
@example("x.com", "bo")
def test_look_alikes_only_match_what_the_reference_says(domain: str, prefix: str) -> None:
    """ "notfacebook.com" is not facebook.com; "a-x.com" is not x.com."""
    for policy in (SMALL, EXAMPLE):
        got = Classifier(policy).classify(prefix + domain)
        assert got == reference(policy, normalize_host(prefix + domain))


@fuzz(500)
@given(st.text(max_size=300))
@example("[")
@example("[::1")
@example("a..b")
@example(":")
@example("\x00")
@example("xn--")
@example("." * 300)
@example("é" * 70 + ".com")
def test_any_text_is_a_host_or_a_value_error(text: str) -> None:
    try:
        normal = normalize_host(text)
    except ValueError:
        return
    assert normal and normal == normal.strip() and normal.isascii()
    assert normalize_host(normal) == normal  # idempotent
    assert Classifier(SMALL).classify(text) == Classifier(SMALL).lookup(normal)


_unicode_label = st.text(
    alphabet=st.characters(categories=["Ll", "Lu", "Lo"]), min_size=1, max_size=12
)


@fuzz(300)
@given(_unicode_label, _domain, st.booleans())
@example("bücher", "facebook.com", True)
@example("ДОМ", "x.com", False)
@example("\ufdfa", "facebook.com", False)  # the codec maps it to words with spaces
def test_idn_spelling_never_changes_the_match(label: str, domain: str, upper: bool) -> None:
    """A Unicode subdomain and its punycode are the same host; case does not matter."""
    unicode_host = f"{label.upper() if upper else label}.{domain}"
    try:
        punycode = unicode_host.encode("idna").decode("ascii")
        reference_host = normalize_host(punycode)
    except (UnicodeError, ValueError):
        # Not a valid IDN (browsers would not send it either), or one that Python's
        # IDNA 2003 codec turns into something that is no host name: the reference
        # computation itself fails, so the input is rejected explicitly.
        reject()
    classifier = Classifier(SMALL)
    assert classifier.classify(unicode_host) == classifier.classify(punycode)
    assert classifier.classify(unicode_host) == reference(SMALL, reference_host)


@fuzz(300)
@given(st.ip_addresses(), st.one_of(st.none(), st.integers(0, 65535)))
def test_ip_literals_come_back_canonical(address: ipaddress._BaseAddress, port: int | None) -> None:
    text = str(address)
    if address.version == 6:
        spelled = f"[{text.upper()}]" + (f":{port}" if port is not None else "")
    else:
        spelled = text + (f":{port}" if port is not None else "")
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:a.b.c.d is a.b.c.d
    assert normalize_host(spelled) == str(mapped or address)
    assert Classifier(SMALL).classify(spelled) == Match.default(SMALL.default_action)


@fuzz(100)
@given(st.integers(64, 400), _domain)
def test_over_long_labels_and_names_fall_under_the_default_or_match_safely(
    length: int, domain: str
) -> None:
    host = "a" * length + "." + domain
    try:
        normal = normalize_host(host)
    except ValueError:
        assert len(host) > 253
        assert Classifier(SMALL).classify(host) == Match.default(SMALL.default_action)
        return
    assert Classifier(SMALL).classify(host) == reference(SMALL, normal)


@pytest.mark.parametrize("host", ["", " ", ".", "..", ":", ":80", "[]", "a:b", "[zz]"])
def test_empty_and_broken_hosts_are_value_errors(host: str) -> None:
    with pytest.raises(ValueError):
        normalize_host(host)


# ---------------------------------------------------------------------------------------
# Several names for one connection: the strictest action applies

ENGINE = Engine(SMALL, b"k" * 32)
_name = st.one_of(plain_hosts(), st.sampled_from(["", "[", "bank.test", "malware.test"]))


@fuzz(400)
@given(st.lists(st.one_of(st.none(), _name), min_size=1, max_size=4))
@example(["bank.test", "www.facebook.com"])
@example(["www.facebook.com", "malware.test"])
@example([None, "online.bank.test", "x.com"])
def test_the_strictest_name_decides(names: list[str | None]) -> None:
    shown, match, _ = ENGINE.classify_names(names)
    usable = []
    for name in names:
        try:
            usable.append(normalize_host(name)) if name else None
        except ValueError:
            continue
    if not usable:
        assert (shown, match) == ("", Match.default(SMALL.default_action))
        return
    assert shown == usable[0]  # the record shows the first name
    strictest = max(Classifier(SMALL).lookup(h).action.strictness for h in usable)
    assert match.action.strictness == strictest


def test_fronting_a_bypassed_domain_never_escapes_monitoring() -> None:
    """The concrete attack: TLS to the bank (not decrypted), Host header of facebook."""
    for names in (["bank.test", "facebook.com"], ["facebook.com", "bank.test"]):
        assert ENGINE.classify_names(names)[1].action is Action.MONITOR
    assert ENGINE.classify_names(["x.com", "malware.test"])[1].action is Action.BLOCK


# ---------------------------------------------------------------------------------------
# The committed corpus: named hosts and the site each must fall under (small.yaml)

HOSTS = json.loads((FIXTURES / "corpus" / "hosts.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", HOSTS, ids=[c["why"] for c in HOSTS])
def test_host_corpus(case: dict) -> None:
    assert Classifier(SMALL).classify(case["host"]).site == case["site"], case["why"]


# ---------------------------------------------------------------------------------------
# Found by this module and fixed: kept as regression tests


@pytest.mark.parametrize("stop", ["\u3002", "\uff0e", "\uff61"])
def test_trailing_idn_full_stop_is_a_trailing_dot(stop: str) -> None:
    """IDNA turns these full stops into "." after the trailing dots were stripped: once
    left 'malware.test.', under the default action."""
    assert normalize_host(f"malware.test{stop}") == "malware.test"
    assert Classifier(SMALL).classify(f"malware.test{stop}").action is Action.BLOCK


IP_POLICY = parse_policy(
    (POLICIES / "small.yaml")
    .read_text()
    .replace("bad: [malware.test]", "bad: [malware.test, 192.0.2.10, '2001:db8::10']")
)


@pytest.mark.parametrize(
    "spelling", ["192.0.2.10", "192.0.2.10.", "192.0.2.10:80", "[2001:DB8::10]"]
)
def test_ip_rules_match_their_canonical_spellings(spelling: str) -> None:
    assert Classifier(IP_POLICY).classify(spelling).action is Action.BLOCK


@pytest.mark.parametrize(
    "spelling", ["3221225994", "0xc0.0.2.10", "0300.0.2.012", "192.0.522", "[::ffff:192.0.2.10]"]
)
def test_other_spellings_of_a_ruled_ip_match_it(spelling: str) -> None:
    """What getaddrinfo/inet_aton accept for 192.0.2.10 (decimal, hex, octal, short forms,
    IPv4-mapped IPv6) once escaped a rule written for it."""
    assert Classifier(IP_POLICY).classify(spelling).action is Action.BLOCK


def test_printable_ascii_soup_never_raises() -> None:
    """Every printable ASCII character, in a host, alone or around a policy domain."""
    classifier = Classifier(SMALL)
    for c in string.printable:
        for host in (c, f"{c}facebook.com", f"facebook.com{c}", f"www{c}facebook.com"):
            classifier.classify(host)
