"""A throw-away OpenLDAP server for tests (Debian `slapd`; `slapadd` comes with it): a real
`slapd` on a free 127.0.0.1 port with a generated slapd.conf and an mdb database in a
temporary folder, loaded with people, nested groups and a read-only bind account.

The directory (``dc=example,dc=test``)::

    people: alice, bob, carol, dave (in no group), "star*" (a name to test escaping)
    comms       <- alice                 (direct)
    staff       <- comms, bob            (alice through comms)
    everyone    <- staff                 (alice and bob, two levels up)
    loop-a <-> loop-b, loop-b <- carol   (a cycle)
    chain-1 <- chain-2 <- ... <- chain-8 <- dave-in-chain   (depth)

With a certificate (``tls``), it also offers StartTLS, and LDAPS on a second port.
``pause``/``resume`` send SIGSTOP/SIGCONT to slapd: it accepts connections (the kernel
does) and never answers. slapd runs under ``timeout``, so a test run that dies cannot leave
it running for longer than ``lifetime`` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from .certs import Leaf
from .ports import free_port, wait_for_port
from .servers import SBIN, require_programs

BASE = "dc=example,dc=test"
PEOPLE = f"ou=people,{BASE}"
GROUPS = f"ou=groups,{BASE}"
READER = f"cn=proxy-reader,ou=service,{BASE}"
READER_PASSWORD = "reader-password"
PROGRAMS = {"slapd": "slapd", "slapadd": "slapd"}
USERS = ("alice", "bob", "carol", "dave", "dave-in-chain", "star*")
CHAIN = 8


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


def _entries() -> str:
    groups = {
        "comms": [user_dn("alice")],
        "staff": [group_dn("comms"), user_dn("bob")],
        "everyone": [group_dn("staff")],
        "loop-a": [group_dn("loop-b")],
        "loop-b": [group_dn("loop-a"), user_dn("carol")],
        **{f"chain-{i}": [group_dn(f"chain-{i + 1}")] for i in range(1, CHAIN)},
        f"chain-{CHAIN}": [user_dn("dave-in-chain")],
    }
    parts = [
        f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example",
        *(
            f"dn: ou={ou},{BASE}\nobjectClass: organizationalUnit\nou: {ou}"
            for ou in ("people", "groups", "service")
        ),
        f"dn: {READER}\nobjectClass: applicationProcess\nobjectClass: simpleSecurityObject\n"
        f"cn: proxy-reader\nuserPassword: {READER_PASSWORD}",
    ]
    for uid in USERS:
        parts.append(
            f"dn: {user_dn(uid)}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {uid}\nsn: {uid}"
        )
    for cn, members in groups.items():
        lines = [f"dn: {group_dn(cn)}", "objectClass: groupOfNames", f"cn: {cn}"]
        parts.append("\n".join(lines + [f"member: {m}" for m in members]))
    return "\n\n".join(parts) + "\n"


class LdapServer:
    """``slapd`` on 127.0.0.1:``port`` serving ``dc=example,dc=test``; ``start`` skips (or
    fails under CI) without the programs. Use as a context manager or call ``stop``."""

    def __init__(self, workdir: Path, lifetime: float = 600, tls: Leaf | None = None) -> None:
        self.dir = workdir
        self.lifetime = lifetime
        self.tls = tls  # a certificate for 127.0.0.1: StartTLS, and ldaps on ``tls_port``
        self.port = free_port()
        self.tls_port = free_port()
        self.conf = workdir / "slapd.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    def __enter__(self) -> LdapServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LdapServer:
        require_programs(PROGRAMS)
        env = {**os.environ, "PATH": f"{os.environ.get('PATH', '')}:{SBIN}"}
        if not self.conf.exists():
            self._write_config()
            (self.dir / "data.ldif").write_text(_entries())
            subprocess.run(
                ["slapadd", "-f", str(self.conf), "-l", str(self.dir / "data.ldif")],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
        command = ["timeout", "--kill-after=5", str(int(self.lifetime))]
        urls = f"{self.url}/" + (f" {self.ldaps_url}/" if self.tls else "")
        command += ["slapd", "-d", "0", "-f", str(self.conf), "-h", urls]
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=(self.dir / "slapd.log").open("ab"),
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            self.stop()
            log = (self.dir / "slapd.log").read_text(errors="replace")
            raise AssertionError(f"slapd did not start:\n{log[-2000:]}") from None
        return self

    def _slapd_pid(self) -> int:
        return int((self.dir / "slapd.pid").read_text().strip())

    def pause(self) -> None:
        os.kill(self._slapd_pid(), signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        os.kill(self._slapd_pid(), signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        """Stop slapd (``start`` again restarts it on the same port with the same data)."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.paused:
            self.resume()
        os.killpg(process.pid, signal.SIGTERM)  # timeout and slapd
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def _write_config(self) -> None:
        d = self.dir
        (d / "db").mkdir(exist_ok=True)
        schemas = "".join(
            f"include /etc/ldap/schema/{name}.schema\n"
            for name in ("core", "cosine", "inetorgperson", "nis")
        )
        tls = ""
        if self.tls is not None:
            cert, key = d / "slapd.crt", d / "slapd.key"
            cert.write_bytes(self.tls.cert_pem)
            key.write_bytes(self.tls.key_pem)
            key.chmod(0o600)
            tls = f"TLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
        self.conf.write_text(
            f"""{schemas}{tls}modulepath /usr/lib/ldap
moduleload back_mdb
pidfile {d / "slapd.pid"}
argsfile {d / "slapd.args"}
database mdb
maxsize 10485760
suffix "{BASE}"
rootdn "cn=admin,{BASE}"
rootpw admin-password
directory {d / "db"}
access to attrs=userPassword
    by anonymous auth
    by * none
access to *
    by dn.exact="{READER}" read
    by * none
"""
        )
