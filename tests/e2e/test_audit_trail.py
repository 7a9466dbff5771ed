"""Every connection accounted for, the true destination, destinations the proxy refuses,
an identity that cannot be borrowed: attacks an ordinary allowed user can run, against the
real `auditproxy run` in regular mode, with real servers on 127.0.0.0/8."""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wsproto
import wsproto.events

from support import CertAuthority, ProxyClient, Reply
from support.hostile import rss
from support.origins import (
    EchoServer,
    H2Sink,
    RecordingOrigin,
    WebSocketEcho,
    WebSocketFlood,
    read_until,
    tls_origin,
    tunnel,
)
from support.paths import POLICIES
from support.proxy import AuditProxyProcess
from support.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BLOCKED_IP = "127.0.0.9"  # a site in the small policy's `block` category (below)


def policy_with(tmp_path: Path, extra: str = "", *, allow_loopback: bool = True) -> Path:
    """The small test policy in regular mode: the test's servers on 127.0.0.0/8 allowed as
    destinations (unless `allow_loopback` is False), 127.0.0.9 a blocked site."""
    text = (POLICIES / "small.yaml").read_text()
    text = text.replace("bad: [malware.test]", f"bad: [malware.test, {BLOCKED_IP}]")
    if allow_loopback:
        text += "destinations:\n  allow: [127.0.0.0/8]\n"
    path = tmp_path / "policy.yaml"
    path.write_text(text + extra)
    return path


@pytest.fixture
def proxy_for(tmp_path: Path, test_ca: CertAuthority) -> Iterator[Callable[..., AuditProxyProcess]]:
    """A real `auditproxy run` in regular mode (it connects to origins itself)."""
    started: list[AuditProxyProcess] = []
    ca_file = test_ca.write_ca(tmp_path)

    def start(policy: Path, *args: str) -> AuditProxyProcess:
        workdir = tmp_path / f"proxy-{len(started)}"
        workdir.mkdir()
        trust = ["--set", f"ssl_verify_upstream_trusted_ca={ca_file}"]
        proxy = AuditProxyProcess(workdir, [*trust, *args], policy=policy)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def action(proxy: AuditProxyProcess, name: str, n: int = 1) -> list[dict]:
    return proxy.wait_for_records(n, lambda r: r["event.action"] == name)


def tcp_end(proxy: AuditProxyProcess) -> list[dict]:
    """The `tcp` records written when raw TCP connections ended (each also has a start)."""
    return proxy.wait_for_records(
        1, lambda r: r["event.action"] == "tcp" and "end" in r["event.type"]
    )


# --------------------------------------------------------------------------- raw tunnels


def test_raw_tcp_in_a_tunnel_gets_a_record_with_bytes_each_way(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with EchoServer() as echo:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{echo.port}")
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"\x00\x01raw bytes, not TLS" * 10)
        assert read_until(sock, lambda d: len(d) >= 200) == b"\x00\x01raw bytes, not TLS" * 10
        sock.close()
        (record,) = tcp_end(proxy)
    (start,) = [r for r in proxy.records() if "start" in r["event.type"]]
    assert start["event.action"] == "tcp" and start["destination.ip"] == "127.0.0.1"
    assert record["source.bytes"] == 200 and record["destination.bytes"] == 200
    assert (record["destination.ip"], record["destination.port"]) == ("127.0.0.1", echo.port)
    assert record["url.port"] == echo.port and record["event.duration"] > 0
    assert record["network.transport"] == "tcp" and record["event.outcome"] == "success"
    proxy.wait_for_metric("auditproxy_connections_total", 1, kind="tcp", outcome="success")


def test_an_ssh_like_banner_is_relayed_and_recorded(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with EchoServer(greeting=b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n") as ssh:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{ssh.port}")
        assert head.startswith(b"HTTP/1.1 200")
        sock.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
        data = read_until(sock, lambda d: d.count(b"\r\n") >= 2)
        assert data.startswith(b"SSH-2.0-OpenSSH_9.2p1")
        sock.close()
        (record,) = tcp_end(proxy)
    assert record["destination.bytes"] >= len(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n")


def test_raw_tcp_to_a_blocked_site_is_never_relayed(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with EchoServer(host=BLOCKED_IP) as blocked:
        sock, head = tunnel(proxy.port, f"{BLOCKED_IP}:{blocked.port}")
        assert head.startswith(b"HTTP/1.1 200")  # answered by the proxy: no connection
        sock.sendall(b"secret data for a blocked site")
        assert read_until(sock, lambda d: False) == b""  # closed, nothing echoed
        sock.close()
        (record,) = action(proxy, "blocked")
        assert blocked.accepted == 0, "the proxy connected to a blocked site"
    assert record["labels.category"] == "malware" and record["event.outcome"] == "failure"
    assert record["network.transport"] == "tcp"


def test_a_connect_to_a_closed_port_is_recorded(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    sock, head = tunnel(proxy.port, f"127.0.0.1:{closed}")
    sock.close()
    assert head.startswith(b"HTTP/1.1 502")
    (record,) = action(proxy, "connect-failed")
    assert record["url.port"] == closed and record["event.outcome"] == "failure"
    assert record["error.message"]


def test_a_client_that_rejects_the_proxy_certificate_is_recorded(proxy_for, tmp_path, test_ca):
    proxy = proxy_for(policy_with(tmp_path))
    with tls_origin(test_ca) as origin:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{origin.port}")  # SNI: facebook
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=test_ca.write_ca(tmp_path, "other.pem"))
        with pytest.raises(ssl.SSLError):  # trusts the test CA only, not the proxy's
            context.wrap_socket(sock, server_hostname="www.facebook.com").close()
        sock.close()
        (record,) = action(proxy, "tls-failed")
    assert record["event.reason"] == "certificate-rejected"
    assert record["labels.tls_side"] == "client" and record["labels.site"] == "facebook"
    labels = {"category": "social", "side": "client", "reason": "certificate-rejected"}
    proxy.wait_for_metric("auditproxy_tls_failures_total", 1, **labels)


def test_websocket_connections_are_counted_not_kept(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with WebSocketEcho() as server:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        target = f"http://127.0.0.1:{server.port}/chat"
        sock.sendall(
            ws.send(wsproto.events.Request(host=f"127.0.0.1:{server.port}", target=target))
        )
        events: list = []
        while not any(isinstance(e, wsproto.events.AcceptConnection) for e in events):
            ws.receive_data(sock.recv(65536))
            events += list(ws.events())
        for text in ("one", "two", "three"):
            sock.sendall(ws.send(wsproto.events.Message(data=text)))
        replies = 0
        while replies < 3:
            ws.receive_data(sock.recv(65536))
            replies += sum(isinstance(e, wsproto.events.Message) for e in ws.events())
        sock.sendall(ws.send(wsproto.events.CloseConnection(code=1000)))
        time.sleep(0.2)
        sock.close()
        (record,) = action(proxy, "websocket")
    assert record["labels.websocket_messages_client"] == "3"
    assert record["labels.websocket_messages_server"] == "3"
    assert record["source.bytes"] == len("onetwothree")
    assert record["destination.ip"] == "127.0.0.1"


@pytest.mark.parametrize("frame_bytes", [16384, 1], ids=["big-frames", "tiny-frames"])
def test_a_websocket_message_that_never_ends_is_closed_at_the_bound(
    proxy_for, tmp_path, frame_bytes
):
    """A site sends one WebSocket message that never ends. mitmproxy holds a message
    whole before relaying it: before, the proxy grew by hundreds of megabytes a second
    until it was killed, for everyone. Now the message is held up to the body bound
    (`stream_large_bodies`) or 4,096 fragments, then both sides get a close 1009 and the
    record says why; memory stays flat and everyone else is served."""
    proxy = proxy_for(policy_with(tmp_path), "--set", "stream_large_bodies=1m")
    before = rss(proxy.pid)
    with WebSocketFlood(frame_bytes, total_bytes=48 << 20) as site:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=20)
        ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        target = f"http://127.0.0.1:{site.port}/live"
        sock.sendall(ws.send(wsproto.events.Request(host=f"127.0.0.1:{site.port}", target=target)))
        codes: list[int] = []
        while not codes:
            data = sock.recv(65536)
            if not data:
                break
            ws.receive_data(data)
            codes += [e.code for e in ws.events() if isinstance(e, wsproto.events.CloseConnection)]
        sock.close()
        assert codes == [1009]
        assert site.sent < 48 << 20, "the proxy read the whole flood"
        with RecordingOrigin() as origin:  # everyone else is still served
            client = ProxyClient("127.0.0.1", proxy.port)
            assert client.get(f"http://127.0.0.1:{origin.port}/x").status == 200
        (record,) = action(proxy, "websocket")
    assert "message too big" in record["error.message"] and "server" in record["error.message"]
    assert record["event.outcome"] == "failure"
    assert rss(proxy.pid) - before < 64 << 20


def test_http2_uploads_a_server_never_reads_are_held_within_a_bound(proxy_for, tmp_path, test_ca):
    """One person's HTTP/2 connection: 40 uploads of 4 MB to a server that never reads
    them. mitmproxy acknowledges each DATA frame at once and keeps what the server cannot
    take; before, a few such connections took the proxy past 2 GB and it stopped answering
    anyone. Now the proxy stops reading from that connection while it holds 16 MiB for it
    (256 MiB for the person: `gate.Backlog`): its memory stays bounded, others are served."""
    import h2.config
    import h2.connection

    proxy = proxy_for(policy_with(tmp_path))
    before = rss(proxy.pid)
    with H2Sink(test_ca, "www.facebook.com") as sink:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{sink.port}")
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        context.set_alpn_protocols(["h2"])
        tls = context.wrap_socket(sock, server_hostname="www.facebook.com")
        assert tls.selected_alpn_protocol() == "h2"
        client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        client.initiate_connection()
        streams = []
        for n in range(40):
            stream = client.get_next_available_stream_id()
            client.send_headers(stream, [
                (":method", "POST"), (":scheme", "https"), (":path", f"/upload/{n}"),
                (":authority", "www.facebook.com"), ("content-length", "4000000"),
            ])  # fmt: skip
            streams.append(stream)
        tls.sendall(client.data_to_send())
        tls.settimeout(3)  # a send that waits this long: the proxy has stopped reading
        chunk, sent, deadline = b"x" * 16384, 0, time.monotonic() + 20
        stalled = False
        while sent < 150 << 20 and time.monotonic() < deadline and not stalled:
            for stream in streams:
                room = min(client.local_flow_control_window(stream), len(chunk))
                if room > 0:
                    client.send_data(stream, chunk[:room])
                    sent += room
            try:
                tls.sendall(client.data_to_send())
            except TimeoutError:
                stalled = True
            tls.setblocking(False)
            with contextlib.suppress(ssl.SSLWantReadError, BlockingIOError):
                client.receive_data(tls.recv(65536))  # the proxy's window updates
            tls.settimeout(3)
        grown = rss(proxy.pid) - before
        with RecordingOrigin() as origin:  # everyone else is still served
            other = ProxyClient("127.0.0.1", proxy.port, source_address="127.0.0.2")
            answer = other.get(f"http://127.0.0.1:{origin.port}/x")
            assert answer.status == 200
        tls.close()
    assert sink.streams >= 1  # the uploads did reach the server
    assert stalled, f"the proxy took all {sent >> 20} MiB"
    assert grown < 150 << 20, f"the proxy grew by {grown >> 20} MiB"


# --------------------------------------------------------------------------- destinations


def test_an_ip_literal_with_another_host_header_names_both(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with RecordingOrigin() as origin:
        client = ProxyClient("127.0.0.1", proxy.port)
        url = f"http://127.0.0.1:{origin.port}/x"
        assert client.get(url, {"Host": "intranet.example.test"}).status == 200
        (record,) = action(proxy, "access")
    assert record["url.domain"] == "intranet.example.test"
    assert record["destination.domain"] == "127.0.0.1"
    assert (record["destination.ip"], record["destination.port"]) == ("127.0.0.1", origin.port)
    assert record["labels.names_differ"] == "true"


def test_a_no_sni_tunnel_names_the_address_it_reached(proxy_for, tmp_path, test_ca):
    proxy = proxy_for(policy_with(tmp_path))
    with tls_origin(test_ca) as origin:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{origin.port}")
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(proxy.ca_file))
        context.check_hostname = False
        tls = context.wrap_socket(sock)  # no server_hostname: no SNI
        tls.sendall(b"GET /x HTTP/1.1\r\nHost: intranet.example.test\r\n\r\n")
        assert read_until(tls, lambda d: b"origin" in d).startswith(b"HTTP/1.1 200")
        tls.close()
        (record,) = action(proxy, "access")
    assert record["destination.ip"] == "127.0.0.1" and record["destination.port"] == origin.port
    assert record["url.domain"] == "intranet.example.test"
    assert "tls.client.server_name" not in record


def test_the_proxys_own_metrics_and_loopback_services_are_refused(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path, allow_loopback=False))
    client = ProxyClient("127.0.0.1", proxy.port)
    response = client.get(f"http://127.0.0.1:{proxy.metrics_port}/metrics")
    assert response.status == 403 and b"auditproxy_" not in response.body
    (record,) = action(proxy, "refused")
    assert record["labels.refusal"] == "destination-loopback"
    assert record["event.type"] == ["denied"]
    proxy.wait_for_metric("auditproxy_refusals_total", 1, reason="destination-loopback")


def test_a_real_redis_behind_the_proxy_is_out_of_reach(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path, allow_loopback=False))
    (tmp_path / "redis").mkdir()
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{redis.port}")
        assert head.startswith(b"HTTP/1.1 403")
        try:
            sock.sendall(b"SET owned 1\r\n")
            rest = sock.recv(4096)
        except OSError:
            rest = b""
        sock.close()
        assert b"+OK" not in rest
        assert redis.client().get("owned") is None
    finally:
        redis.stop()
    (record,) = proxy.wait_for_records(1, lambda r: r["event.action"] == "refused")[:1]
    assert record["labels.refusal"] == "destination-loopback"
    # What the client sent after the 403 is no request at all: refused as such, never relayed.
    others = [r for r in proxy.records() if r["event.action"] not in ("refused", "tunnel")]
    assert not others, others


def test_a_name_that_resolves_to_the_proxy_host_is_refused(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path, allow_loopback=False))
    name = socket.gethostname()  # resolves (via /etc/hosts) to an address of this host
    addresses = {info[4][0] for info in socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)}
    assert addresses, "the test needs the host name to resolve"
    with EchoServer(host="0.0.0.0") as server:
        response = ProxyClient("127.0.0.1", proxy.port).get(f"http://{name}:{server.port}/")
        assert response.status in (403, 502), (addresses, response.status, proxy.records())
        assert server.accepted == 0, "the proxy connected to its own host"
    record = proxy.wait_for_records(1, lambda r: r.get("labels.refusal", "").startswith("dest"))
    assert record[0]["labels.refusal"] in {"destination-loopback", "destination-proxy-host"}


def test_localhost_by_name_is_refused_before_any_connection(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path, allow_loopback=False))
    with EchoServer() as server:
        sock, head = tunnel(proxy.port, f"localhost:{server.port}")
        sock.close()
        assert head.startswith(b"HTTP/1.1 403")
        assert server.accepted == 0


# --------------------------------------------------------------------------- identity


TRUSTED_FRONT_PROXY = """
identity:
  sources: [header, address]
  header: X-Authenticated-User
  trusted_proxies: [127.0.0.1/32]
  log_as: name
"""


def test_an_identity_cannot_be_borrowed_inside_a_tunnel(proxy_for, tmp_path, test_ca):
    text = policy_with(tmp_path).read_text()
    start = text.index("identity:")
    end = text.index("logging:")
    policy = tmp_path / "front-proxy.yaml"
    policy.write_text(text[:start] + TRUSTED_FRONT_PROXY.lstrip() + text[end:])
    proxy = proxy_for(policy)
    with tls_origin(test_ca, "127.0.0.1") as origin:
        sock, head = tunnel(
            proxy.port, f"127.0.0.1:{origin.port}", {"X-Authenticated-User": "mallory"}
        )
        assert head.startswith(b"HTTP/1.1 200")
        context = ssl.create_default_context(cafile=str(proxy.ca_file))
        context.check_hostname = False
        tls = context.wrap_socket(sock)
        tls.sendall(
            b"GET /x HTTP/1.1\r\nHost: intranet.example.test\r\n"
            b"X-Authenticated-User: the.director\r\n\r\n"
        )
        assert read_until(tls, lambda d: b"origin" in d).startswith(b"HTTP/1.1 200")
        tls.close()
        (record,) = action(proxy, "access")
        assert origin.header(0, "X-Authenticated-User") is None  # never reaches the origin
    assert record["user.name"] == "mallory"
    assert record["labels.identity_source"] == "header"
    assert record["labels.identity_header"] == "ignored-inside-tunnel"


def test_proxy_headers_never_reach_an_origin(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with RecordingOrigin() as origin:
        client = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("alice", "secret"))
        headers = {"Proxy-Connection": "keep-alive"}
        assert client.get(f"http://127.0.0.1:{origin.port}/", headers).status == 200
        assert origin.header(0, "Proxy-Authorization") is None
        assert origin.header(0, "Proxy-Connection") is None
        assert origin.header(0, "Host") is not None


# --------------------------------------------------------------------------- upstream mode


def test_upstream_mode_never_asks_the_parent_for_a_blocked_https_site(
    start_proxy, upstream, e2e_policy
):
    """The parent proxy (the test internet, which records every CONNECT) is never asked
    for a blocked site: the block page comes from the proxy, inside its own TLS."""
    upstream.route("malware.test", "/", lambda request: Reply(200, body=b"malware"))
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, ca_file=proxy.ca_file)
    response = client.get("https://malware.test/")
    assert response.status == 403 and b"malware" in response.body.lower()
    proxy.wait_for_records(1, lambda r: r["event.action"] == "blocked")
    time.sleep(0.3)
    assert not [t for t in upstream.tunnels if "malware.test" in t.host]
    assert not [r for r in upstream.requests if "malware.test" in r.host]


def test_every_record_here_says_where_it_connected_or_why_not(proxy_for, tmp_path):
    """The IP-literal case again, as the SIEM reads it: destination fields are ECS's."""
    proxy = proxy_for(policy_with(tmp_path))
    with RecordingOrigin() as origin:
        ProxyClient("127.0.0.1", proxy.port).get(f"http://127.0.0.1:{origin.port}/")
        (record,) = action(proxy, "access")
    assert isinstance(record["destination.port"], int)
    assert record["destination.ip"] == "127.0.0.1"


# --------------------------------------------------------------------------- names that resolve


def own_names() -> tuple[str, list[str]]:
    """This host's name and the addresses it resolves to (via /etc/hosts): a name the
    proxy resolves itself in regular mode, with no DNS server."""
    name = socket.gethostname()
    infos = socket.getaddrinfo(name, 443, type=socket.SOCK_STREAM)
    return name, sorted({info[4][0] for info in infos})


def test_a_bypassed_bank_reached_by_name_stays_encrypted(proxy_for, tmp_path, test_ca):
    """In regular mode the proxy connects to the name itself: the tunnel must still be
    classified by that name (a bypass site), never by the address it resolved to."""
    name, addresses = own_names()
    extra = "\n".join(f"    - {a}/{128 if ':' in a else 32}" for a in addresses)
    policy = (
        policy_with(tmp_path).read_text().replace("bank: [bank.test]", f"bank: [bank.test, {name}]")
    )
    policy = policy.replace("  allow: [127.0.0.0/8]\n", f"  allow:\n    - 127.0.0.0/8\n{extra}\n")
    path = tmp_path / "bank.yaml"
    path.write_text(policy)
    proxy = proxy_for(path)
    with tls_origin(test_ca, "0.0.0.0") as origin:
        sock, head = tunnel(proxy.port, f"{name}:{origin.port}")
        assert head.startswith(b"HTTP/1.1 200"), head
        context = ssl.create_default_context(cafile=str(test_ca.write_ca(tmp_path, "t.pem")))
        context.check_hostname = False
        tls = context.wrap_socket(sock, server_hostname=name)  # trusts the test CA only
        tls.sendall(f"GET /account HTTP/1.1\r\nHost: {name}\r\n\r\n".encode())
        assert read_until(tls, lambda d: b"origin" in d).startswith(b"HTTP/1.1 200")
        tls.close()
        (record,) = action(proxy, "tunnel")
    assert record["labels.site"] == "bank" and record["labels.action"] == "bypass"
    assert record["url.domain"] == name.lower()
    assert "labels.names_differ" not in record
    # Where the proxy connected, though it never saw inside (issue #12's promise).
    assert record["destination.port"] == origin.port
    assert record["destination.ip"] in addresses
    assert proxy.metric("auditproxy_errors_total", stage="connection") == 0


def test_a_connect_to_a_name_resolving_to_a_refused_address_is_a_refusal(proxy_for, tmp_path):
    name, _ = own_names()
    proxy = proxy_for(policy_with(tmp_path, allow_loopback=False))
    with EchoServer(host="0.0.0.0") as server:
        sock, head = tunnel(proxy.port, f"{name}:{server.port}")
        sock.close()
        assert not head.startswith(b"HTTP/1.1 200") and server.accepted == 0
    (record,) = action(proxy, "refused")
    assert record["labels.refusal"] in {"destination-loopback", "destination-proxy-host"}
    assert not [r for r in proxy.records() if r["event.action"] == "connect-failed"]


@pytest.mark.parametrize(
    "headers",
    [
        [("Host", "malware.test:x")],
        [("Host", "malware.test:80:80")],
        [("Host", "malware.test/")],
        [("Host", "intranet.example.test"), ("Host", "malware.test")],
    ],
    ids=["port-not-a-number", "two-ports", "slash", "two-host-headers"],
)
def test_a_host_header_sites_read_differently_is_refused(proxy_for, tmp_path, headers):
    proxy = proxy_for(policy_with(tmp_path))
    with RecordingOrigin() as origin:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers)
        sock.sendall(f"GET http://127.0.0.1:{origin.port}/ HTTP/1.1\r\n{lines}\r\n".encode())
        answer = read_until(sock, lambda d: b"</html>" in d)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        assert origin.accepted == 0
    (record,) = action(proxy, "refused")
    assert record["labels.refusal"] == "request-bad-host"


def test_an_idle_tunnel_still_leaves_a_record(proxy_for, tmp_path):
    proxy = proxy_for(policy_with(tmp_path))
    with EchoServer() as server:
        sock, head = tunnel(proxy.port, f"127.0.0.1:{server.port}")
        assert head.startswith(b"HTTP/1.1 200")
        sock.close()  # an open port found, nothing sent
        (record,) = action(proxy, "tunnel")
    assert record["labels.connection_end"] == "idle" and record["url.port"] == server.port
