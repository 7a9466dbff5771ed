"""`Bodies`: every body nothing here reads passes through as it comes (streamed); only a
page that may carry the notice is held."""

from __future__ import annotations

import pytest
from mitmproxy import http
from mitmproxy.test import tflow

from auditproxy.addon_bodies import may_have_body
from auditproxy.flowstate import KEY
from support.harness import harness_for
from support.notice import DOCUMENT

HTML = {"Content-Type": "text/html; charset=utf-8"}


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>x</p></body></html>"


def test_a_request_body_is_streamed_to_the_server(harness):
    upload = harness.flow("http://www.facebook.com/upload", method="POST")
    upload.request.headers["Content-Length"] = "5000000"  # the head only: the body comes
    harness.hooks.requestheaders(upload)
    assert upload.request.stream is True
    plain = harness.flow("http://www.facebook.com/feed")  # HTTP/1 GET: no body to stream
    harness.hooks.requestheaders(plain)
    assert not plain.request.stream


def test_a_request_the_proxy_answers_is_never_streamed(harness):
    """mitmproxy refuses a hook's answer to a streamed request."""
    blocked = harness.flow("http://malware.test/x", method="POST")
    blocked.request.headers["Content-Length"] = "10"
    harness.hooks.requestheaders(blocked)
    assert blocked.response is not None and blocked.response.status_code == 403
    assert not blocked.request.stream


def test_responses_stream_unless_the_notice_may_read_them(harness):
    image = harness.exchange(
        harness.flow("http://www.facebook.com/a.png"), body=b"\x89PNG" * 1000,
        headers={"Content-Type": "image/png"},
    )  # fmt: skip
    assert image.response.stream  # passed on as it came, counted
    (record,) = harness.records("access")
    assert record["http.response.body.bytes"] == 4000
    page = harness.page("http://www.facebook.com/groups", body=PAGE, request_headers=DOCUMENT)
    assert not page.response.stream  # the day's first page: held for the notice
    assert page.metadata[KEY].notice_shown is not None
    again = harness.page("http://www.facebook.com/groups", body=PAGE, request_headers=DOCUMENT)
    assert again.response.stream and again.response.content == PAGE  # seen today: streamed


def test_which_requests_may_carry_a_body():
    def request(version: str, **headers: str) -> http.Request:
        made = http.Request.make("POST", "http://x.test/")
        made.headers.clear()
        made.headers.update(headers)
        made.http_version = version
        return made

    assert may_have_body(request("HTTP/1.1", **{"Content-Length": "3"}))
    assert may_have_body(request("HTTP/1.1", **{"Transfer-Encoding": "chunked"}))
    assert not may_have_body(request("HTTP/1.1", **{"Content-Length": "0"}))
    assert not may_have_body(request("HTTP/1.1"))
    assert may_have_body(request("HTTP/2.0"))  # a stream may carry data whatever its head


@pytest.mark.parametrize(
    "fields",
    [
        [],
        [(b"Content-Length", b"3")],
        [(b"content-length", b"0")],
        [(b"Content-Length", b"0"), (b"Content-Length", b"5")],  # repeated: as mitmproxy reads
        [(b"Content-Length", b"00")],
        [(b"Content-Length", b" 0 ")],
        [(b"Content-Length", b"")],
        [(b"Transfer-Encoding", b"chunked")],
        [(b"X-A", b"1"), (b"x-a", b"2"), (b"Content-Length", b"0")],
    ],
)
def test_the_header_view_answers_as_the_headers_do(fields):
    """`may_have_body` with the flow reads its header view: the same answer."""
    flow = tflow.tflow()
    flow.request.headers = http.Headers(fields)
    assert may_have_body(flow.request, flow) == may_have_body(flow.request)
