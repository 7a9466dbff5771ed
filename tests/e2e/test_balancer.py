"""The real client address behind a load balancer: the shipped HAProxy configuration (HTTP
mode, X-Forwarded-For) in front of two `auditproxy run` instances.

    client 127.0.0.2 / .3 / .4 --> HAProxy (127.0.0.1) --> auditproxy A, B --> Upstream

The policy allows 127.0.0.2 and 127.0.0.3 only and trusts 127.0.0.1 (HAProxy, as the
instances see it) as a balancer; 127.0.0.4 plays a machine outside the staff networks
(HAProxy's own front door admits all of 127/8). So `clients`, identity by address and
`source.ip` must be the browser's, over plain HTTP and inside CONNECT tunnels; and
nobody borrows another address by writing X-Forwarded-For: through HAProxy its header is
replaced, sent straight to an instance it is not believed.
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support import CertAuthority, ProxyClient, Upstream
from support.client import ProtocolError
from support.haproxy import HAProxy, start_haproxy
from support.paths import POLICIES
from support.proxy import AuditProxyProcess

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="needs HAProxy: apt-get install --no-install-recommends haproxy",
    ),
]

STAFF, OTHER_STAFF, OUTSIDER = "127.0.0.2", "127.0.0.3", "127.0.0.4"


@dataclass
class Stack:
    a: AuditProxyProcess
    b: AuditProxyProcess
    haproxy: HAProxy
    upstream: Upstream

    def records(self, predicate) -> list[dict]:
        return [r for proxy in (self.a, self.b) for r in proxy.records() if predicate(r)]

    def wait_for(self, count: int, predicate, timeout: float = 10) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(found := self.records(predicate)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"wanted {count} records, found {found}")
            time.sleep(0.05)
        return found

    def metric(self, name: str, **labels: str) -> float:
        return self.a.metric(name, **labels) + self.b.metric(name, **labels)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("balancer")
    text = (POLICIES / "small.yaml").read_text(encoding="utf-8")
    text = text.replace(
        'allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]', f"allow: [{STAFF}/32, {OTHER_STAFF}/32]"
    )
    text += "balancers:\n  trusted: [127.0.0.1/32]\n"
    policy = tmp / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    upstream_ca = test_ca.write_ca(tmp)
    with contextlib.ExitStack() as cleanup:
        upstream = cleanup.enter_context(Upstream(test_ca))
        proxies = []
        for name in "ab":
            (tmp / name).mkdir()
            proxy = AuditProxyProcess(
                tmp / name,
                policy=policy,
                upstream_mode=upstream.proxy_mode,
                upstream_ca=upstream_ca,
            )
            proxies.append(cleanup.enter_context(proxy))
        haproxy = start_haproxy(tmp, proxies)
        cleanup.callback(haproxy.stop)
        haproxy.wait_for({"a": "UP", "b": "UP"})
        yield Stack(proxies[0], proxies[1], haproxy, upstream)


def through_haproxy(stack: Stack, source: str, **kwargs) -> ProxyClient:
    return ProxyClient("127.0.0.1", stack.haproxy.port, source_address=source, timeout=15, **kwargs)


def test_records_and_identity_carry_the_clients_own_address(stack: Stack) -> None:
    for n in range(6):  # new connections: both instances serve some
        assert through_haproxy(stack, STAFF).get(f"http://www.example.org/plain-{n}").status == 200
    plain = stack.wait_for(6, lambda r: r.get("url.path", "").startswith("/plain-"))
    assert {r["source.ip"] for r in plain} == {STAFF}
    assert {r["user.name"] for r in plain} == {STAFF}  # identity by address: the client's
    assert all(r["labels.identity_source"] == "address" for r in plain)
    assert "labels.forwarded" not in plain[0]
    assert stack.a.records() and stack.b.records(), "HAProxy used one instance only"
    # The balancer's header is for the proxy: it never reaches a site.
    assert all("x-forwarded-for" not in r.headers for r in stack.upstream.requests)
    assert stack.metric("auditproxy_forwarded_total", result="used") >= 6


def test_a_tunnel_inherits_its_connects_client(stack: Stack) -> None:
    client = through_haproxy(stack, OTHER_STAFF, verify=False)
    answer = client.get("https://x.com/inside-the-tunnel")
    assert answer.status == 200
    (inside,) = stack.wait_for(1, lambda r: r.get("url.path") == "/inside-the-tunnel")
    assert inside["url.scheme"] == "https"
    assert inside["source.ip"] == OTHER_STAFF and inside["user.name"] == OTHER_STAFF


def test_clients_refuses_an_outsider_behind_the_balancer(stack: Stack) -> None:
    outsider = through_haproxy(stack, OUTSIDER)
    assert outsider.get("http://www.example.org/outsider").status == 403
    assert outsider.connect("x.com", 443).status == 403
    refused = stack.wait_for(
        2, lambda r: r.get("source.ip") == OUTSIDER and r.get("labels.action") == "refuse"
    )
    assert {r["event.action"] for r in refused} == {"blocked"}
    assert not stack.upstream.find(path="/outsider")


def test_a_spoofed_header_through_the_balancer_is_replaced(stack: Stack) -> None:
    spoofer = through_haproxy(stack, OUTSIDER)
    answer = spoofer.get(
        "http://www.example.org/spoof-via-haproxy", headers={"X-Forwarded-For": STAFF}
    )
    assert answer.status == 403  # HAProxy dropped the client's header and wrote its own
    (record,) = stack.wait_for(1, lambda r: r.get("url.path") == "/spoof-via-haproxy")
    assert record["source.ip"] == OUTSIDER


def test_a_spoofed_header_from_anyone_but_a_balancer_is_not_believed(stack: Stack) -> None:
    """Straight to an instance, not through HAProxy: the header names another allowed
    client, and is ignored, noted and counted."""
    direct = ProxyClient("127.0.0.1", stack.a.port, source_address=STAFF, timeout=15)
    path = "/spoof-direct"
    answer = direct.get(f"http://www.example.org{path}", headers={"X-Forwarded-For": OTHER_STAFF})
    assert answer.status == 200
    (record,) = stack.a.wait_for_records(1, lambda r: r.get("url.path") == path)
    assert record["source.ip"] == STAFF and record["user.name"] == STAFF
    assert record["labels.forwarded"] == "ignored-untrusted-client"
    assert stack.a.metric("auditproxy_forwarded_total", result="ignored-untrusted-client") >= 1


def test_an_outsider_cannot_borrow_an_allowed_address_by_header(stack: Stack) -> None:
    """Straight to an instance from outside the policy's networks, naming an allowed
    client in the header: closed as it connects, before the header is even read."""
    before = stack.a.metric("auditproxy_refusals_total", reason="client")
    direct = ProxyClient("127.0.0.1", stack.a.port, source_address=OUTSIDER, timeout=15)
    with pytest.raises((OSError, ProtocolError)):  # closed: no answer at all
        direct.get("http://www.example.org/borrowed", headers={"X-Forwarded-For": STAFF})
    stack.a.wait_for_metric("auditproxy_refusals_total", before + 1, reason="client")
    assert not stack.upstream.find(path="/borrowed")
    assert not stack.a.wait_for_records(0, lambda r: r.get("url.path") == "/borrowed")


def test_the_balancers_own_request_is_the_balancers(stack: Stack) -> None:
    """A trusted balancer's request without the header (its own): its own address, which
    the policy does not allow as a client."""
    balancer = ProxyClient("127.0.0.1", stack.a.port, timeout=15)
    assert balancer.get("http://www.example.org/from-the-balancer").status == 403
    (record,) = stack.a.wait_for_records(1, lambda r: r.get("url.path") == "/from-the-balancer")
    assert record["source.ip"] == "127.0.0.1" and record["labels.forwarded"] == "missing"
