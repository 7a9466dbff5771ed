"""The request's headers as the pipeline reads them: one lower-cased view per request."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.test import tflow

from auditproxy.addon import request_view, requested_host
from auditproxy.flowstate import FlowState


def flow_with(headers: list[tuple[bytes, bytes]], http_version: str = "HTTP/1.1"):
    request = http.Request.make("GET", "http://example.org/", b"")
    request.headers = http.Headers(headers)
    request.http_version = http_version
    return tflow.tflow(req=request)


def host_header(f: http.HTTPFlow) -> str | None:
    return requested_host(f, FlowState(request_view(f)))


def test_lower_case_names_first_value_wins():
    f = flow_with([(b"Host", b"a.test"), (b"X-Dup", b"one"), (b"x-dup", b"two")])
    view = request_view(f)
    assert view[b"host"] == b"a.test" and view[b"x-dup"] == b"one"
    assert FlowState(view).header(b"x-dup") == "one"


def test_host_header_http1_and_http2():
    assert host_header(flow_with([(b"HOST", b"www.x.com:8080")])) == "www.x.com:8080"
    assert host_header(flow_with([])) is None
    h2 = flow_with([], "HTTP/2.0")
    h2.request.authority = "m.facebook.com"
    assert host_header(h2) == "m.facebook.com"
    assert host_header(flow_with([(b"Host", b"caf\xc3\xa9.test")])) == "caf\u00e9.test"
