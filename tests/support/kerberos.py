"""A throw-away MIT Kerberos realm for tests (Debian `krb5-kdc`, `krb5-admin-server`,
`krb5-user`): a real `krb5kdc` on a free 127.0.0.1 port, its database, keytabs and ccaches,
all in one temporary folder.

The realm's `krb5.conf` is what clients and the acceptor read (``realm.env`` for children,
``monkeypatch.setenv("KRB5_CONFIG", ...)`` in the test process). It forces TCP, turns off
every DNS look-up, and sets a short ``clockskew`` so that the expiry and skew tests wait
seconds, not MIT's default five minutes. The KDC runs under ``timeout``: a test run that
dies cannot leave it running for longer than ``lifetime`` seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from .ports import free_port, wait_for_port
from .servers import require_programs

if TYPE_CHECKING:
    import gssapi

REALM = "EXAMPLE.TEST"
SERVICE_HOST = "proxy.example.test"
SERVICE = f"HTTP/{SERVICE_HOST}"
PROGRAMS = {
    "krb5kdc": "krb5-kdc",
    "kdb5_util": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
}
SPNEGO_OID = "1.3.6.1.5.5.2"
KRB5_OID = "1.2.840.113554.1.2.2"
# Seconds of clock difference the acceptor tolerates (MIT's default is 300).
CLOCKSKEW = 2


class KerberosRealm:
    """`EXAMPLE.TEST` with a KDC on 127.0.0.1; ``start`` skips (or fails under CI) when the
    programs are missing. Use as a context manager or call ``stop``."""

    def __init__(self, workdir: Path, realm: str = REALM, lifetime: float = 600) -> None:
        self.dir = workdir
        self.realm = realm
        self.lifetime = lifetime
        self.port = free_port()
        self.krb5_conf = workdir / "krb5.conf"
        self.kdc_conf = workdir / "kdc.conf"
        self.log = workdir / "kdc.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The environment for Kerberos programs and the in-process GSSAPI library."""
        return {
            **os.environ,
            "KRB5_CONFIG": str(self.krb5_conf),
            "KRB5_KDC_PROFILE": str(self.kdc_conf),
            "KRB5CCNAME": f"FILE:{self.dir / 'default.ccache'}",
            "KRB5_KTNAME": f"FILE:{self.dir / 'default.keytab'}",
            "KRB5RCACHEDIR": str(self.dir),
        }

    def __enter__(self) -> KerberosRealm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> KerberosRealm:
        require_programs(PROGRAMS)
        self._write_config()
        self._run("kdb5_util", "create", "-s", "-r", self.realm, "-P", "master-password")
        return self.start_again()

    def start_again(self) -> KerberosRealm:
        """Start the KDC (again, after ``stop``) on the same port with the same database."""
        command = ["timeout", "--kill-after=5", str(int(self.lifetime))]
        command += [_which("krb5kdc"), "-n", "-r", self.realm]
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(f"krb5kdc did not start:\n{log[-2000:]}") from None
        return self

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def kadmin(self, query: str) -> str:
        """Run one kadmin.local query against the database (no kadmind needed)."""
        return self._run("kadmin.local", "-r", self.realm, "-q", query)

    def add_principal(self, name: str, password: str | None = None, **limits: str) -> str:
        """Add ``name`` (a random key without ``password``); ``maxlife="5s"`` and the like
        become kadmin options. Returns the full principal name."""
        options = " ".join(f"-{key} {value}" for key, value in limits.items())
        key = f"-pw {password}" if password is not None else "-randkey"
        self.kadmin(f"addprinc {options} {key} {name}")
        return f"{name}@{self.realm}"

    def keytab(self, path: Path, *principals: str) -> Path:
        """Add the principals' current keys to the keytab at ``path`` (new kvno each call)."""
        for principal in principals:
            self.kadmin(f"ktadd -k {path} {principal}")
        path.chmod(0o600)
        return path

    def kinit(self, principal: str, password: str, ccache: Path, lifetime: str = "1h") -> Path:
        """Get a TGT for ``principal`` into a private ccache file; returns its path."""
        subprocess.run(
            [_which("kinit"), "-l", lifetime, "-c", f"FILE:{ccache}", principal],
            input=f"{password}\n".encode(),
            env=self.env,
            check=True,
            capture_output=True,
            timeout=20,
        )
        return ccache

    def client_env(self, ccache: Path) -> dict[str, str]:
        """The environment for a client program (curl) that uses ``ccache``."""
        return {**self.env, "KRB5CCNAME": f"FILE:{ccache}"}

    def _run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            [_which(program), *args], env=self.env, capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0 or " while " in done.stderr:
            raise AssertionError(f"{program} {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def _write_config(self) -> None:
        d = self.dir
        self.kdc_conf.write_text(
            f"""[kdcdefaults]
[realms]
    {self.realm} = {{
        database_name = {d / "principal"}
        key_stash_file = {d / "stash"}
        acl_file = {d / "kadm5.acl"}
        kdc_listen = 127.0.0.1:{self.port}
        kdc_tcp_listen = 127.0.0.1:{self.port}
        master_key_type = aes256-cts-hmac-sha1-96
        supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal
        max_life = 10h
        max_renewable_life = 0
    }}
[logging]
    kdc = FILE:{self.log}
    admin_server = FILE:{d / "kadmin.log"}
"""
        )
        self.krb5_conf.write_text(
            f"""[libdefaults]
    default_realm = {self.realm}
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    udp_preference_limit = 1
    clockskew = {CLOCKSKEW}
    forwardable = false
[realms]
    {self.realm} = {{
        kdc = 127.0.0.1:{self.port}
    }}
[domain_realm]
    .example.test = {self.realm}
    example.test = {self.realm}
"""
        )


def _which(program: str) -> str:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        raise AssertionError(f"{program} not found")
    return found


def initiate(
    ccache: Path, host: str = SERVICE_HOST, *, spnego: bool = True
) -> tuple[bytes, gssapi.SecurityContext]:
    """A client's first token for ``HTTP@host`` from ``ccache`` (SPNEGO, as browsers and
    curl send it, or bare Kerberos), and the client's context to check the mutual answer."""
    import gssapi

    mech = gssapi.OID.from_int_seq(SPNEGO_OID if spnego else KRB5_OID)
    creds = gssapi.Credentials(usage="initiate", store={b"ccache": f"FILE:{ccache}".encode()})
    context = gssapi.SecurityContext(
        name=gssapi.Name(f"HTTP@{host}", gssapi.NameType.hostbased_service),
        creds=creds,
        usage="initiate",
        mech=mech,
        flags=gssapi.RequirementFlag.mutual_authentication,
    )
    token = context.step()
    assert token is not None
    return token, context
