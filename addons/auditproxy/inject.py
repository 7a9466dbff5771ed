"""Where and how the notice goes into an HTML response: pure bytes in, bytes out.

Every decision is data, so the mitmproxy hook stays thin:

1. `eligibility(...)` on the request and response headers, before the body is read: a
   `SkipReason` (also the `reason` label of `auditproxy_notice_skipped_total`) or None.
2. `inject(body, banner, ...)` on the decoded body (`response.content`, never `.text`,
   which mitmproxy would re-encode as UTF-8): an `InjectResult` or a `SkipReason`. It
   never raises.
3. After a successful injection the hook sets `result.body`, replaces the
   Content-Security-Policy headers with `result.csp_headers` when that is not None, and
   calls `update_headers_after_injection(headers)` (drops ETag and digests, sets
   `Cache-Control: no-store`; mitmproxy recomputes Content-Length when content is set).

Finding the body: a scan with anchored regular expressions and `bytes.find`, never an
HTML parser (about 0.3 ms for a 2 MB page with a 130 KB head, a tenth of what html.parser
needs just to reach its <body>). It follows the HTML tokenizer wherever that matters for
the start of the body: comments, bogus comments and doctypes, quoted attribute values,
the raw-text elements script (with its escape states), style, noscript (scripting on,
as in nearly every browser) and noframes, the RCDATA title and textarea, and templates.
It stops where the tree builder opens the body: after a `<body>` start tag, or, in a
page with no `<body>` tag, before the first token that makes the parser create one
implicitly (text, an element that cannot be in the head, `</body>`, `</html>`).
Inserting there keeps everything the page meant for the head (notably
`<meta http-equiv="Content-Security-Policy">`) in the head. Frameset pages are never
touched.

Charsets: the banner is pure ASCII, and it goes right after a `>` (or before a `<`). It
means the same wherever ASCII bytes always mean ASCII at markup boundaries: UTF-8, every
single-byte charset, and the EUC, Shift_JIS, Big5, GBK and GB18030 family, whose trail
bytes are never `<`, `>`, `"` or `'`. Not so for UTF-16/32, UTF-7 and the stateful
ISO-2022 and HZ encodings: those pages are skipped.

Content-Security-Policy: see `allow_banner_styles`. Meta policies in the head get the same
treatment by rewriting their `content` attribute (and only that attribute); policies in the
body are ignored by browsers and left alone.
"""

from __future__ import annotations

import html
import re
import sys
import zlib
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the backport of PEP 784's module, which mitmproxy 12.3 uses too
    from backports import zstd

from .banner import Banner


class SkipReason(StrEnum):
    """Why a response did not get the notice; the `reason` label of the skip counter."""

    METHOD = "method"  # not GET (HEAD included)
    WEBSOCKET = "websocket"  # an upgrade to WebSocket
    STATUS = "status"  # not 200: 204, 206, 304, redirects, errors
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
    CSP = "csp"  # the page's Content-Security-Policy cannot allow our styles safely
    INTERNAL_ERROR = "internal_error"  # a bug here; the page goes out unchanged


# Content encodings mitmproxy decodes and re-encodes itself (mitmproxy.net.encoding).
SUPPORTED_CONTENT_ENCODINGS: Final = frozenset(
    {"identity", "none", "gzip", "deflate", "br", "zstd"}
)
# Response headers that describe the old body; drop them from a changed response.
STALE_AFTER_INJECTION: Final = ("etag", "content-md5", "digest", "content-digest", "repr-digest")
REDIRECT_REFRESH_SECONDS: Final = 5  # a Refresh this soon means the notice would not be read
MAX_SCAN_STEPS: Final = 10_000  # tokens looked at one by one; bounds hostile heads


# ---------------------------------------------------------------------------------------
# 1. Eligibility, from the headers alone


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
    that itself). Only a GET answered 200 with text/html, for a top-level navigation.
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
    if method != "GET":
        return SkipReason.METHOD
    if "websocket" in request.tokens("upgrade"):
        return SkipReason.WEBSOCKET
    return None


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
    the same and is passed over too: the next page on the site carries the notice.
    "Site" is approximated by the last two labels of the host name.
    """
    referer, host = request.get("referer"), request.get("host")
    if not referer or not host:
        return False
    referer_host = referer.partition("://")[2].partition("/")[0].rpartition("@")[2]
    return _site(referer_host) != _site(host)


def _site(host: str) -> str:
    name = host.strip().lower().rsplit(":", 1)[0] if host.count(":") == 1 else host.lower()
    return ".".join(name.rstrip(".").split(".")[-2:])


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
    if _is_redirect_refresh(response.get("refresh")):
        return SkipReason.REFRESH
    encodings = response.tokens("content-encoding")
    if len(encodings) > 1 or not set(encodings) <= SUPPORTED_CONTENT_ENCODINGS:
        return SkipReason.ENCODING
    lengths = [t for t in response.tokens("content-length") if t.isdigit()]
    if any(len(length) > 18 or int(length) > max_bytes for length in lengths):
        return SkipReason.TOO_LARGE
    return None


_REFRESH_DELAY = re.compile(r"[\t\n\f\r ]*(\d*)(\.?)")


def _is_redirect_refresh(value: str | None) -> bool:
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
# 2. Charset


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
_PRESCAN_BYTES = 1024  # what browsers' meta prescan reads


def charset_ok(content_type_header: str | None, body_head: bytes) -> bool:
    """Whether ASCII bytes inserted at a tag boundary will read as ASCII.

    Skips UTF-16/32 declared by BOM, header or `<meta charset>` (browsers would read a meta
    UTF-16 declaration as UTF-8, but such a page is confused: skipping costs one page), and
    bodies with NUL bytes near the start (UTF-16/32 without a BOM, or not text at all).
    """
    head = body_head[:_PRESCAN_BYTES]
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


# ---------------------------------------------------------------------------------------
# 3. The insertion point


_LEADING_SPACE = re.compile(rb"(?:\xef\xbb\xbf)?[\t\n\f\r ]*")
_NOT_SPACE = re.compile(rb"[^\t\n\f\r ]")
_TAG_NAME = re.compile(rb"[A-Za-z][^\t\n\f\r />]*")
# A tag's attributes as the tokenizer reads them: names may start with = " ' <; values are
# double-quoted, single-quoted (a > inside does not end the tag) or unquoted. Possessive
# quantifiers keep every pattern here linear on hostile input.
_NAME_END = rb"(?=[\t\n\f\r />])"
_VALUE = rb"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+("[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+))?+"""
_ATTRIBUTE_NAME = rb"[^\t\n\f\r />][^\t\n\f\r />=]*+"
_ATTRIBUTES = rb"(?:[\t\n\f\r /]++|" + _ATTRIBUTE_NAME + _VALUE + rb")*+"
_TAG_REST = re.compile(_ATTRIBUTES + b">")
_ATTRIBUTE = re.compile(b"(" + _ATTRIBUTE_NAME + b")" + _VALUE)
_COMMENT_END = re.compile(rb"--!?>")


def _raw_text_element(name: bytes, content: bytes) -> bytes:
    return (
        b"<(?i:"
        + name
        + b")"
        + _NAME_END
        + _ATTRIBUTES
        + b">"
        + content
        + b"</(?i:"
        + name
        + b")"
        + _NAME_END
        + _ATTRIBUTES
        + b">"
    )


def _text_until_end_tag(name: bytes, *, stop: bytes = b"") -> bytes:
    return b"(?:[^<]++|<(?!" + stop + b"/(?i:" + name + b")" + _NAME_END + b"))*+"


# Runs of head tokens that can neither open the body nor matter to us, consumed by one
# regex match in C (the scan's fast path; _token() handles everything else one by one):
# space, comments, doctypes, head elements other than <meta http-equiv> and <template>,
# whole raw text elements (scripts only without "<!--", whose escape states _token()
# follows), end tags other than </body>, </html>, </br>.
_SKIPPABLE = re.compile(
    b"(?:"
    + b"|".join(
        [
            rb"[\t\n\f\r ]++",
            rb"<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)",
            rb"<!(?!--)[^>]*+>|<\?[^>]*+>",
            rb"<(?i:html|head|link|base|basefont|bgsound)" + _NAME_END + _ATTRIBUTES + b">",
            rb"<(?i:meta)"
            + _NAME_END
            + rb"(?:[\t\n\f\r /]++|(?!(?i:http-equiv)(?:[\t\n\f\r />=]|\Z))"
            + _ATTRIBUTE_NAME
            + _VALUE
            + rb")*+>",
            _raw_text_element(b"script", _text_until_end_tag(b"script", stop=b"!--|")),
            *(
                _raw_text_element(name, _text_until_end_tag(name))
                for name in (b"style", b"title", b"noscript", b"noframes")
            ),
            rb"</(?!(?i:body|html|br)"
            + _NAME_END
            + rb")[A-Za-z][^\t\n\f\r />]*+"
            + _ATTRIBUTES
            + b">",
        ]
    )
    + b")*+"
)
# Elements the parser keeps in (or moves back to) the head: before the body, any other
# start tag makes the parser open the body implicitly.
_HEAD_ELEMENTS = frozenset(
    {b"html", b"head", b"base", b"basefont", b"bgsound", b"link", b"meta", b"title"}
    | {b"noscript", b"noframes", b"style", b"script", b"template"}
)
_BODY_OPENING_END_TAGS = frozenset({b"body", b"html", b"br"})
# Elements whose content is text up to their end tag (raw text and RCDATA; script aside).
_RAW_TEXT = frozenset(b"style xmp iframe noembed noframes noscript title textarea".split())


def _case_insensitive(name: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else bytes([c]) for c in name)


def _end_tag_pattern(name: bytes) -> re.Pattern[bytes]:
    # A literal "</" prefix lets the regex engine skip ahead fast.
    return re.compile(b"</" + _case_insensitive(name) + rb"[\t\n\f\r />]")


_END_TAG = {name: _end_tag_pattern(name) for name in (*_RAW_TEXT, b"script")}
_SCRIPT_START = re.compile(b"<" + _case_insensitive(b"script") + rb"[\t\n\f\r />]")
_FRAMESET = re.compile(rb"<frameset[\t\n\f\r />]", re.I)


@dataclass(frozen=True, slots=True)
class _MetaPolicy:
    """A `<meta http-equiv="Content-Security-Policy">` in the head."""

    start: int  # the content attribute's value, quotes included
    end: int
    policy: str | None  # its text; None when it cannot be read and rewritten safely


@dataclass(slots=True)
class _Head:
    """What the scan learnt before the insertion point."""

    offset: int = -1
    policies: list[_MetaPolicy] = field(default_factory=list)
    refresh: bool = False


def find_insertion_point(body: bytes) -> int | None:
    """Byte offset where the notice goes: the top of the body. None when there is none."""
    head = _scan(body)
    return None if isinstance(head, SkipReason) else head.offset


def _scan(doc: bytes) -> _Head | SkipReason:
    """Tokenize up to the start of the body; see the module docstring.

    `_SKIPPABLE` consumes runs of ordinary head tokens in C; `_token()` then deals with the
    one token that stopped it (tests check both paths agree on any input)."""
    head = _Head()
    pos = _match_end(_LEADING_SPACE, doc, 0)
    if not doc.startswith(b"<", pos):
        return SkipReason.NO_INSERTION_POINT  # does not look like HTML
    templates = 0  # open <template> elements: their content is not the page's
    for _ in range(MAX_SCAN_STEPS):
        if templates == 0:
            pos = _match_end(_SKIPPABLE, doc, pos)
        lt = doc.find(b"<", pos)
        text_end = len(doc) if lt < 0 else lt
        text = _NOT_SPACE.search(doc, pos, text_end) if templates == 0 else None
        if text is not None:
            return _implicit_body(doc, head, text.start())  # text opens the body
        if lt < 0:
            return _implicit_body(doc, head, len(doc)) if templates == 0 else _NONE
        step = _token(doc, lt, head, templates)
        if isinstance(step, _Stop):
            return step.result
        pos, templates = step
    return SkipReason.NO_INSERTION_POINT


_NONE = SkipReason.NO_INSERTION_POINT


def _match_end(pattern: re.Pattern[bytes], doc: bytes, pos: int) -> int:
    """Where a pattern that may match nothing stops matching."""
    match = pattern.match(doc, pos)
    return pos if match is None else match.end()


@dataclass(frozen=True, slots=True)
class _Stop:
    result: _Head | SkipReason


def _token(doc: bytes, lt: int, head: _Head, templates: int) -> tuple[int, int] | _Stop:
    """Consume the markup at `lt`: (next position, open templates), or where to stop."""
    if doc.startswith(b"!--", lt + 1):
        end = _comment_end(doc, lt + 4)
    elif doc.startswith((b"!", b"?"), lt + 1):  # doctype, CDATA outside SVG, bogus comment
        end = _after(doc, b">", lt + 2)
    elif doc.startswith(b"/", lt + 1):
        return _end_tag(doc, lt, head, templates)
    elif name := _TAG_NAME.match(doc, lt + 1):
        return _start_tag(doc, lt, name, head, templates)
    elif templates == 0:
        return _Stop(_implicit_body(doc, head, lt))  # a "<" that is text opens the body
    else:
        end = lt + 1
    return _Stop(_NONE) if end is None else (end, templates)


def _start_tag(
    doc: bytes, lt: int, name_match: re.Match[bytes], head: _Head, templates: int
) -> tuple[int, int] | _Stop:
    rest = _TAG_REST.match(doc, name_match.end())
    if rest is None:
        return _Stop(_NONE)  # the tag never ends
    name, end = name_match.group().lower(), rest.end()
    if templates == 0:
        if name == b"body":
            head.offset = end
            return _Stop(head)
        if name == b"frameset":
            return _Stop(SkipReason.FRAMESET)
        if name not in _HEAD_ELEMENTS:
            return _Stop(_implicit_body(doc, head, lt))
        if name == b"meta":
            _note_meta(doc, name_match.end(), end, head)
    if name == b"template":
        templates += 1
    content_end = _content_end(doc, name, end)
    return _Stop(_NONE) if content_end is None else (content_end, templates)


def _end_tag(doc: bytes, lt: int, head: _Head, templates: int) -> tuple[int, int] | _Stop:
    name_match = _TAG_NAME.match(doc, lt + 2)
    if name_match is None:  # "</>" is dropped; "</3" and the like are bogus comments
        end = _after(doc, b">", lt + 2)
        return _Stop(_NONE) if end is None else (end, templates)
    rest = _TAG_REST.match(doc, name_match.end())
    if rest is None:
        return _Stop(_NONE)
    name = name_match.group().lower()
    if templates == 0 and name in _BODY_OPENING_END_TAGS:
        return _Stop(_implicit_body(doc, head, lt))
    if name == b"template" and templates > 0:
        templates -= 1
    return rest.end(), templates


def _implicit_body(doc: bytes, head: _Head, offset: int) -> _Head | SkipReason:
    """The parser opens the body here. A later <frameset> would still replace such a body;
    our notice's text would stop that, so such pages are left alone."""
    if _FRAMESET.search(doc, offset):
        return SkipReason.FRAMESET
    head.offset = offset
    return head


def _after(doc: bytes, needle: bytes, start: int) -> int | None:
    found = doc.find(needle, start)
    return None if found < 0 else found + len(needle)


def _comment_end(doc: bytes, start: int) -> int | None:
    """End of a comment whose "<!--" ends at `start` ("<!-->" and "<!--->" are complete)."""
    if doc.startswith(b">", start):
        return start + 1
    if doc.startswith(b"->", start):
        return start + 2
    found = _COMMENT_END.search(doc, start)
    return None if found is None else found.end()


def _content_end(doc: bytes, name: bytes, start: int) -> int | None:
    """Where markup resumes after a start tag: past the text of raw text elements."""
    if name == b"script":
        close = _script_end(doc, start)
    elif name in _RAW_TEXT:
        found = _END_TAG[name].search(doc, start)
        close = None if found is None else found.start()
    elif name == b"plaintext":
        close = None  # the rest of the document is text
    else:
        return start
    return close  # the end tag itself is then read as markup


def _script_end(doc: bytes, pos: int) -> int | None:
    """Start of the `</script` that ends a script. Follows the tokenizer's escape states:
    after "<!--", a "<script" makes the next "</script" close only that inner one, until
    "-->"."""
    state = "data"  # or "escaped" (after "<!--"), "double" (after "<!--" and "<script")
    while True:
        close = _END_TAG[b"script"].search(doc, pos)
        close_at = len(doc) if close is None else close.start()
        if state == "data":
            opener = doc.find(b"<!--", pos, close_at)
            if opener < 0:
                return None if close is None else close_at
            state, pos = "escaped", opener + 2  # "<!-->" ends at once: "--" counts for "-->"
            continue
        exit_at = doc.find(b"-->", pos, close_at)
        limit = close_at if exit_at < 0 else exit_at
        inner = _SCRIPT_START.search(doc, pos, limit) if state == "escaped" else None
        if inner is not None:
            state, pos = "double", inner.end()
        elif exit_at >= 0:
            state, pos = "data", exit_at + 3
        elif close is None:
            return None
        elif state == "escaped":
            return close_at
        else:
            state, pos = "escaped", close.end()


def _note_meta(doc: bytes, attributes_start: int, tag_end: int, head: _Head) -> None:
    attributes = _attributes(doc, attributes_start, tag_end - 1)
    equiv = attributes.get(b"http-equiv")
    content = attributes.get(b"content")
    if equiv is None or content is None:
        return
    kind = (_attribute_text(doc, *equiv) or "").lower()
    text = _attribute_text(doc, *content)
    if kind == "content-security-policy":
        head.policies.append(_MetaPolicy(content[0], content[1], text))
    elif kind == "refresh":
        head.refresh = head.refresh or _is_redirect_refresh(text)


def _attributes(doc: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """Each attribute's value span (quotes included); the first of duplicates wins."""
    found: dict[bytes, tuple[int, int]] = {}
    for match in _ATTRIBUTE.finditer(doc, start, end):
        name = match.group(1).lower()
        if name not in found:
            span = match.span(2) if match.group(2) is not None else (match.end(), match.end())
            found[name] = span
    return found


_BARE_AMPERSAND = re.compile(r"&(?![A-Za-z][A-Za-z0-9]*;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)")


def _attribute_text(doc: bytes, start: int, end: int) -> str | None:
    """An attribute value as text; None when character references make it ambiguous."""
    raw = doc[start:end]
    if raw[:1] in (b'"', b"'") and len(raw) >= 2:
        raw = raw[1:-1]
    text = raw.decode("latin-1")
    if "&" in text:
        if _BARE_AMPERSAND.search(text):
            return None  # legacy references without ";" depend on context
        text = html.unescape(text)
    return text


# ---------------------------------------------------------------------------------------
# 4. Content-Security-Policy


_ELEMENT_DIRECTIVES = ("style-src-elem", "style-src", "default-src")  # govern <style>
_ATTRIBUTE_DIRECTIVES = ("style-src-attr", "style-src", "default-src")  # govern style=""
_HASH_OR_NONCE = ("'nonce-", "'sha256-", "'sha384-", "'sha512-")
_CSP_SPACE = re.compile(r"[\t\n\f\r ]+")
_EDITABLE = re.compile(r"[\t\x20-\x7e]*")


@dataclass(frozen=True, slots=True)
class CspResult:
    """What the page's policies allow for the notice, and the headers that allow it.

    If `styles_allowed` is False, `headers` are the originals: nothing is changed for a
    notice that could not be styled anyway. The caller then either inserts the unstyled
    variant (`Banner.markup(style_element=False)`, a plain `<details>`, readable and
    dismissable) or skips with `SkipReason.CSP`.
    """

    headers: tuple[str, ...]  # the Content-Security-Policy values to send, in order
    changed: bool
    styles_allowed: bool  # our <style> element applies under every enforced policy
    style_attributes_allowed: bool  # style="" applies (the light-DOM copy's pins)


@dataclass(frozen=True, slots=True)
class _Directive:
    name: str  # lower case
    written: str  # as the page wrote it
    sources: tuple[str, ...]
    start: int  # the directive's text in the policy
    end: int


@dataclass(frozen=True, slots=True)
class _PolicyOutcome:
    text: str
    styles_allowed: bool
    style_attributes_allowed: bool


def allow_banner_styles(csp_headers: Sequence[str], style_hash: str) -> CspResult:
    """Let our `<style>` (whose CSP hash source is `style_hash`) apply under every policy.

    Each header may hold several comma-separated policies, each enforced on its own. Per
    policy, the directive that governs `<style>` is the first of style-src-elem, style-src,
    default-src; none means unrestricted. If it allows all inline styles ('unsafe-inline'
    and no nonce or hash), nothing is added: a hash would switch 'unsafe-inline' off and
    break the page. Otherwise our hash is added to it ('none' is replaced); if it is
    default-src, a new style-src-elem copying default-src's sources plus our hash is added,
    which leaves every other kind of resource as it was. Nothing is ever removed or
    loosened beyond allowing this one stylesheet. Report-Only headers are not passed here.

    `sandbox` does not affect styles and the notice needs nothing it restricts (no script,
    no form, no popup); trusted types concern script sinks only: both are left alone.
    """
    outcomes = [[_allow_in_policy(p, style_hash) for p in h.split(",")] for h in csp_headers]
    styles_allowed = all(o.styles_allowed for policies in outcomes for o in policies)
    attributes_allowed = all(o.style_attributes_allowed for ps in outcomes for o in ps)
    headers = tuple(csp_headers)
    if styles_allowed:
        headers = tuple(",".join(o.text for o in policies) for policies in outcomes)
    return CspResult(headers, headers != tuple(csp_headers), styles_allowed, attributes_allowed)


def _allow_in_policy(policy: str, source: str) -> _PolicyOutcome:
    directives = _directives(policy)
    governing = _governing(directives, _ELEMENT_DIRECTIVES)
    if governing is None or _allows_inline(governing.sources) or source in governing.sources:
        return _PolicyOutcome(policy, True, _attributes_allowed(directives))
    if not _EDITABLE.fullmatch(policy):
        return _PolicyOutcome(policy, False, _attributes_allowed(directives))
    sources = " ".join([s for s in governing.sources if s.lower() != "'none'"] + [source])
    if governing.name == "default-src":
        new = _append_directive(policy, f"style-src-elem {sources}")
    else:
        new = _replace_directive(policy, governing, f"{governing.written} {sources}")
    return _PolicyOutcome(new, True, _attributes_allowed(_directives(new)))


def _directives(policy: str) -> dict[str, _Directive]:
    """The policy's directives as browsers parse them: the first of duplicates counts."""
    found: dict[str, _Directive] = {}
    pos = 0
    for token in policy.split(";"):
        start, pos = pos, pos + len(token) + 1
        words = _CSP_SPACE.split(token.strip("\t\n\f\r "))
        if words[0] and words[0].lower() not in found:
            name = words[0].lower()
            found[name] = _Directive(name, words[0], tuple(words[1:]), start, start + len(token))
    return found


def _governing(directives: dict[str, _Directive], chain: tuple[str, ...]) -> _Directive | None:
    return next((directives[name] for name in chain if name in directives), None)


def _allows_inline(sources: tuple[str, ...]) -> bool:
    lowered = [s.lower() for s in sources]
    return "'unsafe-inline'" in lowered and not any(s.startswith(_HASH_OR_NONCE) for s in lowered)


def _attributes_allowed(directives: dict[str, _Directive]) -> bool:
    governing = _governing(directives, _ATTRIBUTE_DIRECTIVES)
    return governing is None or _allows_inline(governing.sources)


def _append_directive(policy: str, directive: str) -> str:
    base = policy.rstrip("\t\n\f\r ")
    return f"{base}{' ' if base.endswith(';') else '; '}{directive}"


def _replace_directive(policy: str, directive: _Directive, text: str) -> str:
    token = policy[directive.start : directive.end]
    leading = token[: len(token) - len(token.lstrip("\t\n\f\r "))]
    trailing = token[len(token.rstrip("\t\n\f\r ")) :]
    return f"{policy[: directive.start]}{leading}{text}{trailing}{policy[directive.end :]}"


# ---------------------------------------------------------------------------------------
# 5 and 6. Putting it together


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to the original body: `old` at `start` became `new`."""

    start: int
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class InjectResult:
    body: bytes
    csp_headers: tuple[str, ...] | None  # new Content-Security-Policy values; None: unchanged
    styled: bool  # False: the unstyled variant went in (a CSP blocks our <style>)
    offset: int  # where the notice starts, in the original body
    edits: tuple[Edit, ...]  # every change, in offsets of the original body, in order


def inject(
    body: bytes,
    banner: Banner,
    *,
    content_type: str | None = None,
    csp_headers: Sequence[str] = (),
    unstyled_ok: bool = True,
    max_bytes: int | None = None,
) -> InjectResult | SkipReason:
    """Insert `banner` at the top of the page's body. Never raises.

    `content_type` is the response's Content-Type header (for its charset), `csp_headers`
    the enforced Content-Security-Policy header values. When a policy cannot allow our
    styles, the unstyled notice goes in if `unstyled_ok`, else the result is
    `SkipReason.CSP`. Every byte of the page is kept: only the notice is inserted and
    head meta policies may gain our style hash (see `InjectResult.edits`).
    """
    try:
        return _inject(body, banner, content_type, csp_headers, unstyled_ok, max_bytes)
    except Exception:  # fail open: the page goes out as it came; the metric shows the bug
        return SkipReason.INTERNAL_ERROR


def _inject(
    body: bytes,
    banner: Banner,
    content_type: str | None,
    csp_headers: Sequence[str],
    unstyled_ok: bool,
    max_bytes: int | None,
) -> InjectResult | SkipReason:
    if max_bytes is not None and len(body) > max_bytes:
        return SkipReason.TOO_LARGE
    if not charset_ok(content_type, body[:_PRESCAN_BYTES]):
        return SkipReason.CHARSET
    head = _scan(body)
    if isinstance(head, SkipReason):
        return head
    if head.refresh:
        return SkipReason.REFRESH
    header_csp = allow_banner_styles(csp_headers, banner.style_hash)
    meta_edits, meta_styles, meta_attributes = _allow_in_meta_policies(
        body, head.policies, banner.style_hash
    )
    styled = header_csp.styles_allowed and meta_styles
    if not styled and not unstyled_ok:
        return SkipReason.CSP
    attributes = header_csp.style_attributes_allowed and meta_attributes
    notice = banner.markup(style_element=styled, style_attributes=attributes)
    edits = (*(meta_edits if styled else ()), Edit(head.offset, b"", notice))
    return InjectResult(
        body=_apply(body, edits),
        csp_headers=header_csp.headers if styled and header_csp.changed else None,
        styled=styled,
        offset=head.offset,
        edits=edits,
    )


def _allow_in_meta_policies(
    doc: bytes, policies: list[_MetaPolicy], source: str
) -> tuple[list[Edit], bool, bool]:
    """Rewrite head meta policies' content attributes to allow our style, where needed.

    Returns the edits, whether styles are allowed and whether style attributes are."""
    edits: list[Edit] = []
    styles_allowed = attributes_allowed = True
    for meta in policies:
        if meta.policy is None:  # unreadable: assume it blocks
            styles_allowed = attributes_allowed = False
            continue
        outcome = _allow_in_policy(meta.policy, source)  # one policy: commas are not special
        styles_allowed &= outcome.styles_allowed
        attributes_allowed &= outcome.style_attributes_allowed
        if outcome.text != meta.policy:
            value = outcome.text.replace("&", "&amp;").replace('"', "&quot;")
            edits.append(Edit(meta.start, doc[meta.start : meta.end], f'"{value}"'.encode()))
    return edits, styles_allowed, attributes_allowed


def _apply(doc: bytes, edits: Sequence[Edit]) -> bytes:
    pieces: list[bytes] = []
    pos = 0
    for edit in edits:
        pieces += (doc[pos : edit.start], edit.new)
        pos = edit.start + len(edit.old)
    pieces.append(doc[pos:])
    return b"".join(pieces)


# ---------------------------------------------------------------------------------------
# 7. Headers of a changed response


# ---------------------------------------------------------------------------------------
# Decoding the body: strict and bounded


def decode_body(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes | SkipReason:
    """The page's decoded bytes, or why it cannot be used.

    Stricter than mitmproxy's own decoders, which return what they can of a damaged body
    without complaint: a truncated gzip or zstd stream, trailing garbage, or a broken
    Brotli stream is `decode_error` (the page goes out as it came; re-encoding a partial
    page would send the client less than the origin did). Every member of a multi-member
    gzip and every frame of a multi-frame zstd body is decoded, as browsers do. Output is
    bounded: a body that decodes to more than `max_bytes` is `too_large`, before it fills
    memory (a compression bomb costs at most a little over `max_bytes`).
    """
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding in ("", "identity", "none"):
            return raw if len(raw) <= max_bytes else SkipReason.TOO_LARGE
        if encoding in ("gzip", "x-gzip"):
            return _members(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), max_bytes)
        if encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            wrapped = raw[:1] and (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2]) % 31 == 0
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            return _members(raw, lambda: zlib.decompressobj(bits), max_bytes, once=True)
        if encoding == "br":
            return _brotli(raw, max_bytes)
        if encoding == "zstd":
            return _zstd_frames(raw, max_bytes)
    except (zlib.error, brotli.error, zstd.ZstdError):
        return SkipReason.DECODE_ERROR
    return SkipReason.ENCODING


def _members(
    raw: bytes, make: Callable[[], zlib._Decompress], max_bytes: int, *, once: bool = False
) -> bytes | SkipReason:
    out = bytearray()
    data = raw
    while True:
        decoder = make()
        out += decoder.decompress(data, max_bytes + 1 - len(out))
        if decoder.unconsumed_tail or len(out) > max_bytes:
            return SkipReason.TOO_LARGE
        if not decoder.eof:
            return SkipReason.DECODE_ERROR  # truncated
        data = decoder.unused_data
        if not data:
            return bytes(out)
        if once:
            return SkipReason.DECODE_ERROR  # trailing garbage after the stream


def _zstd_frames(raw: bytes, max_bytes: int) -> bytes | SkipReason:
    """Every frame in turn (skippable ones too), each sliced out of one memoryview by its
    size from the frame header: no copy of the rest per frame, and each decompress call
    stops at the output bound itself rather than after it."""
    out = bytearray()
    view = memoryview(raw)
    offset = 0
    while offset < len(view):
        size = zstd.get_frame_size(view[offset:])  # ZstdError: truncated or not zstd
        decoder = zstd.ZstdDecompressor()
        out += decoder.decompress(view[offset : offset + size], max_bytes + 1 - len(out))
        while not decoder.eof:
            if len(out) > max_bytes:
                return SkipReason.TOO_LARGE
            if decoder.needs_input:
                return SkipReason.DECODE_ERROR  # truncated
            out += decoder.decompress(b"", max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            return SkipReason.TOO_LARGE
        offset += size
    return bytes(out)


def _brotli(raw: bytes, max_bytes: int) -> bytes | SkipReason:
    decoder = brotli.Decompressor()
    out = decoder.process(raw, output_buffer_limit=max_bytes + 1)
    if len(out) > max_bytes:
        return SkipReason.TOO_LARGE
    return bytes(out) if decoder.is_finished() else SkipReason.DECODE_ERROR


def update_headers_after_injection(headers: MutableMapping[str, str]) -> None:
    """Drop what described the old body and keep the changed page out of every cache.

    Content-Length is not touched: mitmproxy sets it when the content is set.
    """
    stale = [name for name in headers if name.lower() in STALE_AFTER_INJECTION]
    for name in stale:
        del headers[name]
    existing = [name for name in headers if name.lower() == "cache-control"]
    for name in existing:
        del headers[name]
    headers["Cache-Control"] = "no-store"
