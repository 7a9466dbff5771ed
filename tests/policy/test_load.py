from __future__ import annotations

import hashlib
import ipaddress

import pytest

from auditproxy.policy.hosts import normalize_domain
from auditproxy.policy.load import load_policy, parse_policy
from auditproxy.policy.model import Action, IdentitySource, LogAs, NoticeScope, PolicyError
from support.paths import EXAMPLE_POLICY, POLICIES


def problems_of(text: str) -> list[tuple[int, str]]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return [(p.line, p.message) for p in info.value.problems]


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"test setup: {old!r} not in policy"
    return text.replace(old, new, 1)


# --- the shipped example ---------------------------------------------------------------


def test_example_policy_is_valid_and_complete():
    policy = load_policy(EXAMPLE_POLICY)
    assert policy.default_action is Action.LOG
    assert policy.timezone.key == "America/Toronto"
    assert policy.notice.languages == ("en", "fr")
    assert policy.identity.log_as is LogAs.PSEUDONYM
    by_category = {c.name: c for c in policy.categories}
    assert by_category["social"].action is Action.MONITOR
    assert by_category["banking"].action is Action.BYPASS
    assert by_category["health"].action is Action.BYPASS
    social_sites = {s.name for s in by_category["social"].sites}
    expected = {"facebook", "instagram", "threads", "x", "linkedin", "youtube", "reddit"}
    expected |= {"tiktok", "pinterest", "snapchat", "mastodon", "bluesky", "govloop"}
    assert expected <= social_sites
    # CDN domains are part of their sites.
    facebook = next(s for s in policy.sites if s.name == "facebook")
    assert "fbcdn.net" in facebook.domains
    assert policy.sha256 == hashlib.sha256(EXAMPLE_POLICY.read_bytes()).hexdigest()


def test_example_policy_french_text_keeps_accents():
    policy = load_policy(EXAMPLE_POLICY)
    assert "m\u00e9dias sociaux" in policy.notice.texts["fr"].disclaimer
    assert policy.notice.texts["fr"].policy_url.endswith("/reseaux-electroniques")
    # A language without its own link falls back to the policy's.
    assert policy.notice.texts["en"].policy_url == policy.url


# --- structure and defaults ------------------------------------------------------------


def test_small_policy_parses(small_policy_text):
    policy = parse_policy(small_policy_text)
    assert [c.name for c in policy.categories] == ["social", "work", "banking", "malware"]
    assert policy.identity.sources == (
        IdentitySource.PROXY_AUTH,
        IdentitySource.HEADER,
        IdentitySource.ADDRESS,
    )
    assert policy.identity.trusted_proxies == (ipaddress.ip_network("10.9.9.9/32"),)
    assert policy.notice.scope is NoticeScope.SITE
    assert policy.logging.source_ip and policy.logging.url_path
    assert policy.sites[0].rule_name == "social/facebook"
    assert policy.sites[0].notice is True
    assert all(not s.notice for s in policy.sites if s.action is not Action.MONITOR)


def test_defaults_are_private(small_policy_text):
    text = small_policy_text.split("clients:")[0]
    policy = parse_policy(text)
    assert policy.clients == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("::1/128"),
    )
    assert policy.identity.log_as is LogAs.PSEUDONYM
    assert not policy.logging.source_ip and not policy.logging.url_path


def test_notice_is_required_only_when_something_is_monitored(small_policy_text):
    without_notice = (
        small_policy_text.split("notice:")[0]
        + "clients:"
        + (small_policy_text.split("clients:")[1])
    )
    assert any("missing 'notice'" in m for _, m in problems_of(without_notice))
    no_monitor = replace(without_notice, "action: monitor", "action: log")
    assert parse_policy(no_monitor).notice.languages == ()


# --- validation: every problem, with its line ------------------------------------------


def test_broken_policy_reports_every_problem_with_lines():
    with pytest.raises(PolicyError) as info:
        load_policy(POLICIES / "broken.yaml")
    got = [(p.line, p.message) for p in info.value.problems]
    lines = [line for line, _ in got]
    assert lines == sorted(lines)

    def at(line: int, fragment: str) -> None:
        assert any(n == line and fragment in m for n, m in got), (line, fragment, got)

    at(2, "is not an http(s) URL")
    at(3, "unknown time zone")
    at(4, "unknown value 'allow'")
    at(5, "unknown key 'surprise'")
    at(8, "unknown value 'monitr'")
    at(10, "is a URL")
    at(11, "'facebook.com' is already listed for social/facebook (line 10)")
    at(12, "must be lower case")
    at(17, "has host bits set")
    at(17, "'not-a-cidr' is not a valid CIDR")
    at(19, "needs 'header'")
    at(19, "needs 'trusted_proxies'")
    at(24, "heading must not be empty")
    at(24, "missing required text 'monitoring'")
    # Each formats as FILE:LINE: message.
    assert str(info.value).splitlines()[0].startswith(f"{POLICIES / 'broken.yaml'}:2: ")


def test_unknown_key_suggests_the_right_one(small_policy_text):
    text = replace(small_policy_text, "default_action:", "default_acton:")
    (msg,) = [m for _, m in problems_of(text) if "unknown key" in m]
    assert "did you mean 'default_action'?" in msg


def test_wrong_types(small_policy_text):
    text = replace(small_policy_text, "timezone: America/Toronto", "timezone: [a, b]")
    text = replace(text, "source_ip: true", "source_ip: 7")
    text = replace(text, "facebook: [facebook.com, fbcdn.net]", "facebook: facebook.com")
    got = problems_of(text)
    assert (4, "timezone must be text, not a list") in got
    assert any("source_ip must be true or false, not a number" in m for _, m in got)
    assert any("site 'facebook': domains must be a list, not text" in m for _, m in got)


def test_duplicate_domain_across_sites_after_normalisation(small_policy_text):
    text = replace(small_policy_text, "x: [x.com, twitter.com]", "x: [x.com, FBCDN.net.]")
    got = problems_of(text)
    assert any("'fbcdn.net' is already listed for social/facebook" in m for _, m in got)


def test_duplicate_keys_are_reported(small_policy_text):
    text = replace(small_policy_text, "default_action: log\n", "default_action: log\nname: X\n")
    got = problems_of(text)
    assert any("duplicate key 'name' (first on line 2)" in m for _, m in got)


def test_duplicate_site_names_across_categories(small_policy_text):
    text = replace(small_policy_text, "bank: [bank.test]", "facebook: [bank.test]")
    assert any("site 'facebook' is already defined" in m for _, m in problems_of(text))


def test_empty_texts_and_missing_language(small_policy_text):
    text = replace(small_policy_text, "disclaimer: Views are your own.", 'disclaimer: "  "')
    text = replace(text, "languages: [en, fr]", "languages: [en, fr, de]")
    got = problems_of(text)
    assert any("en: disclaimer must not be empty" in m for _, m in got)
    assert any("no texts for language 'de'" in m for _, m in got)


def test_notice_only_for_monitor(small_policy_text):
    text = replace(
        small_policy_text, "    action: bypass\n", "    action: bypass\n    notice: true\n"
    )
    assert any("applies only to 'monitor'" in m for _, m in problems_of(text))


def test_reserved_category_name(small_policy_text):
    text = replace(small_policy_text, "  work:\n", "  other:\n")
    assert any("reserved for unclassified" in m for _, m in problems_of(text))


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "policy is empty"),
        ("just text", "policy must be a mapping"),
        ("name: [unclosed", "YAML syntax error"),
        ("a: 1\n  b: 2\n", "YAML syntax error"),
    ],
)
def test_not_a_policy(text, fragment):
    assert any(fragment in m for _, m in problems_of(text))


def test_yaml_syntax_error_has_its_line(small_policy_text):
    text = replace(small_policy_text, "  work:\n", "  work: [\n")
    ((line, message),) = problems_of(text)
    assert "YAML syntax error" in message
    assert line > 10


def test_not_utf8():
    with pytest.raises(PolicyError) as info:
        parse_policy(b"name: caf\xe9\n")
    assert info.value.problems[0].message == "policy is not valid UTF-8"


def test_unreadable_file(tmp_path):
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "missing.yaml")
    assert "cannot read policy" in str(info.value)


# --- domains ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, normalized",
    [
        ("Facebook.COM", "facebook.com"),
        ("facebook.com.", "facebook.com"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("192.0.2.1", "192.0.2.1"),
        ("[2001:DB8::1]", "2001:db8::1"),
        ("intranet", "intranet"),
    ],
)
def test_normalize_domain(raw, normalized):
    assert normalize_domain(raw) == normalized


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("https://facebook.com", "is a URL"),
        ("facebook.com/path", "is a URL"),
        ("*.facebook.com", "wildcards are not needed"),
        ("facebook.com:443", "a port never changes the match"),
        ("-bad-.com", "not a valid domain"),
        ("a..b", "not a valid domain"),
        ("x" * 64 + ".com", "not a valid domain"),
        ("", "empty domain"),
    ],
)
def test_bad_domains(raw, fragment):
    with pytest.raises(ValueError) as info:
        normalize_domain(raw)
    assert fragment in str(info.value)


def test_a_newline_inside_a_domain_label_is_refused(small_policy_text):
    """Values are stripped, but a label ending in a newline ("a\n.test") is not a name."""
    text = replace(small_policy_text, "bad: [malware.test]", 'bad: ["malware\\n.test"]')
    assert any("not a valid domain" in m for _, m in problems_of(text))


# --- destinations, name case ---------------------------------------------------------------


def test_destinations_section(small_policy_text):
    text = small_policy_text + "destinations:\n  allow: [10.20.0.0/16]\n  refuse: [10.20.9.0/24]\n"
    policy = parse_policy(text)
    assert [str(n) for n in policy.destinations.allow] == ["10.20.0.0/16"]
    assert [str(n) for n in policy.destinations.refuse] == ["10.20.9.0/24"]
    assert parse_policy(small_policy_text).destinations.allow == ()


def test_destination_and_case_mistakes_have_lines(small_policy_text):
    text = small_policy_text.replace("  log_as: name\n", "  log_as: name\n  case: upper\n")
    text += "destinations:\n  allow: [10.20.0.0/33]\n  deny: [10.0.0.0/8]\n"
    found = problems_of(text)
    lines = text.splitlines()
    messages = {message: lines[line - 1] for line, message in found}
    assert any("identity: case: unknown value 'upper'" in m for m in messages)
    assert any("not a valid CIDR" in m and "10.20.0.0/33" in ln for m, ln in messages.items())
    assert any("unknown key 'deny'" in m and "allow, refuse" in m for m in messages)


# --- clients.refuse ------------------------------------------------------------------------


def test_outsiders_are_refused_at_connect_unless_the_policy_wants_the_page(small_policy_text):
    from auditproxy.policy.model import ClientRefusal

    assert parse_policy(small_policy_text).refuse is ClientRefusal.CONNECT
    allow = 'allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]'
    page = replace(small_policy_text, allow, allow + "\n  refuse: page")
    assert parse_policy(page).refuse is ClientRefusal.PAGE
    wrong = replace(small_policy_text, allow, allow + "\n  refuse: later")
    line = small_policy_text.splitlines().index("  " + allow) + 2
    assert problems_of(wrong) == [
        (line, "clients: refuse: unknown value 'later' (expected one of: connect, page)")
    ]
