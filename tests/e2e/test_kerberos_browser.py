"""Single sign-on as a person sees it: Debian's headless Chromium, holding a Kerberos ticket
(KRB5CCNAME, as a domain login leaves it), browses through `auditproxy run` over http://
and https:// and never sees a prompt: the proxy's 407 is answered with the ticket, the
HTTPS tunnel's CONNECT carries it, and every record names the person.

What a managed desktop has, and these tests give Chromium:
- a regular profile: in off-the-record ones (Playwright's `new_context`) Chromium allows
  no ambient authentication at all (support.browser.ProfileChromium);
- the proxy named by a host name whose principal is in the keytab: Chromium asks for
  `HTTP/<the name, canonicalised by DNS>`. Its host resolver rules would canonicalise
  `proxy.example.test` to `127.0.0.1` (the `--disable-auth-negotiate-cname-lookup` switch is
  a policy only), so the browser's proxy is `localhost` (`HTTP/localhost`), which resolves
  and canonicalises as itself; in a department, an A record (deploy/kerberos/README.md);
- `--auth-server-allowlist` naming the proxy (AuthServerAllowlist), no delegation.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import CertAuthority, Upstream
from support.browser import ProfileChromium, make_proxy_ca, unavailable
from support.kerberos import KerberosRealm
from support.proxy import AuditProxyProcess
from support.servers import require_module, require_programs
from support.sso import Person, SsoRealm, sso_policy

_MISSING = unavailable()

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(180),
    pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING)),
]

BROWSER_HOST = "localhost"
BROWSER_SERVICE = f"HTTP/{BROWSER_HOST}"


@dataclass
class Desk:
    sso: SsoRealm
    proxy: AuditProxyProcess
    upstream: Upstream
    ca_file: Path
    alice: Person
    dir: Path

    def chromium(self, name: str, ccache: Path) -> ProfileChromium:
        return ProfileChromium(
            self.dir / name,
            self.ca_file,
            f"http://{BROWSER_HOST}:{self.proxy.port}",
            args=(f"--auth-server-allowlist={BROWSER_HOST}",),
            env={"KRB5_CONFIG": str(self.sso.kdc.krb5_conf), "KRB5CCNAME": f"FILE:{ccache}"},
        )


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[Desk]:
    require_programs({"krb5kdc": "krb5-kdc", "kadmin.local": "krb5-admin-server"})
    require_module("gssapi", "the kerberos extra: pip install 'auditproxy[kerberos]'")
    workdir = tmp_path_factory.mktemp("sso-browser")
    (workdir / "realm").mkdir()
    (workdir / "proxy").mkdir()
    upstream_ca = test_ca.write_ca(workdir, "upstream-ca.pem")
    ca_file = make_proxy_ca(workdir / "proxy" / "conf")  # the CA the browsers trust
    with KerberosRealm(workdir / "realm") as kdc, Upstream(test_ca) as upstream:
        sso = SsoRealm(kdc)
        kdc.add_principal(BROWSER_SERVICE)
        keytab = kdc.keytab(workdir / "browser.keytab", BROWSER_SERVICE)
        alice = sso.person("alice")
        args = [
            "--set",
            f"auditproxy_keytab={keytab}",
            "--set",
            f"auditproxy_service_principal={BROWSER_SERVICE}",
        ]
        with AuditProxyProcess(
            workdir / "proxy",
            args,
            policy=sso_policy(workdir),
            upstream_mode=upstream.proxy_mode,
            upstream_ca=upstream_ca,
            env=sso.proxy_env,
        ) as proxy:
            yield Desk(sso, proxy, upstream, ca_file, alice, workdir)


def test_chromium_signs_in_without_a_prompt_over_http_and_https(desk: Desk) -> None:
    proxy = desk.proxy
    with desk.chromium("alice", desk.alice.ccache) as chromium:
        page = chromium.page()
        prompts: list[str] = []
        page.on("dialog", lambda dialog: prompts.append(dialog.message))
        plain = page.goto("http://intranet-news.test/today")
        assert plain is not None and plain.status == 200
        secure = page.goto("https://www.facebook.com/")
        assert secure is not None and secure.status == 200
        assert page.locator("#auditproxy-notice").count() >= 1  # her first visit today
    assert prompts == []
    records = proxy.wait_for_records(
        2,
        lambda r: (
            r.get("http.response.status_code") == 200
            and r.get("url.domain") in ("intranet-news.test", "www.facebook.com")
        ),
    )
    by_domain = {r["url.domain"]: r for r in records}
    assert by_domain["intranet-news.test"]["user.name"] == "alice"
    assert by_domain["www.facebook.com"]["user.name"] == "alice"
    assert by_domain["www.facebook.com"]["url.scheme"] == "https"  # inside the tunnel
    assert {r["labels.auth_scheme"] for r in by_domain.values()} == {"negotiate"}
    assert proxy.metric("auditproxy_auth_validations_total", scheme="negotiate", outcome="ok") >= 2
    assert all("proxy-authorization" not in r.headers for r in desk.upstream.requests)


def test_chromium_without_a_ticket_goes_on_as_its_address(desk: Desk) -> None:
    """A machine off the domain (or one that cannot reach the KDC) has no ticket: no
    password prompt (Basic is off), no wait. Chromium answers the 407 by asking again
    without a credential on the same connection; the policy's on_failure: address lets it
    through as its address, counted and recorded."""
    with desk.chromium("stranger", desk.dir / "no-ticket") as chromium:
        page = chromium.page()
        prompts: list[str] = []
        page.on("dialog", lambda dialog: prompts.append(dialog.message))
        answer = page.goto("http://intranet-news.test/stranger")
        assert answer is not None and answer.status == 200
    assert prompts == []
    records = desk.proxy.wait_for_records(2, lambda r: r.get("url.path") == "/stranger")
    assert [r["http.response.status_code"] for r in records] == [407, 200]
    assert {r["user.name"] for r in records} == {"127.0.0.1"}
    assert records[1]["labels.auth_failure"] == "no_credential"
