"""Bodies pass through as they come; only a page that may carry the notice is held.

mitmproxy holds each request and response body whole before relaying it, up to
`stream_large_bodies` (4 MiB with `auditproxy run`) per body. One HTTP/2 connection
carries a hundred streams, so one person could make the proxy hold 100 x 4 MB per
connection and a few connections held gigabytes until the proxy ran out of memory for
everyone (red team, issue #13). Nothing in auditproxy reads a request body, and of the
responses only the notice's candidate pages (`Notice.responseheaders` set
`state.notice_visit`); every other body is streamed: relayed as it arrives, never held
(mitmproxy waits for the other side's writer to drain before reading more, so a slow
receiver slows the sender instead of filling memory). `Record` counts streamed bytes.
"""

from __future__ import annotations

from mitmproxy import http

from auditproxy.stages import Stage, guarded, state_of


class Bodies(Stage):
    """Streams every body nothing here reads (runs after `Notice`, before `Record`)."""

    @guarded("admit")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # mitmproxy refuses a response set by a hook together with a streamed request:
        # an answered request (refused, blocked, 407) is left as it is.
        if flow.response is None and not flow.request.stream and may_have_body(flow.request):
            flow.request.stream = True

    @guarded("admit")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, response = state_of(flow), flow.response
        if response is None or response.stream or state is None:
            return
        if state.answered is not None or state.notice_visit is not None:
            return  # our own answer, or a page the notice may read: held
        response.stream = True


def may_have_body(request: http.Request) -> bool:
    """Whether a request may carry a body: HTTP/1 says so in its head (RFC 9112 6.3); an
    HTTP/2 or HTTP/3 stream may carry data whatever its head says, so it always may.
    (Streaming a request that carries none costs nothing: its end follows its head.)"""
    if request.is_http2 or request.is_http3:
        return True
    headers = request.headers
    if "transfer-encoding" in headers:
        return True
    return headers.get("content-length", "").strip() not in ("", "0")
