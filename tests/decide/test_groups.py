"""A policy group's overrides on the decision (`Engine.decide`, `Engine.with_groups`)."""

from __future__ import annotations

import pytest

from auditproxy.decide.auth import AuthNote
from auditproxy.decide.decision import Engine
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import Action, AuthMethod, NoticeScope
from auditproxy.sinks.records import rule_fields

SECRET = b"k" * 32
GROUPS = """groups:
  - name: posters
    directory_group: Comms
    categories: {social: log, other: monitor}
    sites: {x: monitor}
  - name: quiet
    directory_group: quiet
    notice: {enabled: false, scope: all}
    log_as: pseudonym
  - name: bankers
    directory_group: bankers
    sites: {bank: block}
"""


@pytest.fixture
def engine(small_policy_text: str) -> Engine:
    return Engine(parse_policy(small_policy_text + GROUPS), SECRET)


def decide(engine: Engine, host: str, groups: tuple[str, ...] = (), **kw) -> object:
    return engine.decide(
        host=host, client_address="10.0.0.1", proxyauth_user="alice", groups=groups, **kw
    )


def test_first_listed_group_wins_whatever_order_the_directory_gives(engine: Engine) -> None:
    assert engine.first_group(["quiet", "comms"]).name == "posters"  # case-insensitive
    assert engine.first_group(["Quiet"]).name == "quiet"
    assert engine.first_group(["staff"]) is None


def test_a_site_override_wins_over_its_category(engine: Engine) -> None:
    facebook = decide(engine, "www.facebook.com", ("comms",))
    assert facebook.action is Action.LOG and not facebook.match.notice
    x = decide(engine, "x.com", ("comms",))
    assert x.action is Action.MONITOR and x.match.notice  # monitored: the notice applies
    unclassified = decide(engine, "example.org", ("comms",))
    assert unclassified.action is Action.MONITOR and unclassified.match.notice
    assert decide(engine, "www.facebook.com").action is Action.MONITOR  # no group: policy


def test_notice_switch_scope_and_log_as(engine: Engine) -> None:
    quiet = decide(engine, "www.facebook.com", ("quiet",))
    assert quiet.action is Action.MONITOR and not quiet.match.notice
    assert quiet.notice is not None and quiet.notice.scope is NoticeScope.ALL
    assert "user.hash" in quiet.user and "user.name" not in quiet.user
    assert "user.name" in decide(engine, "www.facebook.com").user  # the policy: names


def test_fronting_still_takes_the_strictest_name_after_overrides(engine: Engine) -> None:
    """A banker's bank is blocked: a TLS server name of the bank inside a tunnel to a
    monitored site is blocked too."""
    fronted = decide(engine, "www.facebook.com", ("bankers",), sni="bank.test")
    assert fronted.action is Action.BLOCK and fronted.names_differ


def test_with_groups_is_decide_with_groups(engine: Engine) -> None:
    before = decide(engine, "www.facebook.com", sni="www.facebook.com", connect_to="x.com")
    after = engine.with_groups(before, ["comms"])
    direct = decide(
        engine, "www.facebook.com", ("comms",), sni="www.facebook.com", connect_to="x.com"
    )
    assert after == direct
    assert engine.with_groups(before, ["nobody"]) is before


def test_the_record_names_the_policy_group_and_how_auth_went(engine: Engine) -> None:
    signed = decide(
        engine,
        "www.facebook.com",
        ("comms", "Domain Users", "secret-project"),
        auth=AuthNote("alice", AuthMethod.NEGOTIATE),
    )
    fields = rule_fields(signed)
    assert fields["user.group.name"] == "posters"  # the policy's name, not the directory's
    assert fields["labels.auth_scheme"] == "negotiate"
    assert "secret-project" not in str(fields) and "labels.auth_failure" not in fields
    fallback = decide(engine, "www.facebook.com", auth=AuthNote(failure="expired"))
    fields = rule_fields(fallback)
    assert fields["labels.auth_failure"] == "expired" and "labels.auth_scheme" not in fields
