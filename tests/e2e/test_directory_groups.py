"""Directory groups choose the policy a person gets, through the real `auditproxy run` and
a real OpenLDAP (slapd) with nested groups (support.ldap):

    alice  in comms (direct), staff and everyone (nested)   -> policy group `posters`
    bob    in staff (direct), everyone (nested, two levels)  -> policy group `all-staff`
    dave   in no group                                       -> the policy itself

`posters` (comms) post for the department all day: social media is `log` for them, no
daily reminder. `all-staff` (everyone) get their own wording, once a day for all sites.
People are named by a trusted front proxy's header here (Kerberos + groups: the last test).
The directory's faults (down, paused: it accepts connections and never answers) give "no
groups" within the look-up deadline, counted; pages keep flowing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import CertAuthority, ProxyClient, Upstream
from support.kerberos import KerberosRealm
from support.ldap import BASE, READER, READER_PASSWORD, LdapServer
from support.notice import DOCUMENT
from support.paths import POLICIES
from support.proxy import AuditProxyProcess
from support.servers import require_module, require_programs
from support.sso import SsoRealm, sso_policy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HEADER = "X-Authenticated-User"
BANNER = b'id="auditproxy-notice"'
STAFF_HEADING = "All-staff reminder"
TEXTS = """{{heading: "{heading}", disclaimer: "Your own views.", monitoring: "Monitored.",
        policy_name: Test Policy, link_text: Read, acknowledge: OK, dismiss: Hide}}"""
GROUPS = f"""
groups:
  - name: posters
    directory_group: comms
    categories: {{social: log}}
  - name: all-staff
    directory_group: everyone
    notice:
      scope: all
      texts:
        en: {TEXTS.format(heading=STAFF_HEADING)}
        fr: {TEXTS.format(heading="Rappel au personnel")}
"""


def group_policy(directory: Path) -> Path:
    text = (POLICIES / "small.yaml").read_text(encoding="utf-8")
    text = text.replace("trusted_proxies: [10.9.9.9/32]", "trusted_proxies: [127.0.0.1/32]")
    path = directory / "groups.yaml"
    path.write_text(text + GROUPS, encoding="utf-8")
    return path


@dataclass
class Stack:
    ldap: LdapServer
    upstream: Upstream
    dir: Path
    upstream_ca: Path

    def directory_args(self, timeout: str = "1", ttl: str = "300") -> list[str]:
        password = self.dir / "reader.password"
        if not password.exists():
            password.write_text(READER_PASSWORD + "\n")
            password.chmod(0o600)
        settings = {
            "auditproxy_directory": self.ldap.url,
            "auditproxy_directory_base": BASE,
            "auditproxy_directory_bind": READER,
            "auditproxy_directory_password_file": str(password),
            "auditproxy_directory_timeout": timeout,
            "auditproxy_directory_cache_ttl": ttl,
        }
        return [arg for name, value in settings.items() for arg in ("--set", f"{name}={value}")]

    def proxy(self, name: str, *args: str, policy: Path | None = None, **kw) -> AuditProxyProcess:
        workdir = self.dir / name
        workdir.mkdir()
        return AuditProxyProcess(
            workdir,
            [*self.directory_args(), *args],
            policy=policy or group_policy(self.dir),
            upstream_mode=self.upstream.proxy_mode,
            upstream_ca=self.upstream_ca,
            **kw,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[Stack]:
    require_programs({"slapd": "slapd", "slapadd": "slapd"})
    workdir = tmp_path_factory.mktemp("groups")
    (workdir / "slapd").mkdir()
    upstream_ca = test_ca.write_ca(workdir, "upstream-ca.pem")
    with LdapServer(workdir / "slapd") as ldap, Upstream(test_ca) as upstream:
        yield Stack(ldap, upstream, workdir, upstream_ca)


@pytest.fixture(scope="module")
def proxy(stack: Stack) -> Iterator[AuditProxyProcess]:
    with stack.proxy("proxy") as running:
        yield running


def page(proxy: AuditProxyProcess, who: str, url: str) -> tuple[int, bool, str]:
    """A person's top-level page: (status, whether it has the notice, the page)."""
    answer = ProxyClient("127.0.0.1", proxy.port, timeout=15).get(
        url, headers={**DOCUMENT, HEADER: who}
    )
    body = answer.decoded()
    return answer.status, BANNER in body, body.decode("utf-8", "replace")


def record(proxy: AuditProxyProcess, who: str, path: str) -> dict:
    (found,) = proxy.wait_for_records(
        1, lambda r: r.get("user.name") == who and r.get("url.path") == path
    )
    return found


def test_a_group_changes_the_action_and_turns_the_notice_off(proxy: AuditProxyProcess) -> None:
    status, banner, _ = page(proxy, "alice", "http://www.facebook.com/alice")
    assert (status, banner) == (200, False)
    found = record(proxy, "alice", "/alice")
    assert found["labels.action"] == "log" and found["user.group.name"] == "posters"
    assert (
        proxy.metric(
            "auditproxy_group_requests_total", group="posters", category="social", action="log"
        )
        == 1
    )


def test_a_nested_group_gets_its_own_wording_and_scope(proxy: AuditProxyProcess) -> None:
    status, banner, body = page(proxy, "bob", "http://www.facebook.com/bob")
    assert (status, banner) == (200, True) and STAFF_HEADING in body
    found = record(proxy, "bob", "/bob")
    assert found["labels.action"] == "monitor" and found["user.group.name"] == "all-staff"
    # Scope `all`: one notice a day for every monitored site together.
    assert page(proxy, "bob", "http://x.com/bob-2")[1] is False


def test_someone_in_no_group_gets_the_policy_itself(proxy: AuditProxyProcess) -> None:
    status, banner, body = page(proxy, "dave", "http://www.facebook.com/dave")
    assert (status, banner) == (200, True) and STAFF_HEADING not in body
    found = record(proxy, "dave", "/dave")
    assert "user.group.name" not in found and found["labels.action"] == "monitor"
    # A directory group the policy does not name is never logged.
    log = proxy.access_log.read_text()
    assert '"staff"' not in log and "loop-a" not in log


def test_groups_are_cached(proxy: AuditProxyProcess) -> None:
    for n in range(3):
        assert page(proxy, "alice", f"http://www.linkedin.com/cached-{n}")[0] == 200
    assert proxy.metric("auditproxy_directory_lookups_total", reason="ok", source="cache") >= 2


@pytest.mark.parametrize("fault", ["down", "paused"])
def test_a_directory_that_is_down_or_hangs_means_no_groups_within_the_deadline(
    stack: Stack, fault: str
) -> None:
    with stack.proxy(f"fault-{fault}", "--set", "auditproxy_directory_cache_ttl=2") as proxy:
        if fault == "down":
            stack.ldap.stop()
        else:
            stack.ldap.pause()
        try:
            started = time.monotonic()
            first = page(proxy, "alice", "http://www.facebook.com/fault")
            elapsed = time.monotonic() - started
            second = page(proxy, "bob", "http://www.facebook.com/fault")
            second_elapsed = time.monotonic() - started - elapsed
        finally:
            if fault == "down":
                stack.ldap.start()
            else:
                stack.ldap.resume()
        # The page flows: alice gets the policy's own treatment (monitored, the notice).
        assert first[:2] == (200, True) and second[0] == 200
        assert elapsed < 4  # the 1 s look-up deadline, plus the page itself
        assert second_elapsed < 1.5  # the outage is remembered: no second wait
        reason = "server_down" if fault == "down" else "timeout"
        assert proxy.metric("auditproxy_directory_lookups_total", reason=reason, source="directory")
        assert "user.group.name" not in record(proxy, "alice", "/fault")
        # Back: after the short failure memory, groups apply again.
        time.sleep(2.5)
        assert page(proxy, "alice", "http://www.facebook.com/back")[:2] == (200, False)
        assert record(proxy, "alice", "/back")["user.group.name"] == "posters"


def test_a_kerberos_principal_gets_its_directory_groups(stack: Stack) -> None:
    require_programs({"krb5kdc": "krb5-kdc", "kadmin.local": "krb5-admin-server", "curl": "curl"})
    require_module("gssapi", "the kerberos extra: pip install 'auditproxy[kerberos]'")
    (stack.dir / "realm").mkdir()
    with KerberosRealm(stack.dir / "realm") as kdc:
        sso = SsoRealm(kdc)
        alice = sso.person("alice")
        policy = sso_policy(stack.dir, extra=GROUPS, name="sso-groups.yaml")
        with stack.proxy("sso", *sso.proxy_args(), policy=policy, env=sso.proxy_env) as proxy:
            path = f"/sso-{uuid.uuid4().hex[:6]}"
            done = sso.curl(alice, proxy.port, f"http://www.facebook.com{path}")
            assert done.returncode == 0, done.stderr
            found = record(proxy, "alice", path)
    assert found["labels.auth_scheme"] == "negotiate"
    assert found["user.group.name"] == "posters" and found["labels.action"] == "log"
