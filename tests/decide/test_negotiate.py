"""Kerberos single sign-on against a real MIT KDC (Debian krb5-kdc, krb5-admin-server,
krb5-user), real tickets and a real keytab, all in a throw-away realm on 127.0.0.1.

What needs no server (header parsing, the 407's values, error typing) runs everywhere;
the rest skips locally without the programs and fails under CI (support.servers). The
realm's clock skew allowance is 2 s (support.kerberos), so expiry and skew take seconds.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

gssapi = pytest.importorskip("gssapi", reason="pip install 'auditproxy[kerberos]'")

from auditproxy.decide.negotiate import (  # noqa: E402
    Acceptor,
    Outcome,
    Result,
    challenge,
    classify_error,
    decode,
    scheme_of,
)
from support.kerberos import CLOCKSKEW, REALM, SERVICE, KerberosRealm, initiate  # noqa: E402
from support.servers import require_programs  # noqa: E402

ALICE = f"alice@{REALM}"


def header(token: bytes) -> str:
    return "Negotiate " + base64.b64encode(token).decode()


def der(tag: int, body: bytes) -> bytes:
    """One DER element (short and long lengths), for hand-made SPNEGO tokens."""
    if len(body) < 0x80:
        return bytes([tag, len(body)]) + body
    size = len(body).to_bytes((len(body).bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


SPNEGO = bytes.fromhex("06062b0601050502")
NTLM_MECH = bytes.fromhex("060a2b0601040182370202 0a".replace(" ", ""))
NTLM_NEGOTIATE = b"NTLMSSP\x00\x01\x00\x00\x00\x07\x82\x08\xa2" + bytes(16)


def spnego_init(mechs: list[bytes], mech_token: bytes | None = None) -> bytes:
    """A NegTokenInit offering ``mechs`` (what a browser sends when it falls back to NTLM)."""
    body = der(0xA0, der(0x30, b"".join(mechs)))
    if mech_token is not None:
        body += der(0xA2, der(0x04, mech_token))
    return der(0x60, SPNEGO + der(0xA0, der(0x30, body)))


# --- without a server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        ("Negotiate", Outcome.BAD_TOKEN),
        ("Negotiate   ", Outcome.BAD_TOKEN),
        ("Negotiate not*base64!", Outcome.BAD_TOKEN),
        ("Negotiate " + "A" * 100_000, Outcome.BAD_TOKEN),
        ("Basic YWxpY2U6cHc=", Outcome.BAD_TOKEN),
        ("NTLM TlRMTVNTUAABAAAAB4IIog==", Outcome.NOT_KERBEROS),
        (header(NTLM_NEGOTIATE), Outcome.NOT_KERBEROS),
        (header(spnego_init([NTLM_MECH], NTLM_NEGOTIATE)), Outcome.NOT_KERBEROS),
    ],
)
def test_decode_refuses_what_is_not_a_kerberos_token(value: str, outcome: Outcome) -> None:
    result = decode(value)
    assert isinstance(result, Result)
    assert result.outcome is outcome
    assert "TlRM" not in result.detail


def test_decode_returns_the_token_of_any_scheme_spelling() -> None:
    assert decode("  negotiate  YGFiYw== ") == b"\x60abc"  # [APPLICATION 0] first
    # Anything else is no GSS-API initial token (MIT would say "unspecified failure").
    not_initial = decode("Negotiate YWJj")
    assert isinstance(not_initial, Result) and not_initial.outcome is Outcome.BAD_TOKEN
    assert scheme_of("NEGOTIATE YWJj") == "negotiate"
    assert scheme_of("Basic x") == "basic"


def test_challenge_lists_negotiate_first_and_basic_only_when_asked() -> None:
    assert challenge() == ["Negotiate"]
    assert challenge('Dept "proxy"') == [
        "Negotiate",
        'Basic realm="Dept \\"proxy\\"", charset="UTF-8"',
    ]


def test_result_helpers() -> None:
    ok = Result(Outcome.OK, principal=ALICE, output_token="oRQw")
    assert ok.ok and ok.user == "alice" and ok.mutual_header == "Negotiate oRQw"
    refused = Result(Outcome.REPLAY)
    assert not refused.ok and refused.user is None and refused.mutual_header is None


def gss_failure(message: str) -> Exception:
    """A GSS_S_FAILURE whose minor status reads ``message`` (as MIT's would)."""

    class Failure(gssapi.exceptions.GSSError):
        def __str__(self) -> str:
            return message

    return Failure(0xD0000, 0)


@pytest.mark.parametrize(
    ("message", "outcome"),
    [
        ("Minor (100005): Request is a replay", Outcome.REPLAY),
        ("Minor (100007): Clock skew too great", Outcome.CLOCK_SKEW),
        ("Minor (100003): Ticket expired", Outcome.EXPIRED),
        ("Minor (9): Cannot find key for HTTP/x@R kvno 4 in keytab", Outcome.WRONG_KEY),
        ("Minor (9): Decrypt integrity check failed", Outcome.WRONG_KEY),
        ("Minor (9): Token header is malformed or corrupt", Outcome.BAD_TOKEN),
        # A client-chosen name inside the message never decides the type.
        ("Minor (9): Cannot find key for HTTP/Request is a replay@R", Outcome.WRONG_KEY),
        ("Minor (9): something new\x00\x1b[31m", Outcome.ERROR),
    ],
)
def test_classify_error_types_mit_messages(message: str, outcome: Outcome) -> None:
    result = classify_error(gss_failure(message))
    assert result.outcome is outcome
    assert result.detail.isprintable()


# --- a real realm ----------------------------------------------------------------------


@dataclass
class Realm:
    kdc: KerberosRealm
    keytab: Path
    alice: Path  # alice's ccache
    dir: Path

    def acceptor(self, **options: object) -> Acceptor:
        options.setdefault("replay_cache", self.dir / "replay.rcache2")
        return Acceptor(self.keytab, SERVICE, **options)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Realm]:
    require_programs({"krb5kdc": "krb5-kdc", "kadmin.local": "krb5-admin-server"})
    workdir = tmp_path_factory.mktemp("realm")
    with KerberosRealm(workdir) as kdc, pytest.MonkeyPatch.context() as env:
        # The in-process GSSAPI library (acceptor and test clients) reads the realm's
        # krb5.conf; the default ccache and replay cache stay in the realm's folder.
        for name in ("KRB5_CONFIG", "KRB5CCNAME", "KRB5_KTNAME", "KRB5RCACHEDIR"):
            env.setenv(name, kdc.env[name])
        env.delenv("KRB5RCACHETYPE", raising=False)
        kdc.add_principal(SERVICE)
        kdc.add_principal("HTTP/other.example.test")
        kdc.add_principal("alice", "alice-password")
        keytab = kdc.keytab(workdir / "http.keytab", SERVICE)
        alice = kdc.kinit(ALICE, "alice-password", workdir / "alice.ccache")
        yield Realm(kdc, keytab, alice, workdir)


@pytest.mark.e2e
async def test_a_valid_ticket_gives_the_principal_and_a_mutual_token(realm: Realm) -> None:
    acceptor = realm.acceptor()
    token, client = initiate(realm.alice)
    result = await acceptor.authenticate(header(token))
    assert result.outcome is Outcome.OK, result.detail
    assert result.principal == ALICE and result.user == "alice"
    assert result.mutual_header and result.mutual_header.startswith("Negotiate ")
    # The client accepts our answer: mutual authentication completes.
    assert result.output_token is not None
    client.step(base64.b64decode(result.output_token))
    assert client.complete
    acceptor.close()


@pytest.mark.e2e
async def test_a_bare_kerberos_token_without_spnego_is_accepted(realm: Realm) -> None:
    acceptor = realm.acceptor()
    token, _ = initiate(realm.alice, spnego=False)
    result = await acceptor.authenticate(header(token))
    assert result.outcome is Outcome.OK and result.principal == ALICE
    acceptor.close()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "value",
    [
        header(os.urandom(300)),
        header(spnego_init([NTLM_MECH])),  # SPNEGO offering only NTLM, no token yet
        "Negotiate " + base64.b64encode(b"\x60\x03\x06\x01").decode(),
    ],
    ids=["random", "ntlm-only-mechlist", "truncated-der"],
)
async def test_garbage_is_refused_with_a_type(realm: Realm, value: str) -> None:
    acceptor = realm.acceptor()
    result = await acceptor.authenticate(value)
    assert result.outcome in (Outcome.BAD_TOKEN, Outcome.NOT_KERBEROS), result
    acceptor.close()


@pytest.mark.e2e
async def test_a_damaged_real_token_is_refused(realm: Realm) -> None:
    acceptor = realm.acceptor()
    token, _ = initiate(realm.alice)
    truncated = await acceptor.authenticate(header(token[: len(token) // 2]))
    assert truncated.outcome is Outcome.BAD_TOKEN, truncated
    token, _ = initiate(realm.alice)
    flipped = bytearray(token)
    flipped[len(token) // 2] ^= 0xFF
    tampered = await acceptor.authenticate(header(bytes(flipped)))
    assert tampered.outcome is Outcome.WRONG_KEY, tampered  # the ticket does not decrypt
    acceptor.close()


@pytest.mark.e2e
async def test_a_replayed_token_is_refused_even_by_a_new_acceptor(realm: Realm) -> None:
    token, _ = initiate(realm.alice)
    first, second = realm.acceptor(), realm.acceptor()
    assert (await first.authenticate(header(token))).ok
    again = await first.authenticate(header(token))
    assert again.outcome is Outcome.REPLAY, again
    # The replay cache is a file: a restarted proxy (a new acceptor) remembers.
    assert (await second.authenticate(header(token))).outcome is Outcome.REPLAY
    first.close()
    second.close()


@pytest.mark.e2e
async def test_the_named_replay_cache_survives_krb5rcachetype_none(
    realm: Realm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KRB5RCACHETYPE=none switches MIT's default cache off; the acceptor's own does not
    depend on it (and without one, the same replay is accepted: why we name it)."""
    monkeypatch.setenv("KRB5RCACHETYPE", "none")
    named = realm.acceptor(replay_cache=realm.dir / "named.rcache2")
    token, _ = initiate(realm.alice)
    assert (await named.authenticate(header(token))).ok
    assert (await named.authenticate(header(token))).outcome is Outcome.REPLAY
    default = realm.acceptor(replay_cache=None)
    token, _ = initiate(realm.alice)
    assert (await default.authenticate(header(token))).ok
    assert (await default.authenticate(header(token))).ok  # the replay gets through
    named.close()
    default.close()


@pytest.mark.e2e
async def test_an_expired_ticket_is_refused(realm: Realm) -> None:
    realm.kdc.add_principal("shortlived", "short-password")
    ccache = realm.kdc.kinit("shortlived", "short-password", realm.dir / "short", "2s")
    token, _ = initiate(ccache)  # still valid now
    time.sleep(2 + CLOCKSKEW + 1.5)  # past its end time and the skew allowance
    acceptor = realm.acceptor()
    result = await acceptor.authenticate(header(token))
    assert result.outcome is Outcome.EXPIRED, result
    acceptor.close()


@pytest.mark.e2e
async def test_a_token_older_than_the_clock_skew_is_refused(realm: Realm) -> None:
    """What a client whose clock is behind the proxy's looks like (the ticket is valid)."""
    token, _ = initiate(realm.alice)
    time.sleep(CLOCKSKEW + 1.5)
    acceptor = realm.acceptor()
    result = await acceptor.authenticate(header(token))
    assert result.outcome is Outcome.CLOCK_SKEW, result
    acceptor.close()


@pytest.mark.e2e
async def test_a_ticket_for_another_service_is_refused(realm: Realm) -> None:
    acceptor = realm.acceptor()
    token, _ = initiate(realm.alice, host="other.example.test")
    result = await acceptor.authenticate(header(token))
    assert result.outcome is Outcome.WRONG_KEY, result
    assert "other.example.test" in result.detail
    acceptor.close()


@pytest.mark.e2e
async def test_keytab_rotation_old_keytab_refuses_and_the_rotated_one_needs_no_restart(
    realm: Realm,
) -> None:
    service = "HTTP/rotate.example.test"
    realm.kdc.add_principal(service)
    keytab = realm.kdc.keytab(realm.dir / "rotate.keytab", service)
    old = realm.dir / "rotate-old.keytab"
    shutil.copy(keytab, old)
    running = Acceptor(keytab, service, replay_cache=realm.dir / "rotate.rcache2")
    stale = Acceptor(old, service, replay_cache=realm.dir / "rotate.rcache2")
    realm.kdc.kadmin(f"cpw -randkey {service}")  # new key, new key version
    realm.kdc.keytab(keytab, service)  # appended to the keytab in place
    ccache = realm.kdc.kinit(ALICE, "alice-password", realm.dir / "alice-rotate.ccache")
    token, _ = initiate(ccache, host="rotate.example.test")
    refused = await stale.authenticate(header(token))
    assert refused.outcome is Outcome.WRONG_KEY and "kvno" in refused.detail, refused
    token, _ = initiate(ccache, host="rotate.example.test")
    assert (await running.authenticate(header(token))).principal == ALICE
    running.close()
    stale.close()


@pytest.mark.e2e
def test_a_keytab_without_the_service_is_a_configuration_error(realm: Realm) -> None:
    with pytest.raises(ValueError, match=r"HTTP/other\.example\.test"):
        Acceptor(realm.keytab, "HTTP/other.example.test", replay_cache=None)
    with pytest.raises(ValueError, match="not found"):
        Acceptor(realm.dir / "missing.keytab", SERVICE, replay_cache=None)
    any_service = Acceptor(realm.keytab, None, replay_cache=None)
    any_service.close()


@pytest.mark.e2e
async def test_under_load_the_acceptor_answers_busy_at_once_and_stays_bounded(
    realm: Realm,
) -> None:
    acceptor = realm.acceptor(workers=1, queue=2, timeout=10)
    headers = [header(initiate(realm.alice)[0]) for _ in range(40)]
    started = time.monotonic()
    results = await asyncio.gather(*(acceptor.authenticate(h) for h in headers))
    outcomes = [r.outcome for r in results]
    assert set(outcomes) <= {Outcome.OK, Outcome.BUSY}, outcomes
    assert outcomes.count(Outcome.OK) >= 3  # one running, two queued
    assert outcomes.count(Outcome.BUSY) >= 30
    assert time.monotonic() - started < 5
    assert acceptor.pending == 0
    acceptor.close()


@pytest.mark.e2e
async def test_workers_validate_in_parallel_with_one_shared_credential(realm: Realm) -> None:
    acceptor = realm.acceptor(workers=4, queue=64)
    headers = [header(initiate(realm.alice)[0]) for _ in range(60)]
    results = await asyncio.gather(*(acceptor.authenticate(h) for h in headers))
    assert [r.principal for r in results] == [ALICE] * 60, {r.outcome for r in results}
    acceptor.close()


class SlowAcceptor(Acceptor):
    """A validation that hangs (a replay cache on a stuck file system, say)."""

    hold = 1.5

    def accept(self, token: bytes) -> Result:
        time.sleep(self.hold)
        return super().accept(token)


@pytest.mark.e2e
async def test_a_hanging_validation_times_out_and_keeps_its_slot_until_it_ends(
    realm: Realm,
) -> None:
    acceptor = SlowAcceptor(
        realm.keytab,
        SERVICE,
        replay_cache=realm.dir / "slow.rcache2",
        workers=1,
        queue=0,
        timeout=0.2,
    )
    started = time.monotonic()
    result = await acceptor.authenticate(header(initiate(realm.alice)[0]))
    assert result.outcome is Outcome.TIMEOUT
    assert time.monotonic() - started < 1.0
    # The worker is still stuck: the next one is refused at once, not queued.
    busy = await acceptor.authenticate(header(initiate(realm.alice)[0]))
    assert busy.outcome is Outcome.BUSY
    await asyncio.sleep(1.6)  # the stuck call ends and frees its slot
    assert acceptor.pending == 0
    acceptor.hold = 0
    assert (await acceptor.authenticate(header(initiate(realm.alice)[0]))).ok
    acceptor.close()


# --- real clients: curl through a stub proxy -------------------------------------------


@dataclass
class StubProxy:
    """A tiny forward proxy that asks for Negotiate and validates with the acceptor: the
    flow the real add-on will follow, per client connection. It answers every request
    itself (200 with the principal), and a CONNECT with 200 then closes."""

    realm: Realm
    acceptor: Acceptor
    port: int = 0
    seen: list[tuple[int, str, bool, str]] = field(default_factory=list)
    connections: int = 0

    async def curl(
        self, proxy_name: str, *urls: str, auth: str = "--proxy-negotiate"
    ) -> tuple[int, str, str]:
        """Run curl with alice's ticket through this proxy, named ``proxy_name``.
        ``--proxy-negotiate`` sends a token at once; ``--proxy-anyauth`` waits for the 407
        and picks a scheme from it, as browsers do."""
        env = self.realm.kdc.client_env(self.realm.alice)
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"):
            env.pop(name, None)
        command = ["curl", "-sS", "--max-time", "20", auth, "-U", ":"]
        # Resolved to 127.0.0.1 without DNS; the client asks for a ticket to HTTP/<name>.
        address = f"{proxy_name}:{self.port}"
        command += ["-x", f"http://{address}", "--resolve", f"{address}:127.0.0.1", *urls]
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 30)
        return process.returncode or 0, out.decode(), err.decode()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number, principal = self.connections, None
        try:
            while head := await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10):
                lines = head.decode("latin-1").split("\r\n")
                method = lines[0].split(" ")[0]
                fields = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
                credential = fields.get("Proxy-Authorization")
                outcome = "cached" if principal else "none"
                extra = ""
                if credential is not None:
                    result = await self.acceptor.authenticate(credential)
                    outcome = result.outcome.value
                    if result.ok:
                        principal = result.principal
                        extra = f"Proxy-Authenticate: {result.mutual_header}\r\n"
                self.seen.append((number, method, credential is not None, outcome))
                if principal is None:
                    challenge_lines = "".join(f"Proxy-Authenticate: {v}\r\n" for v in challenge())
                    writer.write(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        + challenge_lines.encode()
                        + b"Content-Length: 0\r\n\r\n"
                    )
                elif method == "CONNECT":
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await writer.drain()
                    break
                else:
                    body = f"hello {principal}\n".encode()
                    writer.write(
                        f"HTTP/1.1 200 OK\r\n{extra}Content-Length: {len(body)}\r\n\r\n".encode()
                        + body
                    )
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def stub_proxy(realm: Realm) -> AsyncIterator[StubProxy]:
    require_programs({"curl": "curl"})
    proxy = StubProxy(realm, realm.acceptor(replay_cache=realm.dir / "curl.rcache2"))
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    yield proxy
    server.close()
    await server.wait_closed()
    proxy.acceptor.close()


@pytest.mark.e2e
async def test_curl_proves_who_it_is_with_its_ticket(stub_proxy: StubProxy) -> None:
    proxy = stub_proxy
    code, out, err = await proxy.curl(
        "proxy.example.test", "http://example.test/", "http://example.test/2"
    )
    assert code == 0, err
    assert out == f"hello {ALICE}\n" * 2
    # curl sends a fresh token with every request (browsers: once per connection); each
    # is a new authenticator, so none is taken for a replay.
    assert proxy.seen == [(1, "GET", True, "ok"), (1, "GET", True, "ok")]


@pytest.mark.e2e
async def test_curl_answers_the_407_challenge_with_negotiate(stub_proxy: StubProxy) -> None:
    proxy = stub_proxy
    code, out, err = await proxy.curl(
        "proxy.example.test", "http://example.test/", auth="--proxy-anyauth"
    )
    assert code == 0, err
    assert out == f"hello {ALICE}\n"
    assert proxy.seen == [(1, "GET", False, "none"), (1, "GET", True, "ok")]


@pytest.mark.e2e
async def test_curl_sends_the_token_with_the_connect_for_https(stub_proxy: StubProxy) -> None:
    """Requests inside the tunnel carry no Proxy-Authorization: the CONNECT's principal
    is the connection's."""
    proxy = stub_proxy
    await proxy.curl("proxy.example.test", "https://example.test/", auth="--proxy-anyauth")
    assert proxy.seen == [(1, "CONNECT", False, "none"), (1, "CONNECT", True, "ok")]


@pytest.mark.e2e
async def test_a_proxy_named_by_its_address_gets_no_ticket(stub_proxy: StubProxy) -> None:
    """Why the PAC file must name the proxy's FQDN: for 127.0.0.1 the client asks for
    HTTP/127.0.0.1, which does not exist, and never sends a token."""
    proxy = stub_proxy
    _, out, _ = await proxy.curl("127.0.0.1", "http://example.test/", auth="--proxy-anyauth")
    assert "hello" not in out
    assert proxy.seen and all(not has_token for _, _, has_token, _ in proxy.seen)
