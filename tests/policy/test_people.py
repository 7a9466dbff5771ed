"""The policy's `auth`, `groups` and `balancers` sections: what they mean, every problem
with its line, and the warnings `auditproxy check` prints."""

from __future__ import annotations

import ipaddress

import pytest

from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import Action, AuthFailure, AuthMethod, LogAs, NoticeScope, PolicyError

TEXTS = (
    "{heading: H, disclaimer: D, monitoring: M, policy_name: P, link_text: L, "
    "acknowledge: A, dismiss: X}"
)


def with_sections(small_policy_text: str, extra: str) -> str:
    return small_policy_text + extra


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="p.yaml")
    return [problem.format("p.yaml") for problem in info.value.problems]


def line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_auth_section(small_policy_text: str) -> None:
    policy = parse_policy(
        small_policy_text
        + "auth:\n  methods: [negotiate]\n  on_failure: refuse\n  realm: example.test\n"
    )
    assert policy.auth.methods == (AuthMethod.NEGOTIATE,)
    assert policy.auth.on_failure is AuthFailure.REFUSE and policy.auth.realm == "EXAMPLE.TEST"
    assert policy.warnings == ()
    assert not parse_policy(small_policy_text).auth.enabled  # none by default


def test_basic_is_valid_but_warned_about_with_its_line(small_policy_text: str) -> None:
    text = small_policy_text + "auth:\n  methods: [negotiate, basic]\n"
    (warning,) = parse_policy(text).warnings
    assert warning.line == line_of(text, "methods: [negotiate, basic]")
    assert "clear text" in warning.message and warning.message.startswith("warning:")


@pytest.mark.parametrize(
    ("section", "fragment", "message"),
    [
        ("auth:\n  methods: []\n", "methods: []", "at least one"),
        ("auth:\n  methods: [kerberos]\n", "methods: [kerberos]", "unknown value 'kerberos'"),
        ("auth:\n  methods: [basic, basic]\n", "methods: [basic, basic]", "listed twice"),
        ("auth:\n  methods: [negotiate]\n  on_failure: maybe\n", "on_failure", "unknown value"),
        ("auth:\n  methods: [negotiate]\n  realm: a@b\n", "realm", "without '@'"),
        ("auth:\n  method: [negotiate]\n", "method:", "did you mean 'methods'"),
        ("balancers:\n  trusted: [10.0.0.1/8]\n", "10.0.0.1/8", "not a valid CIDR"),
        ("balancers: [10.0.0.1/32]\n", "balancers", "must be a mapping"),
    ],
)
def test_auth_and_balancer_problems_have_lines(
    small_policy_text: str, section: str, fragment: str, message: str
) -> None:
    text = small_policy_text + section
    (found,) = [p for p in problems(text) if message in p]
    assert found.startswith(f"p.yaml:{line_of(text, fragment)}:")


def test_auth_needs_proxy_auth_among_the_identity_sources(small_policy_text: str) -> None:
    text = small_policy_text.replace("sources: [proxy_auth, header, address]", "sources: [address]")
    text += "auth:\n  methods: [negotiate]\n"
    assert any("must include 'proxy_auth'" in p for p in problems(text))


def test_balancers(small_policy_text: str) -> None:
    policy = parse_policy(small_policy_text + "balancers:\n  trusted: [10.20.0.5/32]\n")
    assert policy.balancers == (ipaddress.ip_network("10.20.0.5/32"),)


GROUPS = f"""groups:
  - name: comms
    directory_group: Communications
    categories: {{social: log, other: block}}
    sites: {{business-facebook: monitor}}
    log_as: pseudonym
  - name: staff
    notice:
      enabled: false
  - name: fr-only
    directory_group: Francophones
    notice:
      scope: category
      languages: [fr]
      texts:
        fr: {TEXTS}
"""


def test_groups_section(small_policy_text: str) -> None:
    comms, staff, francophones = parse_policy(small_policy_text + GROUPS).groups
    assert (comms.name, comms.directory_group) == ("comms", "Communications")
    assert dict(comms.categories) == {"social": Action.LOG, "other": Action.BLOCK}
    assert dict(comms.sites) == {"business-facebook": Action.MONITOR}
    assert comms.log_as is LogAs.PSEUDONYM and comms.notice is None
    assert (staff.directory_group, staff.notice_enabled, staff.notice) == ("staff", False, None)
    notice = francophones.notice
    assert notice is not None and notice.scope is NoticeScope.CATEGORY
    assert notice.languages == ("fr",) and notice.texts["fr"].heading == "H"


@pytest.mark.parametrize(
    ("groups", "fragment", "message"),
    [
        ("  - name: Comms\n", "Comms", "lower case letters"),
        ("  - name: other\n", "name: other", "lower case letters"),
        ("  - name: a\n    categories: {socail: log}\n", "socail", "did you mean 'social'"),
        ("  - name: a\n    sites: {facebok: log}\n", "facebok", "did you mean 'facebook'"),
        ("  - name: a\n    sites: {facebook: allow}\n", "facebook: allow", "unknown value"),
        ("  - name: a\n  - name: a\n", "  - name: a", "listed twice"),
        (
            "  - name: a\n    directory_group: X\n  - name: b\n    directory_group: x\n",
            "  - name: b",
            "would never apply",
        ),
        ("  - name: a\n    notice: {languages: [de]}\n", "notice:", "no texts for language 'de'"),
        ("  - name: a\n    colour: red\n", "colour", "unknown key 'colour'"),
        ("  - name: a\n    log_as: nickname\n", "log_as", "unknown value"),
    ],
)
def test_group_problems_have_lines(
    small_policy_text: str, groups: str, fragment: str, message: str
) -> None:
    text = small_policy_text + "groups:\n" + groups
    found = [p for p in problems(text) if message in p]
    assert found, problems(text)
    lines = [n for n, line in enumerate(text.splitlines(), 1) if fragment in line]
    assert any(f.startswith(f"p.yaml:{n}:") for f in found for n in lines), found


def test_groups_for_people_known_only_by_address_are_warned_about(small_policy_text: str) -> None:
    text = small_policy_text.replace("sources: [proxy_auth, header, address]", "sources: [address]")
    text = text.replace("  header: X-Authenticated-User\n", "").replace(
        "  trusted_proxies: [10.9.9.9/32]\n", ""
    )
    (warning,) = parse_policy(text + "groups:\n  - name: a\n").warnings
    assert "known by name" in warning.message
