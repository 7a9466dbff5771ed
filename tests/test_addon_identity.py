"""Who the person is, through the add-on's hooks (mitmproxy's test helpers, no sockets):
the client behind a trusted balancer, proxy authentication per connection (with a scripted
credential check: the real one is tests/e2e/test_kerberos.py), directory groups (a
scripted directory: the real one is tests/e2e/test_directory_groups.py), the options."""

from __future__ import annotations

from dataclasses import replace

import pytest
from mitmproxy import connection, exceptions, http
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.test import tflow

from auditproxy.decide.auth import Outcome
from auditproxy.decide.directory import Group, Membership, Reason
from auditproxy.flowstate import KEY, Answered
from auditproxy.policy.model import AuthMethod
from support.harness import HTML, PAGE, harness_for
from support.notice import DOCUMENT

GOOD = "Negotiate YGdvb2Q="  # a credential the scripted check accepts (for alice)
BALANCER = "10.20.0.5"
AUTH = "\nauth:\n  methods: [negotiate]\n  on_failure: {on_failure}\n  realm: EXAMPLE.TEST\n"
BALANCERS = f"\nbalancers:\n  trusted: [{BALANCER}/32]\n"
GROUPS = """
groups:
  - name: posters
    directory_group: Comms
    categories: {social: log}
  - name: staff
    directory_group: everyone
    notice:
      scope: all
      texts:
        en: {heading: Staff wording, disclaimer: D, monitoring: M, policy_name: P,
             link_text: L, acknowledge: A, dismiss: X}
        fr: {heading: Texte, disclaimer: D, monitoring: M, policy_name: P,
             link_text: L, acknowledge: A, dismiss: X}
"""


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


def use_policy(harness, extra: str, **options: object) -> None:
    text = harness.policy_path.read_text() + extra
    harness.policy_path.write_text(text)
    harness.configure(auditproxy_policy=str(harness.policy_path), **options)
    assert harness.addon.engine.policy.sha256 == harness.addon.engine.policy.sha256


class ScriptedChecks:
    """Stands in for the Kerberos acceptor: GOOD is alice, anything else a replay."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, scheme: AuthMethod, credential: str) -> tuple[Outcome, str | None]:
        self.calls.append(credential)
        if credential == GOOD:
            return Outcome.OK, "alice@EXAMPLE.TEST"
        return Outcome.REPLAY, None


@pytest.fixture
def authenticating(harness, monkeypatch):
    """The small policy with `auth: negotiate`; keytab checks scripted."""
    monkeypatch.setattr(harness.addon.runtime, "checks", [])
    checks = ScriptedChecks()
    monkeypatch.setattr(harness.addon.identity.services, "validate", checks)
    use_policy(harness, AUTH.format(on_failure="address") + BALANCERS)
    return checks


async def run(harness, hook: str, f: http.HTTPFlow) -> None:
    events = {
        "http_connect": http_layer.HttpConnectHook,
        "requestheaders": http_layer.HttpRequestHeadersHook,
        "responseheaders": http_layer.HttpResponseHeadersHook,
        "response": http_layer.HttpResponseHook,
    }
    await harness.tctx.master.addons.invoke_addon(harness.addon, events[hook](f))


def flow_on(
    client: connection.Client,
    url: str = "http://www.example.org/",
    headers: dict[str, str] | None = None,
    method: str = "GET",
) -> http.HTTPFlow:
    f = tflow.tflow(req=http.Request.make(method, url, b"", headers or {}))
    f.client_conn = client
    return f


def client_at(address: str) -> connection.Client:
    client = tflow.tclient_conn()
    client.peername = (address, 40000)
    return client


async def exchange(harness, f: http.HTTPFlow) -> http.HTTPFlow:
    await run(harness, "requestheaders", f)
    if f.response is None:
        f.response = http.Response.make(200, PAGE, HTML)
    await run(harness, "responseheaders", f)
    await run(harness, "response", f)
    return f


# --- the client behind a balancer --------------------------------------------------------


async def test_a_trusted_balancers_forwarded_address_is_the_client(harness):
    use_policy(harness, BALANCERS)
    f = flow_on(client_at(BALANCER), headers={"X-Forwarded-For": "6.6.6.6, 10.1.2.3"})
    await exchange(harness, f)
    decision = f.metadata[KEY].decision
    assert decision.identity.name == "10.1.2.3" and decision.allowed_client
    assert "X-Forwarded-For" not in f.request.headers  # never passed on
    (record,) = harness.records()
    assert record["source.ip"] == "10.1.2.3" and "labels.forwarded" not in record
    assert harness.metric("auditproxy_forwarded_total", result="used") == 1


async def test_an_untrusted_clients_header_is_ignored_and_noted(harness):
    use_policy(harness, BALANCERS)
    f = flow_on(client_at("10.1.2.3"), headers={"X-Forwarded-For": BALANCER})
    await exchange(harness, f)
    (record,) = harness.records()
    assert record["source.ip"] == "10.1.2.3"
    assert record["labels.forwarded"] == "ignored-untrusted-client"
    assert f.request.headers["X-Forwarded-For"] == BALANCER  # the client's own, left alone


async def test_an_outsider_behind_the_balancer_is_refused(harness):
    use_policy(harness, BALANCERS)
    f = flow_on(client_at(BALANCER), headers={"X-Forwarded-For": "192.0.2.99"})
    await run(harness, "requestheaders", f)
    assert f.response.status_code == 403
    assert f.metadata[KEY].answered is Answered.REFUSED


async def test_a_tunnel_inherits_its_connects_client(harness):
    use_policy(harness, BALANCERS)
    client = client_at(BALANCER)
    connect = flow_on(client, "http://x.com:443/", {"X-Forwarded-For": "10.4.4.4"}, "CONNECT")
    connect.request.authority, connect.request.path = "x.com:443", ""
    await run(harness, "http_connect", connect)
    inner = await exchange(harness, flow_on(client, "https://x.com/in"))
    assert inner.metadata[KEY].decision.identity.name == "10.4.4.4"
    assert harness.records()[-1]["source.ip"] == "10.4.4.4"


# --- proxy authentication ----------------------------------------------------------------


async def test_challenge_then_the_connections_principal(harness, authenticating):
    client = client_at("10.1.2.3")
    asked = await exchange(harness, flow_on(client))
    assert asked.response.status_code == 407
    assert asked.response.headers.get_all("Proxy-Authenticate") == ["Negotiate"]
    signed = await exchange(harness, flow_on(client, headers={"Proxy-Authorization": GOOD}))
    again = await exchange(harness, flow_on(client))  # no credential: the connection's
    repeated = await exchange(harness, flow_on(client, headers={"Proxy-Authorization": GOOD}))
    assert authenticating.calls == [GOOD]  # the same value again is not checked again
    users = [r["user.name"] for r in harness.records()]
    assert users == ["10.1.2.3", "alice", "alice", "alice"]
    assert signed.metadata[KEY].decision.auth.scheme is AuthMethod.NEGOTIATE
    assert "Proxy-Authorization" not in repeated.request.headers  # never to the site
    assert harness.metric("auditproxy_auth_challenges_total", reason="no_credential") == 1
    other = await exchange(harness, flow_on(client_at("10.1.2.3")))  # same address
    assert other.response.status_code == 407  # a principal is per connection, not address
    assert again.response.status_code == 200


async def test_a_failed_credential_falls_back_to_the_address(harness, authenticating):
    f = await exchange(
        harness, flow_on(client_at("10.1.2.3"), headers={"Proxy-Authorization": "Negotiate YA=="})
    )
    assert f.response.status_code == 200
    (record,) = harness.records()
    assert record["user.name"] == "10.1.2.3" and record["labels.auth_failure"] == "replay"
    assert harness.metric("auditproxy_auth_fallbacks_total", reason="replay") == 1
    assert (
        harness.metric("auditproxy_auth_validations_total", scheme="negotiate", outcome="replay")
        == 1
    )


async def test_refuse_challenges_again_after_a_failure(harness, monkeypatch):
    monkeypatch.setattr(harness.addon.runtime, "checks", [])
    monkeypatch.setattr(harness.addon.identity.services, "validate", ScriptedChecks())
    use_policy(harness, AUTH.format(on_failure="refuse"))
    client = client_at("10.1.2.3")
    first = await exchange(harness, flow_on(client))
    bad = await exchange(harness, flow_on(client, headers={"Proxy-Authorization": "Negotiate YA"}))
    bare = await exchange(harness, flow_on(client))
    assert [f.response.status_code for f in (first, bad, bare)] == [407, 407, 407]
    # The refused credential's 407 says why in its record (the first asked for none).
    failures = [r.get("labels.auth_failure") for r in harness.records("access")]
    assert failures[0] is None and failures[1] == "replay"


async def test_a_tunnel_is_never_challenged_inside_and_inherits_the_principal(
    harness, authenticating
):
    client = client_at("10.1.2.3")
    connect = flow_on(client, "http://x.com:443/", {"Proxy-Authorization": GOOD}, "CONNECT")
    await run(harness, "http_connect", connect)
    assert connect.response is None
    inner = await exchange(harness, flow_on(client, "https://x.com/in"))
    assert inner.response.status_code == 200
    assert inner.metadata[KEY].decision.identity.name == "alice"


async def test_a_balancer_connection_that_changes_client_loses_the_principal(
    harness, authenticating
):
    """A balancer that shares a server connection between clients (HAProxy without
    `http-reuse never`) must not hand one person's principal to another."""
    client = client_at(BALANCER)
    signed = flow_on(client, headers={"Proxy-Authorization": GOOD, "X-Forwarded-For": "10.1.1.1"})
    await exchange(harness, signed)
    same = await exchange(harness, flow_on(client, headers={"X-Forwarded-For": "10.1.1.1"}))
    other = await exchange(harness, flow_on(client, headers={"X-Forwarded-For": "10.2.2.2"}))
    assert same.metadata[KEY].decision.identity.name == "alice"
    assert other.response.status_code == 407


async def test_outsiders_are_refused_not_challenged(harness, authenticating):
    f = await exchange(harness, flow_on(client_at("192.0.2.1")))
    assert f.response.status_code == 403


# --- groups -----------------------------------------------------------------------------


class ScriptedDirectory:
    def __init__(self, groups: dict[str, tuple[str, ...]], *, known: bool) -> None:
        self.groups_of, self.known, self.asked = groups, known, []
        self.pending = 0

    def membership(self, principal: str) -> Membership:
        names = self.groups_of.get(principal.split("@")[0].lower())
        if names is None:
            return Membership(Reason.USER_NOT_FOUND)
        return Membership(Reason.OK, tuple(Group(n, f"cn={n}") for n in names))

    def cached(self, principal: str) -> Membership | None:
        return replace(self.membership(principal), cached=True) if self.known else None

    async def groups(self, principal: str) -> Membership:
        self.asked.append(principal)
        return self.membership(principal)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("known", [True, False], ids=["cached", "looked-up"])
async def test_the_first_policy_group_decides(harness, monkeypatch, known):
    directory = ScriptedDirectory(
        {"alice": ("Comms", "everyone"), "bob": ("everyone",)}, known=known
    )
    monkeypatch.setattr(harness.addon.identity.services, "directory", directory)
    use_policy(harness, GROUPS)
    for who in ("alice", "bob", "dave"):
        f = flow_on(client_at("10.1.2.3"), "http://www.facebook.com/", {**DOCUMENT})
        f.metadata["proxyauth"] = (who, "")
        await exchange(harness, f)
    records = {r["user.name"]: r for r in harness.records("access")}
    assert records["alice"]["user.group.name"] == "posters"
    assert records["alice"]["labels.action"] == "log"
    assert records["bob"]["user.group.name"] == "staff"
    assert "user.group.name" not in records["dave"]
    shown = {r["user.name"] for r in harness.records("notice-shown")}
    assert shown == {"bob", "dave"}  # posters see no notice for social sites
    assert directory.asked == ([] if known else ["alice", "bob", "dave"])
    assert (
        harness.metric(
            "auditproxy_group_requests_total", group="posters", category="social", action="log"
        )
        == 1
    )


async def test_a_principal_of_another_realm_never_gets_a_local_namesakes_groups(
    harness, authenticating, monkeypatch
):
    """alice@OTHER.TEST (a trusted realm's user, signed in with Kerberos) is not the local
    alice: a lookup by the bare name would give her the local alice's groups and policy
    (red team)."""
    directory = ScriptedDirectory({"alice": ("Comms",)}, known=False)
    monkeypatch.setattr(harness.addon.identity.services, "directory", directory)
    use_policy(harness, GROUPS)
    foreign = "Negotiate Zm9yZWlnbg=="

    async def check(scheme: AuthMethod, credential: str) -> tuple[Outcome, str | None]:
        other = credential == foreign
        return Outcome.OK, "alice@OTHER.TEST" if other else "alice@EXAMPLE.TEST"

    monkeypatch.setattr(harness.addon.identity.services, "validate", check)
    for credential, address, path in (
        (foreign, "10.1.2.3", "/foreign"),
        (GOOD, "10.1.2.4", "/home"),
    ):
        headers = {**DOCUMENT, "Proxy-Authorization": credential}
        f = flow_on(client_at(address), f"http://www.facebook.com{path}", headers)
        await exchange(harness, f)
    records = {r["url.path"]: r for r in harness.records("access")}
    assert records["/foreign"]["user.name"] == "alice@other.test"
    assert "user.group.name" not in records["/foreign"]
    assert records["/foreign"]["labels.action"] == "monitor"  # the policy's, not posters'
    assert records["/home"]["user.group.name"] == "posters"
    assert directory.asked == ["alice@EXAMPLE.TEST"]  # the foreign one was never looked up
    lookups = harness.metric(
        "auditproxy_directory_lookups_total", reason="foreign_realm", source="directory"
    )
    assert lookups == 1


async def test_the_groups_notice_wording_is_shown(harness, monkeypatch):
    directory = ScriptedDirectory({"bob": ("everyone",)}, known=True)
    monkeypatch.setattr(harness.addon.identity.services, "directory", directory)
    use_policy(harness, GROUPS)
    f = flow_on(client_at("10.1.2.3"), "http://www.facebook.com/", {**DOCUMENT})
    f.metadata["proxyauth"] = ("bob", "")
    await exchange(harness, f)
    assert b"Staff wording" in f.response.content


# --- options -----------------------------------------------------------------------------


def test_a_policy_asking_for_negotiate_needs_the_keytab(harness):
    with pytest.raises(exceptions.OptionsError, match="auditproxy_keytab"):
        use_policy(harness, AUTH.format(on_failure="address"))
    assert not harness.addon.engine.policy.auth.enabled  # the last good policy stays


def test_the_policys_auth_and_mitmproxys_proxyauth_cannot_both_answer(harness, tmp_path):
    from mitmproxy.addons.proxyauth import ProxyAuth

    harness.tctx.master.addons.add(ProxyAuth())
    harness.configure(proxyauth="any")
    keytab = tmp_path / "x.keytab"
    keytab.write_bytes(b"")
    with pytest.raises(exceptions.OptionsError, match="proxyauth"):
        harness.policy_path.write_text(
            harness.policy_path.read_text() + AUTH.format(on_failure="address")
        )
        harness.configure(
            auditproxy_policy=str(harness.policy_path), auditproxy_service_principal=""
        )


def test_directory_options_make_a_directory_and_bad_ones_are_refused(harness, tmp_path):
    password = tmp_path / "pw"
    password.write_text("secret\n")
    harness.configure(
        auditproxy_directory="ldap://dc.example.test",
        auditproxy_directory_base="dc=example,dc=test",
        auditproxy_directory_password_file=str(password),
    )
    directory = harness.addon.identity.services.directory
    assert directory is not None and directory.settings.bind_password == "secret"
    with pytest.raises(exceptions.OptionsError, match="nesting"):
        harness.configure(auditproxy_directory_nesting="sideways")
    with pytest.raises(exceptions.OptionsError, match="ldap://"):
        harness.configure(auditproxy_directory="http://dc")
    harness.configure(auditproxy_directory="")
    assert harness.addon.identity.services.directory is None


def test_basic_needs_where_passwords_are_checked(harness, monkeypatch):
    with pytest.raises(exceptions.OptionsError, match="auditproxy_basic_auth"):
        use_policy(harness, "\nauth:\n  methods: [basic]\n")
    harness.configure(auditproxy_basic_auth="grace:pw")
    harness.configure(auditproxy_policy=str(harness.policy_path))
    assert harness.addon.engine.policy.auth.methods == (AuthMethod.BASIC,)
    assert harness.addon.engine.policy.warnings  # check warns: clear-text passwords


async def test_basic_credentials_are_checked_off_the_loop(harness):
    harness.configure(auditproxy_basic_auth="grace:gr4ce")
    use_policy(harness, "\nauth:\n  methods: [basic]\n  on_failure: refuse\n")
    services = harness.addon.identity.services
    good = "Basic " + __import__("base64").b64encode(b"grace:gr4ce").decode()
    assert await services.validate(AuthMethod.BASIC, good) == (Outcome.OK, "grace")
    bad = "Basic " + __import__("base64").b64encode(b"grace:nope").decode()
    assert await services.validate(AuthMethod.BASIC, bad) == (Outcome.INVALID, None)
    assert await services.validate(AuthMethod.BASIC, "Basic !!") == (Outcome.BAD_TOKEN, None)


async def test_a_bypassed_tunnel_behind_the_balancer_records_the_client(harness):
    from types import SimpleNamespace

    from mitmproxy.proxy.context import Context
    from mitmproxy.proxy.layers import tls as tls_layer
    from mitmproxy.tls import ClientHelloData

    use_policy(harness, BALANCERS)
    client = client_at(BALANCER)
    connect = flow_on(client, "http://bank.test:443/", {"X-Forwarded-For": "10.7.7.7"}, "CONNECT")
    await run(harness, "http_connect", connect)
    context = Context(client, harness.tctx.options)
    context.server.address = ("bank.test", 443)
    hello = ClientHelloData(context, SimpleNamespace(sni="bank.test"))
    await harness.tctx.master.addons.invoke_addon(
        harness.addon, tls_layer.TlsClienthelloHook(hello)
    )
    assert hello.ignore_connection is True
    (record,) = harness.records("tunnel")
    assert record["source.ip"] == "10.7.7.7" and record["user.name"] == "10.7.7.7"
