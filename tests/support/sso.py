"""Kerberos single sign-on end to end: a throw-away realm (support.kerberos) whose service
principal is the proxy's, a policy that asks for Negotiate, and clients with tickets: curl
(`--proxy-negotiate -U :`) and tokens made in the test process (for replays and damage).

The proxy is named `proxy.example.test` (its principal's host) and resolved to 127.0.0.1
without DNS (curl's `--resolve`, Chromium's host resolver rules): a client asks for a ticket
to `HTTP/<the name it was given>`, never to an address.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .kerberos import REALM, SERVICE, SERVICE_HOST, KerberosRealm, initiate
from .paths import POLICIES

AUTH_SECTION = """
auth:
  methods: [{methods}]
  on_failure: {on_failure}
  realm: {realm}
"""
PROXY_ENV = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "no_proxy")


def sso_policy(
    directory: Path,
    *,
    methods: str = "negotiate",
    on_failure: str = "address",
    extra: str = "",
    name: str = "policy.yaml",
) -> Path:
    """The small test policy (names logged in clear) asking for proxy authentication."""
    text = (POLICIES / "small.yaml").read_text(encoding="utf-8")
    text += AUTH_SECTION.format(methods=methods, on_failure=on_failure, realm=REALM) + extra
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Person:
    principal: str
    password: str
    ccache: Path


class SsoRealm:
    """The realm, the proxy's keytab, and people with tickets."""

    def __init__(self, kdc: KerberosRealm) -> None:
        self.kdc = kdc
        self.dir = kdc.dir
        kdc.add_principal(SERVICE)
        self.keytab = kdc.keytab(kdc.dir / "http.keytab", SERVICE)

    def person(self, name: str, lifetime: str = "1h", **limits: str) -> Person:
        password = f"{name}-password"
        principal = self.kdc.add_principal(name, password, **limits)
        ccache = self.kdc.kinit(principal, password, self.dir / f"{name}.ccache", lifetime)
        return Person(principal, password, ccache)

    def proxy_args(self) -> list[str]:
        return [
            "--set",
            f"auditproxy_keytab={self.keytab}",
            "--set",
            f"auditproxy_service_principal={SERVICE}",
            "--set",
            "auditproxy_auth_timeout=2",
        ]

    @property
    def proxy_env(self) -> dict[str, str]:
        """For the proxy process: the realm's krb5.conf (its clock-skew allowance)."""
        return {"KRB5_CONFIG": str(self.kdc.krb5_conf), "KRB5RCACHEDIR": str(self.dir)}

    def token_header(self, person: Person) -> str:
        """A fresh `Negotiate` credential for the proxy, made in the test process."""
        token, _ = initiate(person.ccache, SERVICE_HOST)
        return "Negotiate " + base64.b64encode(token).decode("ascii")

    def curl(
        self,
        person: Person | None,
        proxy_port: int,
        *urls: str,
        ca_file: Path | None = None,
        auth: str = "--proxy-negotiate",
        extra: tuple[str, ...] = (),
        timeout: float = 30,
    ) -> subprocess.CompletedProcess[str]:
        """curl through the proxy (named by its FQDN) with the person's tickets; prints
        `STATUS` lines (`-w`) after each body."""
        env = {k: v for k, v in os.environ.items() if k not in PROXY_ENV}
        env.update(self.kdc.env)
        env["KRB5CCNAME"] = f"FILE:{person.ccache}" if person else f"FILE:{self.dir}/none"
        address = f"{SERVICE_HOST}:{proxy_port}"
        command = ["curl", "-sS", "--max-time", "20", auth, "-U", ":", *extra]
        command += ["-x", f"http://{address}", "--resolve", f"{address}:127.0.0.1"]
        if ca_file is not None:
            command += ["--cacert", str(ca_file)]
        command += ["-w", "\\nSTATUS %{http_code}\\n", *urls]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )


def statuses(output: str) -> list[int]:
    return [int(line.split()[1]) for line in output.splitlines() if line.startswith("STATUS ")]
