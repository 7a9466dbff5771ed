"""Why a page did not get the notice: the `reason` label of
`auditproxy_notice_skipped_total`, shared by every step that can decide it."""

from __future__ import annotations

from enum import StrEnum


class SkipReason(StrEnum):
    """Why a response did not get the notice; the `reason` label of the skip counter."""

    METHOD = "method"  # not GET, nor a form's POST navigation (HEAD included)
    WEBSOCKET = "websocket"  # an upgrade to WebSocket
    STATUS = "status"  # not 200: 204, 206, 304, redirects, errors
    NOT_OK = "not_ok"  # a page shown with another status than 200 (an error page, a 203)
    PREFETCH = "prefetch"  # speculative prefetch or prerender: may never be seen
    NOT_DOCUMENT = "not_document"  # frame, iframe, fetch/XHR, or not a navigation
    NOT_HTML = "not_html"  # not text/html (JSON, images, missing Content-Type, ...)
    XHTML = "xhtml"  # application/xhtml+xml: an XML parser would reject our markup
    EVENT_STREAM = "event_stream"  # text/event-stream
    ATTACHMENT = "attachment"  # Content-Disposition: attachment (a download)
    NO_TRANSFORM = "no_transform"  # Cache-Control: no-transform (RFC 9111 5.2.2.6)
    REFRESH = "refresh"  # a redirect page (Refresh header or meta refresh within seconds)
    ENCODING = "encoding"  # a Content-Encoding mitmproxy cannot decode and re-encode
    CHARSET = "charset"  # UTF-16/32 or another charset where ASCII bytes are not ASCII
    TOO_LARGE = "too_large"  # larger than the configured maximum
    STREAMED = "streamed"  # (set by the hook) the body is streamed, never buffered
    DECODE_ERROR = "decode_error"  # (set by the hook) the Content-Encoding did not decode
    NO_INSERTION_POINT = "no_insertion_point"  # not HTML, or no safe place for the notice
    FRAMESET = "frameset"  # a frameset document has no body to put the notice in
    NOSCRIPT = "noscript"  # a <noscript> in the head moves the body with scripting off
    CSP = "csp"  # the page's Content-Security-Policy cannot allow our styles safely
    DEADLINE = "deadline"  # (set by the hook) the page's work took too long: sent as it came
    INTERNAL_ERROR = "internal_error"  # a bug here; the page goes out unchanged
