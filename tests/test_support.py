"""Self-tests of the end-to-end test infrastructure in ``tests/support``.

The first part drives the upstream server directly with the proxy client (the upstream is a
forward proxy itself, so the client can use it as one). The second part puts a real
``mitmdump`` in upstream mode between them and proves what the product's end-to-end tests
rely on: plain HTTP and decrypted HTTPS reach the upstream with the right host and path, and a
TLS connection that mitmproxy ignores (passthrough) is still forwarded with ``CONNECT`` to the
upstream proxy, so the client sees the upstream's test-CA certificate.
"""

from __future__ import annotations

import gzip
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from support import (
    CertAuthority,
    Headers,
    ProxyClient,
    Reply,
    Request,
    Upstream,
    cert_fingerprint,
    decode_body,
    free_port,
    wait_for_http,
    wait_for_port,
)
from support.client import ProtocolError, StaleConnection

MB = 1024 * 1024


@pytest.fixture
def direct(upstream: Upstream, tmp_path: Path) -> ProxyClient:
    """A client that uses the upstream itself as its proxy, trusting the test CA."""
    return ProxyClient("127.0.0.1", upstream.port, ca_file=str(upstream.ca.write_ca(tmp_path)))


def _common_name(name: x509.Name) -> str:
    return str(name.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _raw_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes to a loopback port and read until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


# Certificates.


def test_leaf_certificates_are_signed_by_the_ca_and_cached(test_ca: CertAuthority) -> None:
    leaf = test_ca.leaf("WWW.Example.org.")
    assert leaf is test_ca.leaf("www.example.org")
    leaf.cert.verify_directly_issued_by(test_ca.cert)
    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.example.org"]
    ip_san = test_ca.leaf("10.1.2.3").cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert [str(ip) for ip in ip_san.value.get_values_for_type(x509.IPAddress)] == ["10.1.2.3"]


def test_ca_file_and_fingerprints(test_ca: CertAuthority, tmp_path: Path) -> None:
    path = test_ca.write_ca(tmp_path)
    pem = path.read_text()
    assert "PRIVATE KEY" not in pem
    assert cert_fingerprint(pem) == cert_fingerprint(test_ca.cert_der) == test_ca.fingerprint
    assert len(test_ca.fingerprint) == 64


# The upstream over plain HTTP.


def test_absolute_form_request_gets_the_default_page_and_is_recorded(
    upstream: Upstream, direct: ProxyClient
) -> None:
    response = direct.get("http://www.facebook.com/x?y=1", headers={"X-Test": "1"})
    assert response.status == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.body == (
        b"<html><head><title>www.facebook.com</title></head>"
        b"<body><h1>www.facebook.com /x?y=1</h1></body></html>"
    )
    [seen] = upstream.wait_for(1)
    assert (seen.method, seen.scheme, seen.host, seen.port) == (
        "GET",
        "http",
        "www.facebook.com",
        80,
    )
    assert (seen.path, seen.path_only, seen.query) == ("/x?y=1", "/x", "y=1")
    assert seen.target == "http://www.facebook.com/x?y=1"
    assert ("X-Test", "1") in seen.headers.items()
    assert not seen.tls and not seen.via_connect and seen.sni is None


def test_origin_form_request_uses_the_host_header(upstream: Upstream) -> None:
    raw = _raw_exchange(
        upstream.port, b"GET /p?q HTTP/1.1\r\nHost: Example.org:8080\r\nConnection: close\r\n\r\n"
    )
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"<h1>Example.org /p?q</h1>" in raw
    [seen] = upstream.requests
    assert (seen.host, seen.port, seen.path, seen.url) == (
        "Example.org",
        8080,
        "/p?q",
        "http://Example.org:8080/p?q",
    )


def test_routes_by_host_path_prefix_and_handler(upstream: Upstream, direct: ProxyClient) -> None:
    upstream.route("*", "/a", Reply(201, b"any host"))
    upstream.route("Site.Example.", "/a", Reply(202, b"this host"))
    upstream.route("*", "/a?special", Reply(203, b"with query", Headers({"X-Route": "q"})))
    upstream.route("*", "/api/", Reply(204), prefix=True)
    upstream.route(
        "*", "/api/v2/", lambda r: Reply(200, f"{r.method} {r.path}".encode()), prefix=True
    )
    assert direct.get("http://other.example/a").status == 201
    assert direct.get("http://site.example:80/a").status == 202
    assert direct.get("http://other.example/a?special").headers["x-route"] == "q"
    assert direct.get("http://other.example/a?other").status == 201
    assert direct.get("http://x.example/api/v1/things").status == 204
    assert direct.get("http://x.example/api/v2/x?1", method="DELETE").body == b"DELETE /api/v2/x?1"
    upstream.clear_routes()
    assert direct.get("http://other.example/a").status == 200


def test_a_failing_handler_gives_500_and_an_error(upstream: Upstream, direct: ProxyClient) -> None:
    def broken(request: Request) -> Reply:
        raise RuntimeError("boom")

    upstream.route("*", "/broken", broken)
    response = direct.get("http://h.example/broken")
    assert response.status == 500
    assert any("boom" in error for error in upstream.errors)


def test_chunked_head_and_bodyless_replies(upstream: Upstream, direct: ProxyClient) -> None:
    upstream.route("*", "/chunked", Reply(200, b"x" * 100_000, chunked=True))
    upstream.route("*", "/gen", Reply(200, lambda: [b"one,", b"two"]))
    upstream.route("*", "/empty", Reply(204))
    chunked = direct.get("http://h.example/chunked")
    assert chunked.chunked and chunked.body == b"x" * 100_000
    assert "content-length" not in chunked.headers
    generated = direct.get("http://h.example/gen")
    assert generated.chunked and generated.body == b"one,two"
    head = direct.get("http://h.example/page", method="HEAD")
    assert head.body == b"" and int(head.headers["content-length"]) > 0
    empty = direct.get("http://h.example/empty")
    assert empty.status == 204 and empty.body == b"" and "content-length" not in empty.headers


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd", "deflate"])
def test_encoded_bodies_are_sent_raw_and_decoded_on_request(
    upstream: Upstream, direct: ProxyClient, coding: str
) -> None:
    page = b"<html><body>" + b"compress me " * 1000 + b"</body></html>"
    upstream.route("*", "/enc", Reply.html(page).encoded(coding))
    response = direct.get("http://h.example/enc")
    assert response.headers["content-encoding"] == coding
    assert response.body != page and len(response.body) < len(page)
    assert response.decoded() == page
    assert decode_body(gzip.compress(b"abc"), "gzip") == b"abc"


def test_request_bodies_are_counted_and_kept(upstream: Upstream, direct: ProxyClient) -> None:
    direct.get("http://h.example/post", method="POST", body=b"a=1&b=2")
    raw = _raw_exchange(
        upstream.port,
        b"POST http://h.example/chunked HTTP/1.1\r\nHost: h.example\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"5\r\nhello\r\n6; ext=1\r\n world\r\n0\r\n\r\n",
    )
    assert raw.startswith(b"HTTP/1.1 200")
    posted, chunked = upstream.wait_for(2)
    assert (posted.body, posted.body_length) == (b"a=1&b=2", 7)
    assert (chunked.body, chunked.body_length) == (b"hello world", 11)


def test_keep_alive_session_reuses_one_connection(upstream: Upstream, direct: ProxyClient) -> None:
    with direct.session() as session:
        for index in range(50):
            assert session.get(f"http://host{index % 3}.example/{index}").status == 200
        for index in range(20):
            assert session.get(f"https://secure{index % 2}.example/{index}").status == 200
        assert session.connections_opened == 3
    seen = upstream.wait_for(70)
    assert len({r.connection_id for r in seen}) == 3
    assert len(upstream.tunnels) == 2


def test_large_bodies_stream_without_buffering(upstream: Upstream, direct: ProxyClient) -> None:
    upstream.route("*", "/big", Reply.stream(64 * MB))
    upstream.route("*", "/big-chunked", Reply.stream(8 * MB + 1, chunked=True))
    started = time.monotonic()
    response = direct.get("http://h.example/big", discard_body=True, timeout=30)
    assert response.body_length == 64 * MB and response.body == b""
    assert response.headers["content-length"] == str(64 * MB)
    chunked = direct.get("http://h.example/big-chunked", discard_body=True)
    assert chunked.chunked and chunked.body_length == 8 * MB + 1
    assert time.monotonic() - started < 10


# The upstream as a TLS-terminating CONNECT proxy.


def test_https_via_connect_presents_the_test_ca_leaf(
    upstream: Upstream, direct: ProxyClient, test_ca: CertAuthority
) -> None:
    response = direct.get("https://www.facebook.com/secure?a=b")
    assert response.status == 200
    assert b"<h1>www.facebook.com /secure?a=b</h1>" in response.body
    assert response.peer_fingerprint == test_ca.leaf("www.facebook.com").fingerprint
    assert response.peer_cert is not None
    assert response.peer_cert.issuer == test_ca.cert.subject
    assert response.alpn == "http/1.1"
    [seen] = upstream.wait_for(1)
    assert (seen.scheme, seen.host, seen.port, seen.path) == (
        "https",
        "www.facebook.com",
        443,
        "/secure?a=b",
    )
    assert seen.tls and seen.via_connect and seen.sni == "www.facebook.com"
    assert seen.connect_authority == "www.facebook.com:443"
    [tunnel] = upstream.tunnels
    assert (tunnel.host, tunnel.port, tunnel.tls, tunnel.error) == (
        "www.facebook.com",
        443,
        True,
        None,
    )


def test_https_to_an_ip_address_uses_the_connect_host_without_sni(
    upstream: Upstream, direct: ProxyClient, test_ca: CertAuthority
) -> None:
    response = direct.get("https://10.9.8.7:8443/")
    assert response.peer_fingerprint == test_ca.leaf("10.9.8.7").fingerprint
    [seen] = upstream.requests
    assert seen.sni is None and (seen.host, seen.port) == ("10.9.8.7", 8443)


def test_a_client_that_distrusts_the_test_ca_fails_and_the_tunnel_records_why(
    upstream: Upstream, tmp_path: Path
) -> None:
    distrusting = ProxyClient("127.0.0.1", upstream.port)  # system CAs only
    with pytest.raises(ssl.SSLCertVerificationError):
        distrusting.get("https://bank.example/")
    [tunnel] = upstream.wait_for_tunnels(1)
    assert tunnel.sni == "bank.example" and tunnel.error
    unverified = ProxyClient("127.0.0.1", upstream.port, verify=False).get("https://bank.example/")
    assert unverified.status == 200 and unverified.peer_cert_der
    with CertAuthority("another CA") as other:
        both = [other.write_ca(tmp_path, "other.pem"), upstream.ca.write_ca(tmp_path)]
        assert (
            ProxyClient("127.0.0.1", upstream.port, both).get("https://bank.example/").status == 200
        )


def test_an_sni_name_no_certificate_can_carry_gets_the_connect_hosts_leaf(
    upstream: Upstream, test_ca: CertAuthority
) -> None:
    with socket.create_connection(("127.0.0.1", upstream.port), timeout=5) as sock:
        sock.sendall(b"CONNECT www.example.org:443 HTTP/1.1\r\nHost: www.example.org:443\r\n\r\n")
        answer = b""
        while not answer.endswith(b"\r\n\r\n"):
            answer += sock.recv(1)
        assert answer.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cadata=test_ca.cert_pem.decode("ascii"))
        context.check_hostname = False  # the chain is still verified against the test CA
        with context.wrap_socket(sock, server_hostname="under_score.example") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der and cert_fingerprint(der) == test_ca.leaf("www.example.org").fingerprint
    [tunnel] = upstream.wait_for_tunnels(1)
    assert tunnel.sni == "under_score.example" and tunnel.error is None


def test_connect_helper_returns_the_proxy_answer(upstream: Upstream) -> None:
    answer = ProxyClient("127.0.0.1", upstream.port).connect("example.org", 443)
    assert answer.status == 200 and answer.from_connect


# Misbehaving routes, limits and shutdown.


def test_slow_hanging_and_resetting_routes(upstream: Upstream, direct: ProxyClient) -> None:
    upstream.route("*", "/slow", Reply.html("late").slowly(0.3))
    upstream.route("*", "/hang", Reply.hang(0.3))
    upstream.route("*", "/reset", Reply.reset())
    started = time.monotonic()
    assert direct.get("http://h.example/slow").body == b"late"
    assert time.monotonic() - started >= 0.3
    with pytest.raises(StaleConnection):
        direct.get("http://h.example/hang")
    with pytest.raises(ConnectionResetError):
        direct.get("http://h.example/reset")


def test_delays_are_capped(test_ca: CertAuthority, tmp_path: Path) -> None:
    with Upstream(test_ca, max_delay=0.2) as server:
        server.route("*", "/forever", Reply.hang(3600))
        started = time.monotonic()
        with pytest.raises(StaleConnection):
            ProxyClient("127.0.0.1", server.port).get("http://h.example/forever")
        assert time.monotonic() - started < 2


def test_close_is_prompt_even_with_hanging_connections(test_ca: CertAuthority) -> None:
    server = Upstream(test_ca).start()
    server.route("*", "/hang", Reply.hang(30))
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ProxyClient("127.0.0.1", server.port).get("http://h.example/hang", timeout=20)
        except (OSError, ProtocolError) as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    server.wait_for(5)
    idle = socket.create_connection(("127.0.0.1", server.port))  # says nothing at all
    deadline = time.monotonic() + 5
    while server.connections_accepted < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    server.close()
    for thread in threads:
        thread.join(5)
    assert time.monotonic() - started < 3
    assert len(errors) == 5
    assert idle.recv(1) == b""
    idle.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1)


def test_connections_beyond_the_limit_are_refused(test_ca: CertAuthority) -> None:
    with Upstream(test_ca, max_connections=2) as server:
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(2)]
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as extra:
                assert extra.recv(1) == b""
            assert server.connections_rejected == 1
        finally:
            for sock in held:
                sock.close()


def test_wait_for_times_out_with_a_summary(upstream: Upstream, direct: ProxyClient) -> None:
    direct.get("http://seen.example/one")
    assert upstream.wait_for(1, predicate=lambda r: r.host == "seen.example")
    with pytest.raises(TimeoutError, match=r"GET http://seen.example/one"):
        upstream.wait_for(2, timeout=0.2)
    assert upstream.find(host="SEEN.example", path="/one", method="GET")
    upstream.clear()
    assert upstream.requests == [] and upstream.tunnels == []


def test_slow_client_sends_one_byte_at_a_time(upstream: Upstream) -> None:
    client = ProxyClient("127.0.0.1", upstream.port)
    result = client.slow_request("http://h.example/slow-client", delay=0.5, max_duration=1.0)
    assert result.response is not None and result.response.status == 200
    assert result.bytes_sent == result.bytes_total and result.error is None
    assert 0.5 < result.elapsed < 5


def test_ports(upstream: Upstream) -> None:
    port = free_port()
    with pytest.raises(TimeoutError, match=str(port)):
        wait_for_port("127.0.0.1", port, timeout=0.2)
    wait_for_port("127.0.0.1", upstream.port, timeout=1)
    assert wait_for_http(f"{upstream.url}/healthz", timeout=2) == 200
    upstream.route("*", "/missing", Reply(404))
    assert wait_for_http(f"{upstream.url}/missing", timeout=2, status=None) == 404
    with pytest.raises(TimeoutError, match="status 404"):
        wait_for_http(f"{upstream.url}/missing", timeout=0.2)


# A real mitmdump in upstream mode between the client and the upstream.

IGNORE_ALL_TLS = textwrap.dedent(
    """
    from mitmproxy import tls


    def tls_clienthello(data: tls.ClientHelloData) -> None:
        data.ignore_connection = True
    """
)


def _mitmdump() -> str:
    found = shutil.which("mitmdump", path=str(Path(sys.executable).parent)) or shutil.which(
        "mitmdump"
    )
    if found is None:
        pytest.fail("mitmdump not found next to the Python interpreter or on PATH")
    return found


class MitmDump:
    """A ``mitmdump`` child process on a free loopback port, always stopped on exit."""

    def __init__(self, args: list[str], confdir: Path) -> None:
        self.port = free_port()
        self.confdir = confdir
        self.log = confdir / "mitmdump.log"
        command = [_mitmdump(), "--listen-host", "127.0.0.1", "--listen-port", str(self.port)]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, "--set", f"confdir={confdir}", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # so that stop() can signal mitmdump and its children
            )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=20)
        except TimeoutError:
            self.stop()
            raise AssertionError(f"mitmdump did not start:\n{self.log.read_text()}") from None

    @property
    def ca_file(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


@pytest.fixture(scope="module")
def e2e_upstream() -> Iterator[Upstream]:
    with CertAuthority() as ca, Upstream(ca) as server:
        yield server


@pytest.fixture(scope="module")
def start_mitmdump(
    e2e_upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., MitmDump]]:
    started: list[MitmDump] = []
    trusted_ca = e2e_upstream.ca.write_ca(tmp_path_factory.mktemp("upstream-ca"))

    def start(*extra: str) -> MitmDump:
        confdir = tmp_path_factory.mktemp("mitmproxy")
        args = [
            "--mode",
            e2e_upstream.proxy_mode,
            "--set",
            f"ssl_verify_upstream_trusted_ca={trusted_ca}",
            "-q",
            *extra,
        ]
        proxy = MitmDump(args, confdir)
        started.append(proxy)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            proxy.stop()


@pytest.fixture(scope="module")
def decrypting_proxy(start_mitmdump: Callable[..., MitmDump]) -> MitmDump:
    return start_mitmdump()


@pytest.fixture(scope="module")
def passthrough_proxy(
    start_mitmdump: Callable[..., MitmDump], tmp_path_factory: pytest.TempPathFactory
) -> MitmDump:
    script = tmp_path_factory.mktemp("scripts") / "ignore_all_tls.py"
    script.write_text(IGNORE_ALL_TLS)
    return start_mitmdump("-s", str(script), "--set", "proxyauth=alice:secret")


@pytest.fixture
def fresh_upstream(e2e_upstream: Upstream) -> Upstream:
    e2e_upstream.clear()
    e2e_upstream.clear_routes()
    return e2e_upstream


@pytest.mark.e2e
def test_mitmdump_forwards_plain_http_to_the_upstream(
    decrypting_proxy: MitmDump, fresh_upstream: Upstream
) -> None:
    client = ProxyClient("127.0.0.1", decrypting_proxy.port)
    response = client.get("http://www.facebook.com/x?y=1")
    assert response.status == 200
    assert b"<title>www.facebook.com</title>" in response.body
    [seen] = fresh_upstream.wait_for(1)
    assert (seen.scheme, seen.host, seen.port, seen.path) == (
        "http",
        "www.facebook.com",
        80,
        "/x?y=1",
    )
    assert seen.target == "http://www.facebook.com/x?y=1"  # absolute-form, as to a proxy
    assert not seen.via_connect


@pytest.mark.e2e
def test_mitmdump_decrypts_https_and_reaches_the_upstream_over_tls(
    decrypting_proxy: MitmDump, fresh_upstream: Upstream
) -> None:
    client = ProxyClient("127.0.0.1", decrypting_proxy.port, ca_file=decrypting_proxy.ca_file)
    response = client.get("https://www.facebook.com/")
    assert response.status == 200
    assert b"<h1>www.facebook.com /</h1>" in response.body
    assert response.peer_cert is not None
    assert _common_name(response.peer_cert.issuer) == "mitmproxy"
    assert response.peer_fingerprint != fresh_upstream.ca.leaf("www.facebook.com").fingerprint
    [tunnel] = fresh_upstream.wait_for_tunnels(1)
    assert (tunnel.host, tunnel.port, tunnel.sni, tunnel.error) == (
        "www.facebook.com",
        443,
        "www.facebook.com",
        None,
    )
    [seen] = fresh_upstream.wait_for(1)
    assert seen.tls and seen.via_connect and (seen.host, seen.path) == ("www.facebook.com", "/")


@pytest.mark.e2e
def test_mitmdump_keep_alive_streaming_and_encodings(
    decrypting_proxy: MitmDump, fresh_upstream: Upstream
) -> None:
    page = b"<html><body>" + b"hello " * 500 + b"</body></html>"
    fresh_upstream.route("*", "/br", Reply.html(page).encoded("br"))
    fresh_upstream.route("*", "/big", Reply.stream(16 * MB, chunked=True))
    client = ProxyClient("127.0.0.1", decrypting_proxy.port, ca_file=decrypting_proxy.ca_file)
    with client.session() as session:
        for index in range(30):
            assert session.get(f"https://www.facebook.com/{index}").status == 200
        encoded = session.get("https://www.facebook.com/br")
        big = session.get("https://www.facebook.com/big", discard_body=True, timeout=30)
        assert session.connections_opened == 1
    assert encoded.headers["content-encoding"] == "br" and encoded.decoded() == page
    assert big.body_length == 16 * MB


@pytest.mark.e2e
def test_mitmdump_forwards_ignored_tls_by_connect_to_the_upstream(
    passthrough_proxy: MitmDump, fresh_upstream: Upstream
) -> None:
    trusted = fresh_upstream.ca.write_ca(passthrough_proxy.confdir)
    client = ProxyClient(
        "127.0.0.1", passthrough_proxy.port, ca_file=str(trusted), proxy_auth=("alice", "secret")
    )
    response = client.get("https://www.facebook.com/passthrough")
    assert response.status == 200
    assert response.peer_fingerprint == fresh_upstream.ca.leaf("www.facebook.com").fingerprint
    [tunnel] = fresh_upstream.wait_for_tunnels(1)
    assert (tunnel.host, tunnel.port, tunnel.sni) == ("www.facebook.com", 443, "www.facebook.com")
    [seen] = fresh_upstream.wait_for(1)
    assert seen.tls and seen.path == "/passthrough"
    # Proof that mitmproxy did not decrypt: a client trusting only mitmproxy's CA fails.
    mitm_trusting = ProxyClient(
        "127.0.0.1", passthrough_proxy.port, passthrough_proxy.ca_file, ("alice", "secret")
    )
    with pytest.raises(ssl.SSLCertVerificationError):
        mitm_trusting.get("https://www.facebook.com/")
    rejected = fresh_upstream.wait_for_tunnels(2)[1]
    assert rejected.error and "unknown ca" in rejected.error.lower()


@pytest.mark.e2e
def test_refused_connect_returns_the_proxy_answer(
    passthrough_proxy: MitmDump, fresh_upstream: Upstream
) -> None:
    client = ProxyClient("127.0.0.1", passthrough_proxy.port)
    refused = client.connect("www.facebook.com", 443)
    assert refused.status == 407 and refused.from_connect
    assert refused.headers.get("proxy-authenticate", "").startswith("Basic")
    assert client.get("https://www.facebook.com/").status == 407
    assert client.get("http://www.facebook.com/").status == 407
    assert fresh_upstream.requests == [] and fresh_upstream.tunnels == []
