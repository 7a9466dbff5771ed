"""Security, end to end through a real `auditproxy run`: nobody let in who should not be,
nothing written or shown that should not be.

    not an open proxy      loopback only out of the box; outsiders refused before any
                           connection leaves the proxy (plain, CONNECT, bypassed banks)
    identity               the front proxy's header from anyone else: ignored, noted,
                           never forwarded
    domain fronting        TLS server name, CONNECT target and Host disagree: the record
                           carries the names, the strictest action applies
    markup                 policy texts and names cannot put markup into pages
    acknowledgement        the link works only for its person, day, site and page
    the log                request data cannot add lines or fields
    the CA key             created 0600; the proxy refuses to start when others can read it

tests/e2e/test_core.py already covers the refused plain GET and CONNECT, and the unit
tests (test_notice, test_accesslog, test_identity) the same rules without sockets.
"""

from __future__ import annotations

import base64
import contextlib
import html
import json
import re
import socket
import ssl
import stat
import subprocess
import time
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import yaml

from auditproxy.decide.identity import load_key
from auditproxy.notice.keys import ACK_PATH, NoticeKeys, Visit
from auditproxy.notice.ownpaths import READING_SECONDS
from auditproxy.sinks.records import ALLOWED_FIELDS
from auditproxy.sinks.seal import FIELDS as CHAIN_FIELDS
from support import ProxyClient, Response, Upstream
from support.client import BufferedSocket, read_response
from support.notice import CLICK, CONFIRM_CLICK, DOCUMENT, NOTICE, through_confirmation
from support.proxy import AuditProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HEADER = "X-Authenticated-User"  # the e2e policy's identity header, trusted from 10.9.9.9


def started(proxy: AuditProxyProcess) -> AuditProxyProcess:
    """Start a proxy made with start=False; use it as `with started(proxy):`."""
    proxy.start()
    return proxy


def proxy_process(
    tmp_path: Path, upstream: Upstream, ca: Path, policy: Path, *args: str
) -> AuditProxyProcess:
    """A proxy towards the test internet that is not started yet (restarted by a test)."""
    workdir = tmp_path / f"proxy-{len(list(tmp_path.glob('proxy-*')))}"
    workdir.mkdir()
    return AuditProxyProcess(
        workdir,
        list(args),
        policy=policy,
        upstream_mode=upstream.proxy_mode,
        upstream_ca=ca,
        start=False,
    )


# ---------------------------------------------------------------------------------------
# Not an open proxy


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (/proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].rsplit(":", 1)
                if int(hex_port, 16) == port and fields[3] == "0A":  # LISTEN
                    raw = bytes.fromhex(address)
                    if len(raw) == 4:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def non_loopback_addresses() -> set[str]:
    """This machine's own IPv4 addresses other than 127.x (from /proc/net/fib_trie)."""
    addresses, last = set(), None
    with contextlib.suppress(FileNotFoundError):
        for line in Path("/proc/net/fib_trie").read_text().splitlines():
            text = line.strip()
            if text.startswith("|--"):
                last = text[3:].strip()
            elif "/32 host LOCAL" in text and last and not last.startswith("127."):
                addresses.add(last)
    return addresses


def test_out_of_the_box_it_listens_on_loopback_only(tmp_path, upstream, upstream_ca_file):
    """`auditproxy run` without --listen-host or --metrics-host: only 127.0.0.1."""
    proxy = AuditProxyProcess(
        tmp_path,
        upstream_mode=upstream.proxy_mode,
        upstream_ca=upstream_ca_file,
        start=False,
    )
    at = proxy.command.index("--listen-host")
    del proxy.command[at : at + 2]
    assert "--metrics-host" not in proxy.command
    with started(proxy):
        assert listening_addresses(proxy.port) == {"127.0.0.1"}
        assert listening_addresses(proxy.metrics_port) == {"127.0.0.1"}
        for address in non_loopback_addresses():
            for port in (proxy.port, proxy.metrics_port):
                with pytest.raises(OSError), socket.create_connection((address, port), timeout=2):
                    pass


def test_outsiders_are_refused_before_anything_leaves_the_proxy(
    start_proxy, page_policy, upstream, upstream_ca_file
):
    """Plain, CONNECT, a bank that would be bypassed, with credentials, with the trusted
    identity header: all refused, and not one connection to the internet. (With
    `clients.refuse: page`, so that each gets its page; by default they are closed as they
    connect: test_outsiders_are_closed_as_they_connect.)"""
    proxy = start_proxy("--set", "proxyauth=any", policy=page_policy)
    outsider = ProxyClient(
        "127.0.0.1", proxy.port, source_address="127.0.0.2", proxy_auth=("alice", "pw")
    )
    anonymous = ProxyClient("127.0.0.1", proxy.port, source_address="127.0.0.2")
    answers = [
        outsider.get("http://online.bank.test/"),
        outsider.get("http://www.facebook.com/", headers={HEADER: "the-ceo"}),
        outsider.connect("online.bank.test", 443),  # bypass: would not even be decrypted
        outsider.connect("www.facebook.com", 443, headers={HEADER: "the-ceo"}),
        anonymous.get("http://news.example/"),  # 407 first: it has no credentials either
    ]
    assert [a.status for a in answers] == [403, 403, 403, 403, 407]
    assert b"not available from your network" in answers[0].body
    records = proxy.wait_for_records(5)
    assert {r["labels.action"] for r in records} == {"refuse"}
    assert {r["source.ip"] for r in records} == {"127.0.0.2"}
    time.sleep(0.3)
    assert upstream.connections_accepted == 0, "a refused client reached the internet"
    assert proxy.metric("auditproxy_tunnels_total", action="bypass") == 0


def test_outsiders_are_closed_as_they_connect(start_proxy, e2e_policy, upstream):
    """By default (`clients.refuse: connect`) an outsider's connection is closed before a
    byte of it is read: no request head to send, no connection to hold. The refusals are
    written as `refused` records, the first per address at once and the rest summed up per
    10 s, so that a flood of them cannot flood the log."""
    proxy = start_proxy(policy=e2e_policy)
    for _ in range(50):
        with socket.create_connection(
            ("127.0.0.1", proxy.port), timeout=5, source_address=("127.0.0.2", 0)
        ) as sock:
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                sock.sendall(b"GET http://www.facebook.com/ HTTP/1.1\r\nHost: x\r\n\r\n")
            with contextlib.suppress(ConnectionResetError):
                assert sock.recv(100) == b""  # closed, no answer
    proxy.wait_for_metric("auditproxy_refusals_total", 50, reason="client")
    first, summary = proxy.wait_for_records(2, lambda r: r["event.action"] == "refused", 15)
    assert first["labels.refusal"] == summary["labels.refusal"] == "client"
    assert first["labels.refusal_count"] == "1" and summary["labels.refusal_count"] == "49"
    assert first["source.ip"] == summary["source.ip"] == "127.0.0.2"
    assert summary["event.start"] <= summary["event.end"]
    assert [r for r in proxy.records() if r["event.action"] != "refused"] == []
    assert upstream.connections_accepted == 0
    assert ProxyClient("127.0.0.1", proxy.port).get("http://news.example/").status == 200


# ---------------------------------------------------------------------------------------
# Identity


def test_identity_header_from_a_client_is_ignored_noted_and_never_forwarded(
    start_proxy, e2e_policy, upstream
):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port)
    assert client.get("http://www.facebook.com/a", headers={HEADER: "the-ceo"}).status == 200
    # HTTPS: the header on the CONNECT and again inside the decrypted tunnel.
    assert fronted(proxy, "x.com", "x.com", "x.com", "/b", header="the-cfo")[0].status == 200
    records = proxy.wait_for_records(2)
    for record in records:
        assert record["user.name"] == "127.0.0.1"
        assert record["labels.identity_source"] == "address"
        assert record["labels.identity_header"] == "ignored-untrusted-client"
    seen = upstream.wait_for(2)
    assert all(HEADER.lower() not in (k.lower() for k in r.headers) for r in seen)
    assert all(HEADER.lower() not in (k.lower() for k in t.headers) for t in upstream.tunnels)
    assert "the-ceo" not in proxy.access_log.read_text()


def test_authenticated_client_spoofing_the_header_is_noted(start_proxy, e2e_policy, upstream):
    """Proxy authentication decides who it is; the attempt is still in the record (this
    was missed while proxy_auth came first in the policy's sources; fixed)."""
    proxy = start_proxy("--set", "proxyauth=any", policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("mallory", "pw"))
    assert client.get("http://news.example/", headers={HEADER: "the-ceo"}).status == 200
    (record,) = proxy.wait_for_records(1)
    assert record["user.name"] == "mallory"
    assert record.get("labels.identity_header") == "ignored-untrusted-client"


# ---------------------------------------------------------------------------------------
# Domain fronting


def fronted(
    proxy: AuditProxyProcess,
    connect: str,
    sni: str,
    host: str,
    path: str = "/",
    user: str | None = None,
    header: str | None = None,
) -> tuple[Response, str]:
    """CONNECT `connect`:443, TLS with server name `sni`, then `GET path` with `Host:
    host`. Returns the answer and the issuer of the certificate the client saw.

    `user` authenticates the CONNECT; `header` is sent as the identity header on the
    CONNECT and on the request inside."""
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=10)
    extra = f"{HEADER}: {header}\r\n" if header is not None else ""
    try:
        stream = BufferedSocket(sock)
        auth = f"Proxy-Authorization: {basic(user).decode()}\r\n" if user else ""
        head = f"CONNECT {connect}:443 HTTP/1.1\r\nHost: {connect}:443\r\n{auth}{extra}\r\n"
        stream.sendall(head.encode())
        assert read_response(stream, "CONNECT").status == 200
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        tls = context.wrap_socket(sock, server_hostname=sni)
        from cryptography import x509

        der = tls.getpeercert(binary_form=True)
        issuer = x509.load_der_x509_certificate(der).issuer.rfc4514_string()
        stream = BufferedSocket(tls)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
        stream.sendall(request.encode())
        return read_response(stream, "GET"), issuer
    finally:
        sock.close()


def test_domain_fronting_never_escapes_the_stricter_rule(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    cases = [
        # (CONNECT, SNI, Host, path): what the strictest name says
        ("www.facebook.com", "online.bank.test", "online.bank.test", "/f1"),  # monitor
        ("online.bank.test", "www.facebook.com", "www.facebook.com", "/f2"),  # monitor
        ("x.com", "x.com", "malware.test", "/f3"),  # block
        ("x.com", "x.com", "online.bank.test", "/f4"),  # monitor
    ]
    answers = [fronted(proxy, *case) for case in cases]
    for _, issuer in answers:
        assert "mitmproxy" in issuer  # decrypted: fronting a bank never turns bypass on
    assert [r.status for r, _ in answers] == [200, 200, 403, 200]
    plain = ProxyClient("127.0.0.1", proxy.port)
    assert (
        plain.get("http://online.bank.test/f5", headers={"Host": "www.facebook.com"}).status == 200
    )
    assert plain.get("http://x.com/f6", headers={"Host": "malware.test"}).status == 403
    records = {r["url.path"]: r for r in proxy.wait_for_records(6)}
    expected = {
        "/f1": ("online.bank.test", "online.bank.test", "facebook", "monitor", "access"),
        "/f2": ("www.facebook.com", "www.facebook.com", "facebook", "monitor", "access"),
        "/f3": ("malware.test", "x.com", "bad", "block", "blocked"),
        "/f4": ("online.bank.test", "x.com", "x", "monitor", "access"),
        "/f5": ("www.facebook.com", None, "facebook", "monitor", "access"),
        "/f6": ("malware.test", None, "bad", "block", "blocked"),
    }
    for path, (domain, sni, site, action, event) in expected.items():
        r = records[path]
        got = (
            r["url.domain"],
            r.get("tls.client.server_name"),
            r["labels.site"],
            r["labels.action"],
            r["event.action"],
        )
        assert got == (domain, sni, site, action, event), path
    assert not [r for r in records.values() if r["event.action"] == "tunnel"]
    assert upstream.find(path="/f3") == [] and upstream.find(path="/f6") == []
    assert proxy.metric("auditproxy_tunnels_total", action="bypass") == 0


# ---------------------------------------------------------------------------------------
# Markup from the policy


HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)></template><style>'


def hostile_policy(e2e_policy: Path) -> Path:
    """The test policy with markup in its name, its link and every notice text."""
    policy = yaml.safe_load(e2e_policy.read_text())
    policy["name"] = HOSTILE
    policy["url"] = 'https://intranet.example.test/p?a="><script>alert(3)</script>'
    for texts in policy["notice"]["texts"].values():
        for key in ("heading", "disclaimer", "monitoring", "policy_name", "link_text"):
            texts[key] = f"{texts[key]} {HOSTILE}"
        texts["acknowledge"] = HOSTILE
    e2e_policy.write_text(yaml.safe_dump(policy, allow_unicode=True))
    return e2e_policy


def test_policy_texts_cannot_inject_markup_into_pages(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=hostile_policy(e2e_policy))
    client = ProxyClient("127.0.0.1", proxy.port)
    page = client.get("http://www.facebook.com/", headers=DOCUMENT)
    blocked = client.get("http://malware.test/")
    assert NOTICE in page.body and blocked.status == 403
    for body in (page.body, blocked.body):
        text = body.decode("ascii")
        assert "<script" not in text and "<img" not in text  # only as escaped text
        assert "</template><style>" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
        assert '"><script>alert(3)' not in text  # the link stays inside its attribute
    notice = page.body[page.body.index(NOTICE) :]
    assert notice.count(b"<template") == 1 and notice.count(b"<style>") == 1


def test_a_policy_link_that_is_not_http_is_refused_at_start(tmp_path, e2e_policy):
    text = e2e_policy.read_text().replace(
        "url: https://intranet.example.test/policy", "url: javascript:alert(1)", 1
    )
    e2e_policy.write_text(text)
    proxy = AuditProxyProcess(tmp_path, policy=e2e_policy, start=False)
    result = subprocess.run(proxy.command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "is not an http(s) URL" in result.stderr


# ---------------------------------------------------------------------------------------
# The acknowledgement link


def ack_link(page: Response) -> str:
    match = re.search(rb'href="(/\.well-known/auditproxy/acknowledge\?[^"]+)"', page.body)
    assert match, "no acknowledgement link"
    return html.unescape(match.group(1).decode("ascii"))


def signed_link(proxy: AuditProxyProcess, user: str, day: date, path: str) -> str:
    """A correctly signed link for another day, made with the proxy's own key: what an
    insider holding an old page (or the key) could present."""
    keys = NoticeKeys(load_key(proxy.confdir / "auditproxy-pseudonym.key"))
    visit = Visit(day, keys.user(user), "site:facebook")
    token = keys.token(visit, "www.facebook.com", path)
    query = f"r={quote(path, safe='')}&d={day.toordinal()}&s=site%3Afacebook&t={token}"
    return f"{ACK_PATH}?{query}"


@pytest.mark.clock
def test_acknowledgement_link_cannot_be_replayed(start_proxy, e2e_policy, upstream):
    proxy = start_proxy("--set", "proxyauth=any", policy=e2e_policy)
    alice = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("alice", "pw"))
    bob = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("bob", "pw"))
    link = ack_link(alice.get("http://www.facebook.com/groups/1?x=2", headers=DOCUMENT))
    query = parse_qs(urlsplit(link).query)
    assert query["r"] == ["/groups/1?x=2"]
    day = date.fromordinal(int(query["d"][0]))

    refused = {
        "another user": bob.get(f"http://www.facebook.com{link}", CLICK),
        "another site": alice.get(f"http://x.com{link}", CLICK),
        "elsewhere": alice.get(
            "http://www.facebook.com"
            + link.replace("r=%2Fgroups", "r=%2F%2Fevil.example%2Fgroups"),
            CLICK,
        ),
        "a scheme": alice.get(
            "http://www.facebook.com"
            + re.sub(r"r=[^&]+", "r=" + quote("https://evil.example/", safe=""), link),
            CLICK,
        ),
        # Issue #15: a navigation, but not the person's own (a script's, without a click).
        "no click": alice.get(f"http://www.facebook.com{link}", DOCUMENT),
    }
    for why, response in refused.items():
        assert response.status == 403, why
        assert "Location" not in response.headers, why
    # Not a navigation at all (a script's fetch, a request without fetch metadata): the
    # site's to answer, as if there were no proxy, and nothing is acknowledged.
    passed_on = {
        "a script's fetch": alice.get(
            f"http://www.facebook.com{link}",
            {"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Site": "same-origin"},
        ),
        "no fetch metadata": alice.get(f"http://www.facebook.com{link}"),
    }
    for why, response in passed_on.items():
        assert "Location" not in response.headers, why
    assert len(upstream.find(path=ACK_PATH)) == len(passed_on)
    yesterday = alice.get(
        "http://www.facebook.com" + signed_link(proxy, "alice", day - timedelta(1), "/old"), CLICK
    )
    assert (yesterday.status, yesterday.headers.get("Location")) == (303, "/old")
    # The notice's link opens the proxy's confirmation page; its own link acknowledges.
    confirm = alice.get(f"http://www.facebook.com{link}", CLICK)
    assert confirm.status == 200
    assert "sandbox" in (confirm.headers.get("Content-Security-Policy") or "")
    second = through_confirmation(  # the person reads each page (quicker: the first again)
        confirm.body,
        lambda link: alice.get(f"http://www.facebook.com{link}", CONFIRM_CLICK).body,
        lambda: time.sleep(READING_SECONDS + 0.2),
    )
    assert bob.get(f"http://www.facebook.com{second}", CONFIRM_CLICK).status == 403
    for _ in range(3):  # replayed: one acknowledgement record, however often
        good = alice.get(f"http://www.facebook.com{second}", CONFIRM_CLICK)
        assert (good.status, good.headers["Location"]) == (303, "/groups/1?x=2")

    acknowledged = proxy.wait_for_records(1, lambda r: r["event.action"] == "notice-acknowledged")
    time.sleep(0.3)
    acknowledged = [r for r in proxy.records() if r["event.action"] == "notice-acknowledged"]
    assert [r["user.name"] for r in acknowledged] == ["alice"]  # only the good one counts
    state = b"".join(p.read_bytes() for p in proxy.workdir.glob("state.sqlite3*"))
    assert b"alice" not in state and b"facebook.com" not in state  # keyed hashes only
    # The proxy answers the person's navigations, never the site; the rest went on above.
    assert len(upstream.find(path=ACK_PATH)) == len(passed_on)


# ---------------------------------------------------------------------------------------
# The log


def raw_request(proxy: AuditProxyProcess, head: bytes) -> int:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        stream = BufferedSocket(sock)
        stream.sendall(head)
        return read_response(stream, "GET").status


def basic(user: str) -> bytes:
    return b"Basic " + base64.b64encode(user.encode() + b":pw")


def test_request_data_cannot_inject_lines_or_fields(start_proxy, e2e_policy, upstream):
    """Quotes, backslashes, JSON, encoded and raw line breaks, Unicode separators and
    invalid UTF-8 in the request line, the user name and the TLS server name: every line
    of the log stays one JSON object with only known fields.

    Requests that mitmproxy's HTTP parser rejects (400) never become flows, so they have
    no record: noted in the report, not the add-on's to log."""
    proxy = start_proxy("--set", "proxyauth=any", policy=e2e_policy)
    evil_user = 'eve"},{"user.name","root","labels.action","bypass\\'
    heads = [
        b'GET http://news.example/a"},{"user.name":"root","x":"\\ HTTP/1.1\r\n',
        b"GET http://news.example/b%0D%0A%7B%22user.name%22%3A%22root%22%7D HTTP/1.1\r\n",
        "GET http://news.example/c\u2028\u2029é HTTP/1.1\r\n".encode(),
        b"GET http://news.example/d\xff\xfe\x85 HTTP/1.1\r\n",
        b'GET http://news.example/e?q=\r\n{"user.name":"root"} HTTP/1.1\r\n',
    ]
    statuses = []
    for n, head in enumerate(heads):
        user = evil_user if n == 0 else f"user{n}"
        request = (
            head
            + b"Host: news.example\r\nProxy-Authorization: "
            + basic(user)
            + b'\r\nUser-Agent: x"\r\n\r\n'
        )
        statuses.append(raw_request(proxy, request))
    newline_user = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("eve\nroot", "pw"))
    statuses.append(newline_user.get("http://news.example/f").status)
    sni = 'x"},{"user.name":"root","x":"\\.x.com'
    statuses.append(fronted(proxy, "x.com", sni, "x.com", "/sni", user="tls-user")[0].status)
    time.sleep(0.5)
    records = [json.loads(line) for line in proxy.access_log.read_text().splitlines()]
    answered = [s for s in statuses if s != 400]
    assert len(records) == len(answered), statuses
    for record in records:
        assert set(record) <= ALLOWED_FIELDS | set(CHAIN_FIELDS)  # the chain's after the list
        assert record.get("user.name") != "root"
        assert record["labels.action"] in ("log", "monitor")
        assert "\n" not in record.get("url.path", "") and "?" not in record.get("url.path", "")
    users = [r.get("user.name") for r in records]
    assert evil_user in users  # logged exactly as given, as one escaped string
    assert "eve\nroot" not in users and "127.0.0.1" in users  # unprintable: the address
    paths = {r.get("url.path") for r in records}
    assert '/a"},{"user.name":"root","x":"\\' in paths
    assert "/b%0D%0A%7B%22user.name%22%3A%22root%22%7D" in paths
    (tls,) = [r for r in records if r.get("url.path") == "/sni"]
    assert tls["user.name"] == "tls-user" and tls["url.domain"] == "x.com"
    assert tls.get("tls.client.server_name") in (None, sni)  # mitmproxy drops invalid names


# ---------------------------------------------------------------------------------------
# The proxy's CA key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_ca_key_is_owner_only_and_a_readable_one_stops_the_start(
    tmp_path, upstream, upstream_ca_file, e2e_policy
):
    proxy = proxy_process(tmp_path, upstream, upstream_ca_file, e2e_policy)
    with started(proxy):  # the first start creates the CA
        pass
    conf = proxy.confdir
    assert mode(conf / "mitmproxy-ca.pem") == 0o600
    assert mode(conf / "mitmproxy-ca.p12") == 0o600  # also holds the key
    assert mode(conf / "auditproxy-pseudonym.key") == 0o600
    assert not mode(conf) & 0o077
    assert not mode(proxy.access_log) & 0o007  # 0640 before the umask: nothing for others
    for name, loose in (("mitmproxy-ca.pem", 0o644), ("mitmproxy-ca.pem", 0o640)):
        (conf / name).chmod(loose)
        result = subprocess.run(proxy.command, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert f"mode {loose:04o}" in result.stderr
        assert f"chmod 600 {conf / name}" in result.stderr
        (conf / name).chmod(0o600)
    (conf / "auditproxy-pseudonym.key").chmod(0o604)
    result = subprocess.run(proxy.command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "the pseudonym key" in result.stderr
    (conf / "auditproxy-pseudonym.key").chmod(0o600)
    with started(proxy):  # fixed: it starts again
        assert ProxyClient("127.0.0.1", proxy.port).get("http://news.example/").status == 200
