"""Kerberos single sign-on through the real `auditproxy run`: a real MIT KDC, the proxy's
keytab, kinit'd curl and tokens made in the test process, plain HTTP and HTTPS (the
tunnel's requests inherit its CONNECT's principal). Faults: a request without a ticket,
damaged, replayed and expired tokens, a KDC that is down, and a policy that refuses
instead of falling back to the address. Every one is bounded, counted and recorded.

Needs krb5-kdc, krb5-admin-server, krb5-user and curl (.ci/run installs them) and the
kerberos extra (gssapi): skipped locally without them, failed under CI.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import CertAuthority, ProxyClient, Upstream
from support.kerberos import CLOCKSKEW, KerberosRealm
from support.proxy import AuditProxyProcess
from support.servers import require_module, require_programs
from support.sso import SsoRealm, sso_policy, statuses

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROGRAMS = {
    "krb5kdc": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
    "curl": "curl",
}


@dataclass
class Stack:
    sso: SsoRealm
    upstream: Upstream
    proxy: AuditProxyProcess  # on_failure: address
    dir: Path

    def proxy_started(self, name: str, policy: Path, *args: str) -> AuditProxyProcess:
        workdir = self.dir / name
        workdir.mkdir()
        return AuditProxyProcess(
            workdir,
            [*self.sso.proxy_args(), *args],
            policy=policy,
            upstream_mode=self.upstream.proxy_mode,
            upstream_ca=self.dir / "upstream-ca.pem",
            env=self.sso.proxy_env,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[Stack]:
    require_programs(PROGRAMS)
    require_module("gssapi", "the kerberos extra: pip install 'auditproxy[kerberos]'")
    workdir = tmp_path_factory.mktemp("kerberos")
    test_ca.write_ca(workdir, "upstream-ca.pem")
    (workdir / "realm").mkdir()
    with (
        KerberosRealm(workdir / "realm") as kdc,
        Upstream(test_ca) as upstream,
        pytest.MonkeyPatch.context() as env,
    ):
        for name in ("KRB5_CONFIG", "KRB5RCACHEDIR"):  # tokens made in the test process
            env.setenv(name, kdc.env[name])
        sso = SsoRealm(kdc)
        stack = Stack(sso, upstream, None, workdir)  # type: ignore[arg-type]
        with stack.proxy_started("proxy", sso_policy(workdir)) as proxy:
            stack.proxy = proxy
            yield stack


def records_for(proxy: AuditProxyProcess, domain: str, count: int = 1) -> list[dict]:
    return proxy.wait_for_records(count, lambda r: r.get("url.domain") == domain)


def test_curl_is_identified_by_its_ticket_over_http_and_https(stack: Stack) -> None:
    alice = stack.sso.person("alice")
    proxy = stack.proxy
    done = stack.sso.curl(
        alice,
        proxy.port,
        "http://www.facebook.com/a",
        "https://x.com/b",
        ca_file=proxy.ca_file,
        auth="--proxy-anyauth",  # as browsers do: wait for the 407, then send the ticket
    )
    assert statuses(done.stdout) == [200, 200], done.stderr
    plain = records_for(proxy, "www.facebook.com", 2)
    assert [r["http.response.status_code"] for r in plain] == [407, 200]
    assert plain[0]["user.name"] == "127.0.0.1"  # the challenge itself: nobody yet
    assert plain[1]["user.name"] == "alice"  # the principal without its realm, normalised
    assert plain[1]["labels.identity_source"] == "proxy_auth"
    assert plain[1]["labels.auth_scheme"] == "negotiate"
    inside = records_for(proxy, "x.com")
    # The token came with the CONNECT; the request inside the tunnel inherits it.
    assert [r.get("user.name") for r in inside if r["url.scheme"] == "https"] == ["alice"]
    assert proxy.metric("auditproxy_auth_validations_total", scheme="negotiate", outcome="ok") >= 2
    # The credential never goes further than the proxy.
    assert all("proxy-authorization" not in r.headers for r in stack.upstream.requests)
    assert "Negotiate" not in proxy.access_log.read_text()


def test_the_principal_belongs_to_the_connection(stack: Stack) -> None:
    """Chromium sends a token once per connection; curl every time. A second connection
    from the same address gets no principal from the first."""
    bob = stack.sso.person("bob")
    proxy = stack.proxy
    client = ProxyClient("127.0.0.1", proxy.port)
    with client.session() as session:
        first = session.get(
            "http://www.linkedin.com/1",
            headers={"Proxy-Authorization": stack.sso.token_header(bob)},
        )
        again = session.get("http://www.linkedin.com/2")  # same connection, no credential
    other = client.get("http://www.linkedin.com/3")  # a new connection, same address
    assert (first.status, again.status, other.status) == (200, 200, 407)
    records = records_for(proxy, "www.linkedin.com", 3)
    assert [r["user.name"] for r in records] == ["bob", "bob", "127.0.0.1"]


def test_without_a_ticket_the_challenge_is_answered_then_the_address_is_used(
    stack: Stack,
) -> None:
    """A client that cannot get a ticket (not domain-joined, the KDC unreachable) answers
    the 407 without one: on that connection it goes on as its address (on_failure)."""
    proxy = stack.proxy
    client = ProxyClient("127.0.0.1", proxy.port)
    with client.session() as session:
        challenged = session.get("http://www.youtube.com/")
        retried = session.get("http://www.youtube.com/")
    assert challenged.status == 407
    assert challenged.headers.get_all("Proxy-Authenticate") == ["Negotiate"]  # no Basic
    assert b"Kerberos" in challenged.body and challenged.headers.get("Connection") != "close"
    assert retried.status == 200
    records = records_for(proxy, "www.youtube.com", 2)
    assert records[1]["labels.auth_failure"] == "no_credential"
    assert records[1]["labels.identity_source"] == "address"
    assert proxy.metric("auditproxy_auth_fallbacks_total", reason="no_credential") >= 1


@pytest.mark.parametrize(
    ("credential", "outcome"),
    [
        ("Negotiate bm90IGEgdG9rZW4=", "bad_token"),
        ("Negotiate !!!", "bad_token"),
        ("NTLM TlRMTVNTUAABAAAAB4IIog==", "not_kerberos"),
        ("Basic YWxpY2U6cHc=", "not_offered"),
    ],
)
def test_a_bad_credential_falls_back_to_the_address_at_once(
    stack: Stack, credential: str, outcome: str
) -> None:
    proxy = stack.proxy
    domain = f"bad-{outcome}-{len(credential)}.example.org"
    started = time.monotonic()
    answer = ProxyClient("127.0.0.1", proxy.port).get(
        f"http://{domain}/", headers={"Proxy-Authorization": credential}
    )
    assert answer.status == 200 and time.monotonic() - started < 2
    (record,) = records_for(proxy, domain)
    assert record["labels.auth_failure"] == outcome and record["user.name"] == "127.0.0.1"
    assert proxy.metric("auditproxy_auth_fallbacks_total", reason=outcome) >= 1


def test_a_replayed_token_is_refused(stack: Stack) -> None:
    """A token captured on the LAN and sent again (on another connection) is a replay."""
    carol = stack.sso.person("carol")
    proxy = stack.proxy
    token = stack.sso.token_header(carol)
    client = ProxyClient("127.0.0.1", proxy.port)
    for path in ("first", "replayed"):
        assert (
            client.get(
                f"http://replay.example.org/{path}", headers={"Proxy-Authorization": token}
            ).status
            == 200
        )
    first, replayed = records_for(proxy, "replay.example.org", 2)
    assert first["user.name"] == "carol"
    assert replayed["user.name"] == "127.0.0.1" and replayed["labels.auth_failure"] == "replay"
    assert proxy.metric("auditproxy_auth_validations_total", scheme="negotiate", outcome="replay")


def test_an_expired_ticket_is_refused(stack: Stack) -> None:
    dave = stack.sso.person("dave", lifetime="2s", maxlife="2s")
    token = stack.sso.token_header(dave)  # made while the ticket is valid
    time.sleep(2 + CLOCKSKEW + 1.5)  # past its end and the realm's clock-skew allowance
    proxy = stack.proxy
    answer = ProxyClient("127.0.0.1", proxy.port).get(
        "http://expired.example.org/", headers={"Proxy-Authorization": token}
    )
    assert answer.status == 200
    (record,) = records_for(proxy, "expired.example.org")
    assert record["labels.auth_failure"] == "expired", record


def test_a_kdc_that_is_down_never_holds_a_page_up(stack: Stack) -> None:
    """Tickets are checked with the keytab, not the KDC: people who hold a ticket for the
    proxy go on as themselves; people who need a new one cannot get it, answer the 407
    without one, and go on as their address (on_failure: address), at once."""
    erin, frank = stack.sso.person("erin"), stack.sso.person("frank")
    proxy = stack.proxy
    warm = stack.sso.curl(erin, proxy.port, "http://kdc-down.example.org/warm")
    assert statuses(warm.stdout) == [200], warm.stderr  # erin now holds HTTP/proxy...
    stack.sso.kdc.stop()
    try:
        started = time.monotonic()
        held = stack.sso.curl(erin, proxy.port, "http://kdc-down.example.org/erin")
        fresh = stack.sso.curl(
            frank, proxy.port, "http://kdc-down.example.org/frank", auth="--proxy-anyauth"
        )
        elapsed = time.monotonic() - started
    finally:
        stack.sso.kdc.start_again()
    assert statuses(held.stdout) == [200], held.stderr
    assert "Cannot contact any KDC" in fresh.stderr or statuses(fresh.stdout) == [200]
    assert statuses(fresh.stdout) == [200], fresh.stderr
    assert elapsed < 10
    records = records_for(proxy, "kdc-down.example.org", 4)
    served = {r["url.path"]: r for r in records if r["http.response.status_code"] == 200}
    assert served["/erin"]["user.name"] == "erin"
    assert served["/frank"]["user.name"] == "127.0.0.1"
    assert served["/frank"]["labels.auth_failure"] == "no_credential"


def test_refuse_policy_challenges_again_and_basic_only_behind_its_switch(stack: Stack) -> None:
    policy = sso_policy(stack.dir, methods="negotiate, basic", on_failure="refuse", name="r.yaml")
    with stack.proxy_started(
        "refusing", policy, "--set", "auditproxy_basic_auth=grace:gr4ce-pw"
    ) as proxy:
        client = ProxyClient("127.0.0.1", proxy.port)
        with client.session() as session:
            asked = session.get("http://refuse.example.org/")
            again = session.get("http://refuse.example.org/")
        bad = client.get(
            "http://refuse.example.org/bad", headers={"Proxy-Authorization": "Negotiate AAAA"}
        )
        assert (asked.status, again.status, bad.status) == (407, 407, 407)
        assert asked.headers.get_all("Proxy-Authenticate") == [
            "Negotiate",
            f'Basic realm="{"Test Policy"}", charset="UTF-8"',
        ]
        grace = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("grace", "gr4ce-pw"))
        wrong = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("grace", "nope"))
        assert grace.get("http://refuse.example.org/grace").status == 200
        assert wrong.get("http://refuse.example.org/wrong").status == 407
        records = records_for(proxy, "refuse.example.org", 5)
        assert [r["user.name"] for r in records if r["http.response.status_code"] == 200] == [
            "grace"
        ]
        assert proxy.metric("auditproxy_auth_challenges_total", reason="invalid") == 1
        assert "gr4ce" not in proxy.access_log.read_text()


def test_mitmproxy_proxyauth_and_the_policy_auth_cannot_both_answer(stack: Stack) -> None:
    workdir = stack.dir / "both"
    workdir.mkdir()
    proxy = AuditProxyProcess(
        workdir,
        [*stack.sso.proxy_args(), "--set", "proxyauth=any"],
        policy=sso_policy(stack.dir, name="both.yaml"),
        upstream_mode=stack.upstream.proxy_mode,
        env=stack.sso.proxy_env,
        start=False,
    )
    with pytest.raises(AssertionError, match="proxyauth"):
        proxy.start(timeout=20)
