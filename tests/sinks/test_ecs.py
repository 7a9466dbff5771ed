"""Every record the product emits, checked against Elastic's published ECS definitions.

The definitions are vendored from the npm package @elastic/ecs by scripts/vendor-ecs into
tests/fixtures/ecs/ecs_flat.json (version in its `_meta`). Records are built by the
current code for every `event.action`, written through the access log with its hash chain
(so the chain's fields are checked too), and read back from the file.
"""

from __future__ import annotations

import ipaddress
import json
import re
from functools import cache
from typing import Any

import pytest

from auditproxy.decide.auth import AuthNote
from auditproxy.decide.decision import Engine
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import AuthMethod, LoggingSettings
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.connections import (
    Traffic,
    connect_failure_event,
    tcp_event,
    tls_failure_event,
    websocket_event,
)
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import (
    ECS_VERSION,
    Exchange,
    access_event,
    log_dropped_event,
    notice_event,
    tunnel_event,
)
from auditproxy.sinks.seal import Start, derive_key
from support.paths import FIXTURES, POLICIES

ECS_FILE = FIXTURES / "ecs" / "ecs_flat.json"
SECRET = b"e" * 32
BODY = 1234  # the response body size the exchanges report
HEAD = 187  # and the size of the response's status line and headers

# Fields outside ECS and outside `labels.*` need a reason here. None so far.
CUSTOM_FIELDS: dict[str, str] = {}

TEXT_TYPES = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text"}
ISO_DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


@cache
def ecs() -> dict[str, Any]:
    return json.loads(ECS_FILE.read_text(encoding="utf-8"))


def field(name: str) -> dict[str, Any]:
    return ecs()["fields"][name]


def allowed(name: str) -> dict[str, dict[str, Any]]:
    return {v["name"]: v for v in field(name)["allowed_values"]}


# ---------------------------------------------------------------------------------------
# The records, one per case, as written


def exchange(**overrides: Any) -> Exchange:
    values: dict[str, Any] = dict(
        method="GET",
        scheme="https",
        port=443,
        path="/profile/alice",
        http_version="2.0",
        status=200,
        response_bytes=BODY,
        duration_ns=5_000_000,
        client_address="10.1.2.3",
        response_head_bytes=HEAD,
    )
    values.update(overrides)
    return Exchange(**values)


GROUPS = """groups:
  - name: posters
    directory_group: comms
    categories: {social: log}
"""


def build_cases(policy_text: str) -> dict[str, dict]:
    """Case name -> the fields the product hands to the access log."""
    named = Engine(parse_policy(policy_text + GROUPS), SECRET)
    pseudonym = Engine(
        parse_policy(policy_text.replace("log_as: name", "log_as: pseudonym")), SECRET
    )
    assert pseudonym.pseudonymize is not None

    def decide(engine: Engine = named, **kw: Any):
        kw.setdefault("client_address", "10.1.2.3")
        return engine.decide(**kw)

    facebook = decide(host="www.facebook.com", sni="www.facebook.com", proxyauth_user="alice")
    blocked = exchange(status=403, response_bytes=512)
    return {
        "access": access_event(facebook, exchange()),
        "access-pseudonym": access_event(
            decide(pseudonym, host="x.com", proxyauth_user="alice"), exchange()
        ),
        "access-http-error": access_event(
            decide(host="intranet.example.test"), exchange(scheme="http", port=80, status=502)
        ),
        "access-no-response": access_event(
            decide(host="x.com"),
            exchange(
                status=None,
                response_bytes=None,
                response_head_bytes=None,
                error="Connection reset by peer",
            ),
        ),
        "access-untrusted-header": access_event(
            decide(host="x.com", header_value="ceo"), exchange()
        ),
        "access-ipv6": access_event(
            decide(host="[2001:db8::1]:8443", client_address="::1"), exchange(port=8443)
        ),
        "blocked": access_event(decide(host="malware.test"), blocked, "blocked"),
        "blocked-refused-client": access_event(
            decide(host="x.com", client_address="203.0.113.5"), blocked, "blocked"
        ),
        "tunnel": tunnel_event(decide(host="bank.test", sni="bank.test"), 443, "10.1.2.3"),
        "tunnel-ipv6": tunnel_event(decide(host="2001:db8::2"), 443, "10.1.2.3"),
        "notice-shown": notice_event(facebook, "notice-shown", "site:facebook"),
        "notice-offered": notice_event(facebook, "notice-offered", "site:facebook"),
        "notice-acknowledged": notice_event(facebook, "notice-acknowledged", "site:facebook"),
        "log-dropped": log_dropped_event("0123456789abcdef:10-12", 3),
        "access-destination": access_event(
            decide(host="intranet.example.test", connect_to="10.20.0.7"),
            exchange(scheme="http", port=80, destination=("10.20.0.7", 80)),
        ),
        "refused": access_event(decide(host="x.com", connect_to="127.0.0.1"), blocked, "refused"),
        "tcp": tcp_event(decide(host="git.example.test", connect_to="10.20.0.9"), TRAFFIC),
        "tcp-blocked": tcp_event(decide(host="malware.test"), TRAFFIC, refused=True),
        "tcp-refused": tcp_event(decide(host="[::1]", connect_to="::1"), TRAFFIC, refused=True),
        "websocket": websocket_event(decide(host="x.com"), TRAFFIC, 3, 5),
        "tls-failed": tls_failure_event(
            facebook, 443, "10.1.2.3", "client", "certificate-rejected", "does not trust"
        ),
        "connect-failed": connect_failure_event(
            decide(host="x.com"), 9, "10.1.2.3", "Connection refused"
        ),
        # Who (issue #14): a policy group, Kerberos, an address behind a balancer.
        "access-group-negotiate": access_event(
            decide(
                host="www.facebook.com",
                auth=AuthNote("alice", AuthMethod.NEGOTIATE),
                groups=("comms",),
            ),
            exchange(),
        ),
        "access-auth-fallback-forwarded": access_event(
            decide(
                host="x.com",
                auth=AuthNote(failure="expired"),
                forwarded="ignored-untrusted-client",
            ),
            exchange(),
        ),
        "access-lookalike-inside-tunnel": access_event(
            decide(
                host="x.com",
                proxyauth_user="\u0430lice",
                header_value="bob",
                inner_header="carol",
                client_address="10.9.9.9",
            ),
            exchange(),
        ),
    }


TRAFFIC = Traffic(8022, "10.1.2.3", ("10.20.0.9", 8022), 120, 4096, 2_500_000_000)
CASES = list(build_cases((POLICIES / "small.yaml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each case written by the access log with the chain plugged in, read back."""
    path = tmp_path_factory.mktemp("ecs") / "access.log"
    cases = build_cases((POLICIES / "small.yaml").read_text(encoding="utf-8"))
    # A chain that begins after another: its first record carries every chain field.
    chain = LogChain(derive_key(SECRET), start=Start.UNCLEAN_STOP, previous="0123456789abcdef:9")
    settings = LoggingSettings(source_ip=True, url_path=True)
    log = AccessLog(LogSink(str(path), lambda _: None), settings, chain)
    for fields in cases.values():
        log.emit(fields)
    log.sink.close()
    written = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(written) == len(cases)
    return dict(zip(cases, written, strict=True))


# ---------------------------------------------------------------------------------------
# The vendored definitions


def test_vendored_definitions_are_the_pinned_release():
    meta = ecs()["_meta"]
    assert (meta["package"], meta["version"], meta["license"]) == (
        "@elastic/ecs",
        "8.11.5",
        "Apache-2.0",
    )
    assert meta["ecs_version"] == ECS_VERSION  # the version the records claim
    assert (ECS_FILE.parent / "LICENSE.txt").is_file() and (
        ECS_FILE.parent / "NOTICE.txt"
    ).is_file()
    assert len(ecs()["fields"]) > 1000


def test_every_action_is_covered(records):
    actions = {r["event.action"] for r in records.values()}
    assert actions == {
        "access",
        "blocked",
        "tunnel",
        "notice-shown",
        "notice-offered",
        "notice-acknowledged",
        "log-dropped",
        "refused",
        "tcp",
        "websocket",
        "tls-failed",
        "connect-failed",
    }


# ---------------------------------------------------------------------------------------
# Names and types


def check_value(name: str, definition: dict[str, Any], value: Any) -> None:
    kind = definition["type"]
    if "array" in definition["normalize"]:
        assert isinstance(value, list) and value, f"{name}: ECS normalises it to an array"
        values = value
    else:
        assert not isinstance(value, list | dict), f"{name}: a single value, not {value!r}"
        values = [value]
    for v in values:
        if kind in TEXT_TYPES:
            assert isinstance(v, str), f"{name} ({kind}): {v!r}"
        elif kind == "long":
            assert type(v) is int, f"{name} (long): {v!r}"
        elif kind in ("float", "scaled_float"):
            assert type(v) in (int, float), f"{name} ({kind}): {v!r}"
        elif kind == "boolean":
            assert type(v) is bool, f"{name} (boolean): {v!r}"
        elif kind == "date":
            assert isinstance(v, str) and ISO_DATE.fullmatch(v), f"{name} (date): {v!r}"
        elif kind == "ip":
            ipaddress.ip_address(v)
        else:
            pytest.fail(f"{name}: a field of type {kind} is not expected in an access record")


@pytest.mark.parametrize("case", CASES)
def test_field_names_and_types(records, case):
    for name, value in records[case].items():
        if name.startswith("labels."):
            # ECS labels: custom key/value pairs, all values stored as keyword.
            assert field("labels")["object_type"] == "keyword"
            assert "." not in name.removeprefix("labels."), f"{name}: labels are flat"
            assert isinstance(value, str), f"{name}: labels are keyword strings"
            continue
        if name in CUSTOM_FIELDS:
            continue
        assert name in ecs()["fields"], f"{name} is not an ECS field; use labels.* or justify it"
        definition = field(name)
        assert definition["level"] in ("core", "extended"), name
        check_value(name, definition, value)


# ---------------------------------------------------------------------------------------
# Categorisation


@pytest.mark.parametrize("case", CASES)
def test_categorisation_values_are_allowed(records, case):
    record = records[case]
    assert record["event.kind"] in allowed("event.kind")
    assert record["event.outcome"] in allowed("event.outcome")
    assert set(record["event.category"]) <= set(allowed("event.category"))
    assert set(record["event.type"]) <= set(allowed("event.type"))


@pytest.mark.parametrize("case", CASES)
def test_each_event_type_is_expected_for_each_category(records, case):
    record = records[case]
    categories = allowed("event.category")
    for category in record["event.category"]:
        expected = categories[category]["expected_event_types"]
        for kind in record["event.type"]:
            assert kind in expected, f"event.type {kind} not expected for category {category}"


# ---------------------------------------------------------------------------------------
# What the definitions' texts say


def test_url_domain_definition_asks_for_brackets_around_ipv6():
    assert "enclosed by `[` and `]`" in field("url.domain")["description"]
    assert "should also be captured in the `domain` field" in field("url.domain")["description"]


@pytest.mark.parametrize("case", CASES)
def test_url_domain_brackets_ipv6_literals(records, case):
    domain = records[case].get("url.domain")
    if domain is None:
        return
    inner = domain[1:-1] if domain.startswith("[") and domain.endswith("]") else domain
    try:
        ip = ipaddress.ip_address(inner)
    except ValueError:
        assert "[" not in domain, domain
        return
    if ip.version == 6:
        assert domain == f"[{ip}]", f"url.domain {domain!r}: an IPv6 literal goes in brackets"
    else:
        assert domain == str(ip)


def test_response_bytes_definitions():
    assert "(body and headers)" in field("http.response.bytes")["description"]
    assert "response body" in field("http.response.body.bytes")["description"]


@pytest.mark.parametrize("case", CASES)
def test_response_sizes_follow_ecs(records, case):
    """Built with a body of BODY bytes (512 for blocked) and a head of HEAD bytes: the body
    size goes in http.response.body.bytes; http.response.bytes counts both."""
    record = records[case]
    body = 512 if case.startswith(("blocked", "refused")) else BODY
    has_response = record["event.action"] in ("access", "blocked", "refused") and (
        "http.response.status_code" in record
    )
    if not has_response:
        assert "http.response.bytes" not in record and "http.response.body.bytes" not in record
        return
    assert record.get("http.response.body.bytes") == body
    assert record["http.response.bytes"] == HEAD + body


def test_chain_fields_are_ecs(records):
    first = next(iter(records.values()))
    assert field("event.sequence")["type"] == "long"
    assert "integrity" in field("event.hash")["description"]
    assert {"event.sequence", "event.hash", "labels.log_chain"} <= set(first)
    assert first["labels.log_chain_start"] == "unclean-stop"


def test_no_custom_field_is_left_unjustified(records):
    names = {name for record in records.values() for name in record}
    custom = {n for n in names if n not in ecs()["fields"] and not n.startswith("labels.")}
    assert custom == set(CUSTOM_FIELDS), "justify custom fields in CUSTOM_FIELDS, with a reason"
