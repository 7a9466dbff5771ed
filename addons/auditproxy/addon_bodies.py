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

from auditproxy.flowstate import KEY
from auditproxy.stages import Stage, guarded, header_view


class Bodies(Stage):
    """Streams every body nothing here reads (runs after `Notice`, before `Record`)."""

    @guarded("admit")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        # mitmproxy refuses a response set by a hook together with a streamed request:
        # an answered request (refused, blocked, 407) is left as it is.
        request = flow.request
        if flow.response is None and not request.stream and may_have_body(request, flow):
            request.stream = True

    @guarded("admit")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, response = flow.metadata.get(KEY), flow.response
        if response is None or response.stream or state is None:
            return
        if state.answered is not None or state.notice_visit is not None:
            return  # our own answer, or a page the notice may read: held
        response.stream = True


def may_have_body(request: http.Request, flow: http.HTTPFlow | None = None) -> bool:
    """Whether a request may carry a body: HTTP/1 says so in its head (RFC 9112 6.3); an
    HTTP/2 or HTTP/3 stream may carry data whatever its head says, so it always may.
    (Streaming a request that carries none costs nothing: its end follows its head.)

    `flow`: the request's flow, whose header view (`stages.header_view`) answers the
    common cases without a scan of the headers (no Content-Length, or one number); the
    rest (repeated, odd) is read the way mitmproxy reads it."""
    if request.is_http2 or request.is_http3:
        return True
    if flow is not None:
        view = header_view(flow)
        if b"transfer-encoding" in view:
            return True
        length = view.get(b"content-length")
        if length is None:
            return False
        # A number: the answer, if not "0" or if it is the only value (no repeated name).
        if length.isdigit() and (length != b"0" or len(view) == len(request.headers.fields)):
            return length != b"0"
    headers = request.headers
    if "transfer-encoding" in headers:
        return True
    return headers.get("content-length", "").strip() not in ("", "0")
