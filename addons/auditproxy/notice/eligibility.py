"""Which responses may carry the notice, from the headers alone (before the body is read).

`eligibility(...)` returns None or a `SkipReason`. Only a GET (or a POST that fetch
metadata says is a top-level navigation: a form the person sent) answered 200 with
text/html, for a top-level navigation (`Sec-Fetch-Dest: document`, or the heuristics of
old clients: Accept, no X-Requested-With, no cross-site Referer), in an encoding the
proxy can decode and re-encode, without `no-transform`, a redirect refresh or an
attachment. Also the
charset rules: where ASCII bytes inserted at a tag boundary still read as ASCII.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from auditproxy.notice.reasons import SkipReason
from auditproxy.policy.hosts import site_of

# Content encodings mitmproxy decodes and re-encodes itself (mitmproxy.net.encoding).
SUPPORTED_CONTENT_ENCODINGS: Final = frozenset(
    {"identity", "none", "gzip", "deflate", "br", "zstd"}
)
REDIRECT_REFRESH_SECONDS: Final = 5  # a Refresh this soon means the notice would not be read


def eligibility(
    method: str,
    status: int,
    request_headers: Mapping[str, str],
    response_headers: Mapping[str, str],
    *,
    max_bytes: int,
    respect_no_transform: bool = True,
) -> SkipReason | None:
    """None when this response may carry the notice; otherwise why not.

    Header names are looked up case-insensitively in any Mapping (mitmproxy's Headers does
    that itself). Only a GET (or a form's POST, with fetch metadata) answered 200 with
    text/html, for a top-level navigation.
    """
    request = _Headers(request_headers)
    response = _Headers(response_headers)
    return (
        _request_skip(method, request)
        or _status_skip(status)
        or _navigation_skip(request)
        or _content_skip(response)
        or _transfer_skip(response, max_bytes, respect_no_transform)
    )


class _Headers:
    """Case-insensitive reads from a Mapping that may or may not be case-insensitive."""

    def __init__(self, headers: Mapping[str, str]):
        self._headers = headers
        # mitmproxy's Headers (the hot path) is case-insensitive already: a miss is a miss.
        # Scanning it again would cost a full lookup per header, for every absent name.
        self._ignores_case = hasattr(headers, "get_all")

    def get(self, name: str) -> str | None:
        value = self._headers.get(name)
        if value is not None or self._ignores_case:
            return value
        lowered = name.lower()
        for key, candidate in self._headers.items():
            if key.lower() == lowered:
                return candidate
        return None

    def tokens(self, name: str) -> list[str]:
        """A comma-separated header's values, lower case, without parameters."""
        value = self.get(name) or ""
        return [t.split(";", 1)[0].strip().lower() for t in value.split(",") if t.strip()]


def _request_skip(method: str, request: _Headers) -> SkipReason | None:
    if method != "GET" and not (method == "POST" and _form_navigation(request)):
        return SkipReason.METHOD
    if "websocket" in request.tokens("upgrade"):
        return SkipReason.WEBSOCKET
    return None


def _form_navigation(request: _Headers) -> bool:
    """A POST the browser says is a top-level navigation: a form the page sent (a site
    could serve every page so). Without fetch metadata a script's POST looks the same."""
    mode, destination = request.get("sec-fetch-mode"), request.get("sec-fetch-dest")
    return (mode or "").strip().lower() == "navigate" and (
        destination or ""
    ).strip().lower() == "document"


def _status_skip(status: int) -> SkipReason | None:
    return None if status == 200 else SkipReason.STATUS


def _navigation_skip(request: _Headers) -> SkipReason | None:
    purposes = request.tokens("sec-purpose") + request.tokens("purpose")
    purposes += request.tokens("x-purpose") + request.tokens("x-moz")
    if any(p.startswith(("prefetch", "prerender", "preview")) for p in purposes):
        return SkipReason.PREFETCH
    destination = request.get("sec-fetch-dest")
    if destination is not None:
        is_document = destination.strip().lower() == "document"
        return None if is_document else SkipReason.NOT_DOCUMENT
    # Older clients: only what a browser sends when it navigates.
    mode = request.get("sec-fetch-mode")
    if mode is not None and mode.strip().lower() != "navigate":
        return SkipReason.NOT_DOCUMENT
    if request.get("x-requested-with") is not None:
        return SkipReason.NOT_DOCUMENT
    if "text/html" not in request.tokens("accept"):
        return SkipReason.NOT_DOCUMENT
    if _cross_site_referer(request):
        return SkipReason.NOT_DOCUMENT
    return None


def _cross_site_referer(request: _Headers) -> bool:
    """Whether the Referer names another site than the request's Host.

    Browsers send no Sec-Fetch-* headers to plain-http origins, and a frame's navigation
    accepts text/html like a top-level one; what still tells an embedded page apart is a
    Referer from the embedding site. A top-level visit from a link on another site looks
    the same and is passed over too: the next page on the site carries the notice. "Site"
    is the registrable domain, by the Public Suffix List (`policy.hosts.site_of`).
    """
    referer, host = request.get("referer"), request.get("host")
    if not referer or not host:
        return False
    referer_host = referer.partition("://")[2].partition("/")[0].rpartition("@")[2]
    return site_of(referer_host) != site_of(host)


def _content_skip(response: _Headers) -> SkipReason | None:
    essence, charset = media_type(response.get("content-type"))
    if essence == "application/xhtml+xml":
        return SkipReason.XHTML
    if essence == "text/event-stream":
        return SkipReason.EVENT_STREAM
    if essence != "text/html":
        return SkipReason.NOT_HTML
    if charset is not None and not _ascii_compatible(charset):
        return SkipReason.CHARSET
    if response.tokens("content-disposition")[:1] == ["attachment"]:
        return SkipReason.ATTACHMENT
    return None


def _transfer_skip(
    response: _Headers, max_bytes: int, respect_no_transform: bool
) -> SkipReason | None:
    if respect_no_transform and "no-transform" in response.tokens("cache-control"):
        return SkipReason.NO_TRANSFORM
    if is_redirect_refresh(response.get("refresh")):
        return SkipReason.REFRESH
    encodings = response.tokens("content-encoding")
    if len(encodings) > 1 or not set(encodings) <= SUPPORTED_CONTENT_ENCODINGS:
        return SkipReason.ENCODING
    lengths = [t for t in response.tokens("content-length") if t.isdigit()]
    if any(len(length) > 18 or int(length) > max_bytes for length in lengths):
        return SkipReason.TOO_LARGE
    return None


_REFRESH_DELAY = re.compile(r"[\t\n\f\r ]*(\d*)(\.?)")


def is_redirect_refresh(value: str | None) -> bool:
    """A Refresh (header or meta) that leaves the page within seconds ("0; url=...")."""
    delay = _REFRESH_DELAY.match(value or "")
    if delay is None or not (delay.group(1) or delay.group(2)):
        return False  # not a refresh at all
    seconds = delay.group(1).lstrip("0")
    return len(seconds) < 4 and int(seconds or "0") <= REDIRECT_REFRESH_SECONDS


def media_type(value: str | None) -> tuple[str | None, str | None]:
    """(essence, charset) of a Content-Type; the last valid one when several were sent."""
    essence: str | None = None
    charset: str | None = None
    for item in (value or "").split(","):
        kind, _, parameters = item.partition(";")
        kind = kind.strip().lower()
        if kind.count("/") != 1 or not all(kind.split("/")) or kind == "*/*":
            continue
        if kind != essence:
            charset = None
        essence = kind
        for parameter in parameters.split(";"):
            key, _, val = parameter.partition("=")
            if key.strip().lower() == "charset":
                charset = val.strip().strip("\"'").strip() or charset
    return essence, charset


# ---------------------------------------------------------------------------------------
# Charset


_UTF8_BOM = b"\xef\xbb\xbf"  # overrides any declared charset
_UTF16_BOMS = (b"\xfe\xff", b"\xff\xfe")  # also the start of UTF-32LE's
# Labels (WHATWG and common others) of charsets where an ASCII byte can be part of
# another character: UTF-16/32, UTF-7, and the stateful ISO-2022 and HZ encodings.
_NOT_ASCII_COMPATIBLE = re.compile(
    r"utf-?(?:16|32)(?:-?[lb]e)?|utf-?7|ucs-?[24]|unicode(?:feff|fffe)?|csunicode"
    r"|iso-10646-ucs-[24]|iso-?2022-[a-z0-9-]+|csiso2022(?:jp|kr)|hz-gb-2312|replacement"
)
_META_CHARSET = re.compile(
    rb"""<meta[^>]*?charset[\t\n\f\r ]*=[\t\n\f\r ]*["']?([^\t\n\f\r "';>/]+)""", re.I
)
PRESCAN_BYTES = 1024  # what browsers' meta prescan reads


def charset_ok(content_type_header: str | None, body_head: bytes) -> bool:
    """Whether ASCII bytes inserted at a tag boundary will read as ASCII.

    Skips UTF-16/32 declared by BOM, header or `<meta charset>` (browsers would read a meta
    UTF-16 declaration as UTF-8, but such a page is confused: skipping costs one page), and
    bodies with NUL bytes near the start (UTF-16/32 without a BOM, or not text at all).
    """
    head = body_head[:PRESCAN_BYTES]
    if head.startswith(_UTF8_BOM):
        return True
    if head.startswith(_UTF16_BOMS) or b"\x00" in head:
        return False
    declared = media_type(content_type_header)[1]
    if declared is not None and not _ascii_compatible(declared):
        return False
    meta = _META_CHARSET.search(head)
    return meta is None or _ascii_compatible(meta.group(1).decode("latin-1"))


def _ascii_compatible(label: str) -> bool:
    return not _NOT_ASCII_COMPATIBLE.fullmatch(label.strip().lower())
