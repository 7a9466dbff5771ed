"""Where and how the notice goes into a response: eligibility, charset, insertion point,
Content-Security-Policy, and the guarantee that the page's own bytes are never damaged.

Speed is measured, not asserted (timing targets belong in bench/). On the 2 MB page from
`big_page()` (a 129 KB head of 450 inline scripts, styles and links, then a long body),
best of 7 on this project's 2-core machine, Python 3.12:

    find_insertion_point                        0.21 ms
    inject (scan, CSP header, 2 MB copy)        0.34 ms
    html.parser, stopping at <body>             3.4 ms   (_reference_parse_offset: 16x)
    html.parser, whole page                   570 ms

Measured from the repository root with:

    python -c 'import sys, timeit; sys.path.insert(0, "tests"); import test_inject as t
    from auditproxy.inject import find_insertion_point as f, inject
    p, b = t.big_page(), t.notice(); best = lambda g, n: min(timeit.repeat(g, number=n,
    repeat=7)) / n * 1000; print(best(lambda: f(p), 200),
    best(lambda: inject(p, b, csp_headers=["default-src self"]), 200),
    best(lambda: t._reference_parse_offset(p), 20))'
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import zlib
from html.parser import HTMLParser
from pathlib import Path
from unittest.mock import patch

import brotli
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mitmproxy.http import Headers

from auditproxy import inject as inject_module
from auditproxy.banner import NOTICE_ID, Banner, render_banner
from auditproxy.inject import (
    STALE_AFTER_INJECTION,
    CspResult,
    InjectResult,
    SkipReason,
    allow_banner_styles,
    charset_ok,
    decode_body,
    eligibility,
    find_insertion_point,
    inject,
    media_type,
    update_headers_after_injection,
)
from auditproxy.policy import load_policy
from support import zstd
from support.notice import undo

REPO = Path(__file__).resolve().parents[1]
PAGES = REPO / "tests" / "fixtures" / "pages"
MAX = 5_000_000
MARK = b"^^"  # where a test expects the notice


def notice() -> Banner:
    texts = load_policy(REPO / "policy" / "department.yaml").notice.ordered_texts()
    return render_banner(texts, ack_url="/.well-known/auditproxy/ack?t=signed")


BANNER = notice()
HASH = BANNER.style_hash


def marked(doc: bytes) -> tuple[bytes, int]:
    assert doc.count(MARK) == 1
    return doc.replace(MARK, b""), doc.index(MARK)


def check_only_additions(original: bytes, result: InjectResult) -> None:
    """The notice went in once, whole; everything else is the page's own bytes."""
    assert undo(result) == original
    *meta_edits, insertion = result.edits
    assert insertion.old == b"" and insertion.start == result.offset
    assert insertion.new.startswith(f'<div id="{NOTICE_ID}"'.encode())
    assert insertion.new in {
        BANNER.html,
        BANNER.markup(style_attributes=False),
        BANNER.markup(style_element=False),
    }
    assert all(e.start < result.offset for e in meta_edits)
    assert all(e.old.count(b"sha256-") < e.new.count(b"sha256-") for e in meta_edits)


# =========================================================================================
# 1. Eligibility

DOCUMENT_REQUEST = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "none",
    "Sec-Fetch-User": "?1",
}
OLD_BROWSER_REQUEST = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
HTML_RESPONSE = {"Content-Type": "text/html; charset=utf-8", "Content-Length": "5120"}


def check(
    method: str = "GET",
    status: int = 200,
    request: dict[str, str] | None = None,
    response: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    **options: bool,
) -> SkipReason | None:
    request_headers = {**DOCUMENT_REQUEST, **(request or {})}
    response_headers = {**HTML_RESPONSE, **(response or {})}
    for name in drop:
        request_headers.pop(name, None)
        response_headers.pop(name, None)
    return eligibility(method, status, request_headers, response_headers, max_bytes=MAX, **options)


def test_a_document_navigation_is_eligible() -> None:
    assert check() is None


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        (dict(method="HEAD"), SkipReason.METHOD),
        (dict(method="POST"), SkipReason.METHOD),
        (dict(method="get"), SkipReason.METHOD),  # methods are case-sensitive
        (dict(status=204), SkipReason.STATUS),
        (dict(status=304), SkipReason.STATUS),
        (dict(status=206), SkipReason.STATUS),
        (dict(status=302), SkipReason.STATUS),
        (dict(status=404), SkipReason.STATUS),
        (dict(status=101, request={"Upgrade": "websocket"}), SkipReason.WEBSOCKET),
        (dict(request={"Connection": "Upgrade", "Upgrade": "WebSocket"}), SkipReason.WEBSOCKET),
        (dict(request={"Sec-Fetch-Dest": "iframe"}), SkipReason.NOT_DOCUMENT),
        (dict(request={"Sec-Fetch-Dest": "frame"}), SkipReason.NOT_DOCUMENT),
        (dict(request={"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"}), "not_document"),
        (dict(request={"Sec-Fetch-Dest": "embed"}), SkipReason.NOT_DOCUMENT),
        (dict(request={"Sec-Fetch-Dest": "DOCUMENT"}), None),
        (dict(request={"Sec-Purpose": "prefetch;prerender"}), SkipReason.PREFETCH),
        (dict(request={"Sec-Purpose": "prefetch"}), SkipReason.PREFETCH),
        (dict(request={"Purpose": "prefetch"}), SkipReason.PREFETCH),
        (dict(request={"X-Moz": "prefetch"}), SkipReason.PREFETCH),
        (dict(response={"Content-Type": "application/xhtml+xml"}), SkipReason.XHTML),
        (dict(response={"Content-Type": "application/json"}), SkipReason.NOT_HTML),
        (dict(response={"Content-Type": "text/plain"}), SkipReason.NOT_HTML),
        (dict(response={"Content-Type": "text/event-stream"}), SkipReason.EVENT_STREAM),
        (dict(drop=("Content-Type",)), SkipReason.NOT_HTML),
        (dict(response={"Content-Type": "TEXT/HTML; Charset=ISO-8859-1"}), None),
        (dict(response={"Content-Type": "text/html;charset=windows-1252"}), None),
        (dict(response={"Content-Type": "text/html; charset=Shift_JIS"}), None),
        (dict(response={"Content-Type": "text/html; charset=utf-16"}), SkipReason.CHARSET),
        (dict(response={"Content-Type": 'text/html; charset="UTF-16LE"'}), SkipReason.CHARSET),
        (dict(response={"Content-Type": "text/html; charset=utf-32"}), SkipReason.CHARSET),
        (dict(response={"Content-Type": "text/html; charset=ISO-2022-JP"}), SkipReason.CHARSET),
        (dict(response={"Content-Disposition": "attachment; filename=a.html"}), "attachment"),
        (dict(response={"Content-Disposition": 'ATTACHMENT; filename="a,b"'}), "attachment"),
        (dict(response={"Content-Disposition": "inline"}), None),
        (dict(response={"Content-Encoding": "gzip"}), None),
        (dict(response={"Content-Encoding": "br"}), None),
        (dict(response={"Content-Encoding": "zstd"}), None),
        (dict(response={"Content-Encoding": "deflate"}), None),
        (dict(response={"Content-Encoding": "identity"}), None),
        (dict(response={"Content-Encoding": "compress"}), SkipReason.ENCODING),
        (dict(response={"Content-Encoding": "x-gzip"}), SkipReason.ENCODING),
        (dict(response={"Content-Encoding": "gzip, br"}), SkipReason.ENCODING),
        (dict(response={"Content-Length": str(MAX + 1)}), SkipReason.TOO_LARGE),
        (dict(response={"Content-Length": str(MAX)}), None),
        (dict(response={"Content-Length": "9" * 5000}), SkipReason.TOO_LARGE),
        (dict(response={"Content-Length": "nonsense"}), None),
        (dict(response={"Cache-Control": "private, no-transform"}), SkipReason.NO_TRANSFORM),
        (dict(response={"Refresh": "0; url=https://example.org/"}), SkipReason.REFRESH),
        (dict(response={"Refresh": "3"}), SkipReason.REFRESH),
        (dict(response={"Refresh": "300"}), None),
        (dict(response={"Refresh": "1" + "0" * 5000}), None),
    ],
    ids=repr,
)
def test_eligibility_matrix(case: dict, expected: str | None) -> None:
    assert check(**case) == expected


@pytest.mark.parametrize(
    ("request_headers", "expected"),
    [
        (OLD_BROWSER_REQUEST, None),
        ({"Accept": "*/*"}, SkipReason.NOT_DOCUMENT),  # curl, fetch() in old browsers
        ({}, SkipReason.NOT_DOCUMENT),
        ({**OLD_BROWSER_REQUEST, "X-Requested-With": "XMLHttpRequest"}, "not_document"),
        ({**OLD_BROWSER_REQUEST, "Sec-Fetch-Mode": "cors"}, SkipReason.NOT_DOCUMENT),
        ({**OLD_BROWSER_REQUEST, "Sec-Fetch-Mode": "navigate"}, None),
        ({"Accept": "application/json, text/plain, */*"}, SkipReason.NOT_DOCUMENT),
        # Plain http: no Sec-Fetch-*; a Referer from another site means an embed.
        (
            {**OLD_BROWSER_REQUEST, "Host": "forum.test", "Referer": "http://news.test/a"},
            SkipReason.NOT_DOCUMENT,
        ),
        (
            {**OLD_BROWSER_REQUEST, "Host": "www.x.com", "Referer": "http://m.x.com:80/b?c"},
            None,
        ),
        ({**OLD_BROWSER_REQUEST, "Host": "x.com", "Referer": "http://x.com/"}, None),
        # With Sec-Fetch-Dest the browser says what it is: a Referer does not matter.
        ({"Sec-Fetch-Dest": "document", "Host": "x.com", "Referer": "https://a.test/"}, None),
    ],
)
def test_old_clients_without_sec_fetch_dest(request_headers: dict, expected: str | None) -> None:
    assert eligibility("GET", 200, request_headers, HTML_RESPONSE, max_bytes=MAX) == expected


def test_no_transform_can_be_overridden() -> None:
    case = {"response": {"Cache-Control": "no-transform"}}
    assert check(**case, respect_no_transform=False) is None


def test_header_names_are_case_insensitive_in_any_mapping() -> None:
    request = {"sec-fetch-dest": "iframe"}
    response = {"CONTENT-TYPE": "text/html"}
    assert eligibility("GET", 200, request, response, max_bytes=MAX) == "not_document"
    assert eligibility("GET", 200, {"SEC-FETCH-DEST": "document"}, response, max_bytes=MAX) is None


def test_mitmproxy_headers_work_as_they_are() -> None:
    request = Headers(sec_fetch_dest="document", accept="text/html")
    response = Headers(content_type="text/html; charset=utf-8", content_encoding="gzip")
    assert eligibility("GET", 200, request, response, max_bytes=MAX) is None
    response.add("Content-Encoding", "br")  # stacked: "gzip, br"
    assert eligibility("GET", 200, request, response, max_bytes=MAX) == "encoding"


def test_skip_reasons_are_metric_label_values() -> None:
    for reason in SkipReason:
        assert re.fullmatch(r"[a-z][a-z_]*", reason.value)
    assert len({r.value for r in SkipReason}) == len(SkipReason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("text/html", ("text/html", None)),
        ("Text/HTML ; charset = 'utf-8'", ("text/html", "utf-8")),
        ('text/html; charset="windows-1252"', ("text/html", "windows-1252")),
        ("text/plain, text/html", ("text/html", None)),  # the last valid one wins
        ("text/html; charset=utf-8, text/html", ("text/html", "utf-8")),
        ("*/*, text/html;charset=utf-16", ("text/html", "utf-16")),
        ("nonsense", (None, None)),
        (None, (None, None)),
    ],
)
def test_media_type(value: str | None, expected: tuple) -> None:
    assert media_type(value) == expected


# =========================================================================================
# 2. Charset


@pytest.mark.parametrize(
    ("content_type", "head", "ok"),
    [
        ("text/html; charset=utf-8", b"<!doctype html>", True),
        ("text/html; charset=windows-1252", b"<html>\xe9\x80\x99", True),
        ("text/html; charset=shift_jis", b"<html>\x83\x5c", True),
        ("text/html; charset=euc-jp", b"<html>", True),
        ("text/html; charset=gb18030", b"<html>", True),
        ("text/html; charset=big5", b"<html>", True),
        ("text/html; charset=utf-16", b"<html>", False),
        ("text/html; charset=UTF-32BE", b"<html>", False),
        ("text/html; charset=utf-7", b"<html>", False),
        ("text/html; charset=hz-gb-2312", b"<html>", False),
        ("text/html", b"\xff\xfe<\x00h\x00t\x00m\x00l\x00", False),  # UTF-16LE BOM
        ("text/html", b"\xfe\xff\x00<\x00h", False),  # UTF-16BE BOM
        ("text/html", b"\xff\xfe\x00\x00<\x00\x00\x00", False),  # UTF-32LE BOM
        ("text/html", b"<\x00h\x00t\x00m\x00l\x00", False),  # UTF-16 without a BOM
        ("text/html", b'<meta charset="utf-16">', False),
        ("text/html", b"<META CHARSET=UTF-16LE>", False),
        (
            "text/html",
            b'<meta http-equiv="Content-Type" content="text/html; charset=utf-16">',
            False,
        ),
        ("text/html", b'<meta charset="windows-1252"><title>caf\xe9</title>', True),
        ("text/html", b"<html><head><title>no declaration</title>", True),
        ("text/html; charset=utf-16", b"\xef\xbb\xbf<html>", True),  # the BOM wins
        (None, b"<html>", True),
    ],
)
def test_charset_ok(content_type: str | None, head: bytes, ok: bool) -> None:
    assert charset_ok(content_type, head) is ok


def test_utf16_pages_are_skipped_by_inject() -> None:
    page = "\ufeff<!doctype html><html><body><p>caf\u00e9</p></body></html>".encode("utf-16")
    assert inject(page, BANNER, content_type="text/html") == SkipReason.CHARSET
    plain = b"<html><body>x</body></html>"
    assert inject(plain, BANNER, content_type="text/html; charset=utf-16") == "charset"


# =========================================================================================
# 3. The insertion point


TRAPS = {
    "plain": b"<!DOCTYPE html><html><head><title>t</title></head><body>^^<p>x</p></body></html>",
    "comment holding <body>": b"<html><head><!-- <body class=x> --></head><body>^^x",
    "conditional comments": (
        b'<html><head></head><!--[if IE]><body class="ie"><![endif]-->'
        b'<!--[if !IE]><!--><body class="ok">^^<!--<![endif]-->x'
    ),
    "abrupt comments": b"<html><!--><!---><head></head><body>^^x",
    "comment closed by --!>": b"<html><!-- <body> --!><body>^^x",
    "script holding <body>": b'<head><script>document.write("<body>")</script></head><body>^^',
    "script holding </head><body> escaped": b'<script>s="<\\/head><body>"</script><body a>^^',
    "script escape states": (
        b"<head><script><!--\ndocument.write('<script src=a></script><body>');\n//--></script>"
        b"</head><body>^^x"
    ),
    "script escaped, ends inside": b"<script><!-- a </script><body>^^-->",
    "SCRIPT in capitals": b"<HEAD><SCRIPT>x='<body>'</SCRIPT ></HEAD><BODY>^^",
    "style holding <body>": b"<style>/* <body> */ body>p{}</style><body>^^",
    "</style followed by a space ends the style": b"<style>p{}</style x>^^q{}</style><body>",
    "title holding <body>": b"<title>a <body> tag</title><body>^^",
    "noscript holding <body> (scripting on)": b"<noscript><body class=nojs></noscript><body>^^",
    "template holding <body>": b"<head><template><div><body></div></template></head><body>^^",
    "textarea in a template": (
        b"<template><textarea></template><body></textarea></template><body>^^"
    ),
    "nested templates": b"<template><template></template><p><body></template><body>^^",
    "attribute holding >": b"<meta content='a > b <body>'><body data-x=\"1>2\" class=y>^^",
    "attribute holding > in the body tag": b'<body onload="if (a > b) go()">^^x',
    "spaces around =": b'<body class = "a>b" >^^',
    "= opening an attribute name": b'<body ="x>^^">',
    "quoted value right after another": b'<body a="1"="x>^^">',
    "upper case": b"<HTML><HEAD></HEAD><BODY BGCOLOR=white>^^<P>",
    "attributes over lines": b"<html>\n<body\n  class=\"home\"\n  data-page='1'\n>^^\n<div>",
    "self-closing body": b"<html><body/>^^x",
    "BOM and doctype": b"\xef\xbb\xbf<!DOCTYPE html>\n<html><head></head><body>^^",
    "xml declaration": b'<?xml version="1.0" encoding="utf-8"?>\n<html><body>^^',
    "leading whitespace": b"\n\n  <!doctype html><body>^^",
    "windows-1252 head": b"<html><head><title>Caf\xe9 \x80 \x99</title></head><body>^^\xe9\xff",
    "body tag merged into an implicit body": b"<html><head></head>^^<div></div><body class=late>",
    "no body: after </head>": b"<html><head><title>t</title></head>\n^^<p>text",
    "no body: head items after </head> stay in the head": (
        b"<html><head></head><meta name=a content=b><link rel=icon href=/f>^^<div>"
    ),
    "no body, no head": b"<!DOCTYPE html>\n<title>x</title>\n^^<h1>Hi</h1>",
    "no body: text opens it": b"<html><head></head>^^Hello",
    "no body: a lone < is text": b"<html>^^< 3",
    "no body: </html> opens it": b"<html><head><title>t</title></head>^^</html>",
    "no body: nothing after the head": b"<html><head><title>t</title></head>^^",
    "not body: bodyguard": b"<head></head>^^<bodyguard></bodyguard><body>",
    "CDATA outside SVG is a bogus comment": b"<html><![CDATA[<body>^^]]><body>",
    "end tag with a quoted >": b"<head></head foo='>'><body>^^",
}


@pytest.mark.parametrize("name", TRAPS)
def test_insertion_point_traps(name: str) -> None:
    page, expected = marked(TRAPS[name])
    assert find_insertion_point(page) == expected


@pytest.mark.parametrize(
    "page",
    [
        b"",
        b"   ",
        b'{"json": true}',
        b"Hello <b>world</b>",
        b"\x89PNG\r\n\x1a\n IHDR",
        b"<html><!-- <body>",  # the comment never ends
        b'<html><body class="x',  # the tag never ends
        b"<html><head><script> <body>",  # the script never ends
        b"<html><head><title>t",  # nor does the title
        b"<html><head><template><body>",  # everything is inside a template
    ],
)
def test_no_safe_insertion_point(page: bytes) -> None:
    assert find_insertion_point(page) is None
    assert inject(page, BANNER) == SkipReason.NO_INSERTION_POINT


@pytest.mark.parametrize(
    "page",
    [
        b"<html><head><title>f</title></head><frameset cols='50%,50%'><frame src=a></frameset>",
        b"<HTML><FRAMESET ROWS=2><FRAME SRC=a></FRAMESET>",
        b"<html><div></div><frameset><frame src=a></frameset>",  # replaces the implicit body
    ],
)
def test_frameset_documents_are_never_touched(page: bytes) -> None:
    assert find_insertion_point(page) is None
    assert inject(page, BANNER) == SkipReason.FRAMESET


def test_frameset_after_a_body_tag_is_ignored_by_browsers_so_we_inject() -> None:
    page, expected = marked(b"<html><body>^^<frameset></frameset>")
    assert find_insertion_point(page) == expected


def test_too_many_tags_before_the_body_is_given_up() -> None:
    page = b"<html><head>" + b"<meta http-equiv=a>" * inject_module.MAX_SCAN_STEPS + b"<body>"
    assert find_insertion_point(page) is None


def test_huge_attribute_values_are_fine() -> None:
    page, expected = marked(b'<html><body data-x="' + b"a>" * 500_000 + b'">^^x')
    assert find_insertion_point(page) == expected
    assert find_insertion_point(b'<html><body data-x="' + b"a" * 1_000_000) is None


def test_windows_1252_bytes_are_preserved_exactly() -> None:
    page = (PAGES / "news_article.html").read_bytes()
    assert any(b >= 0x80 for b in page)
    result = inject(page, BANNER, content_type="text/html; charset=windows-1252")
    assert isinstance(result, InjectResult)
    check_only_additions(page, result)
    assert result.body[: result.offset] == page[: result.offset]
    assert result.body[result.offset + len(BANNER.html) :] == page[result.offset :]


# --- fixtures and the html.parser reference ----------------------------------------------


class _Found(Exception):
    def __init__(self, offset: int):
        self.offset = offset


class _BodyStart(HTMLParser):
    """html.parser's notion of the end of the first <body> start tag."""

    def parse_starttag(self, i: int) -> int:
        end = super().parse_starttag(i)
        if end >= 0 and self.lasttag == "body":
            raise _Found(end)
        return end


def _reference_parse_offset(page: bytes) -> int | None:
    """Offset after the first <body ...> start tag, as html.parser sees it (for comparison:
    html.parser has no implicit body, no RCDATA title, and treats noscript as markup)."""
    parser = _BodyStart(convert_charrefs=False)
    try:
        parser.feed(page.decode("latin-1"))  # one character per byte: offsets match
        parser.close()
    except _Found as found:
        return found.offset
    return None


# The end of each fixture's real <body ...> start tag, found by eye.
FIXTURE_POINTS = {
    "social_feed.html": b"""data-config='{"a":"b>c","d":"<body>"}' dir="ltr">""",
    "news_article.html": b"""onLoad="if (a > b) init()" MARGINWIDTH=0>""",
    "blog_post.html": b"""single-post postid-42 wp-embed-responsive">""",
}


@pytest.mark.parametrize("name", sorted(FIXTURE_POINTS))
def test_fixture_pages(name: str) -> None:
    page = (PAGES / name).read_bytes()
    expected = page.index(FIXTURE_POINTS[name]) + len(FIXTURE_POINTS[name])
    assert find_insertion_point(page) == expected
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult)
    check_only_additions(page, result)


@pytest.mark.parametrize("name", ["social_feed.html", "news_article.html"])
def test_fixture_pages_agree_with_html_parser(name: str) -> None:
    page = (PAGES / name).read_bytes()
    assert find_insertion_point(page) == _reference_parse_offset(page)


def test_html_parser_is_fooled_where_we_are_not() -> None:
    """The template in blog_post.html holds a <body>; html.parser takes it, browsers don't."""
    page = (PAGES / "blog_post.html").read_bytes()
    assert _reference_parse_offset(page) < page.index(b"</template>") < find_insertion_point(page)


def test_page_without_a_body_tag() -> None:
    page = (PAGES / "old_no_body.html").read_bytes()
    assert find_insertion_point(page) == page.index(b"<H1>")


def test_frameset_fixture() -> None:
    page = (PAGES / "frameset.html").read_bytes()
    assert inject(page, BANNER) == SkipReason.FRAMESET


def big_page(size: int = 2_000_000) -> bytes:
    """A 2 MB page shaped like a social site's: a heavy head, then a long body."""
    head = [b"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>Feed</title>"]
    for i in range(150):
        head.append(b'<link rel="preload" href="/static/%d.js" as="script">' % i)
        head.append(
            b'<script>window.__d%d={"k":"<div class=\\"a\\">%s</div>"};</script>' % (i, b"x" * 700)
        )
        head.append(b"<style>.c%d>.d{color:red}/* <body> */</style>" % i)
    head.append(b'</head><body class="feed" data-x="a>b">')
    body = b"<div class=post><p>Hello &amp; welcome</p><span>\xc3\xa9</span></div>\n"
    page = b"".join(head)
    return page + body * ((size - len(page)) // len(body) + 1)


def test_big_page_agrees_with_html_parser() -> None:
    page = big_page()
    assert len(page) >= 2_000_000
    assert find_insertion_point(page) == _reference_parse_offset(page)
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult) and undo(result) == page


# --- generated pages: the same answer as html.parser where html.parser is right ----------

_words = st.text(alphabet="abcdefgh xyz-_.,;:!?0123456789", min_size=0, max_size=12)
_high_bytes = st.binary(min_size=0, max_size=8).map(lambda b: bytes(c | 0x80 for c in b))
_quoted = st.sampled_from(['"a>b"', "'<body>'", '"x"', "'it''s'", '""', "'>'"])
_attribute = st.one_of(
    st.builds(
        lambda n, v: f" {n}={v}", st.sampled_from(["class", "id", "data-x", "lang"]), _quoted
    ),
    st.builds(lambda n: f" {n}", st.sampled_from(["hidden", "async", "defer"])),
    st.just("\n  class=plain"),
)
_attributes = st.lists(_attribute, max_size=3).map("".join)
_head_item = st.one_of(
    st.builds(lambda a: f"<meta{a}>", _attributes),
    st.builds(lambda a: f"<link rel=stylesheet href=/s.css{a}>", _attributes),
    st.builds(lambda w: f"<title>{w}</title>", _words),
    st.builds(lambda w: f"<!-- {w} <body class=c> -->", _words),
    st.just("<!--[if lt IE 9]><body class=ie><![endif]-->"),
    st.builds(lambda w: f'<script>var s = "<body>{w}"; if (a<b) f("</div>");</script>', _words),
    st.builds(
        lambda w: f'<script type=application/json>{{"h":"<\\/script><body>{w}"}}</script>', _words
    ),
    st.builds(lambda w: f"<style>body>p{{x:1}} /* <body> {w} */</style>", _words),
    st.just("<noscript><link rel=stylesheet href=/nojs.css></noscript>"),
    st.sampled_from(["\n", "  ", "\t", "\r\n"]),
    st.sampled_from(
        [
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'self'\">",
            "<meta http-equiv='content-security-policy' content='style-src &#39;none&#39;'>",
            '<meta http-equiv="Content-Security-Policy" content="style-src \'unsafe-inline\'">',
            '<meta http-equiv="Content-Security-Policy" content="img-src *">',
        ]
    ),
)


@st.composite
def html_pages(draw: st.DrawFn) -> bytes:
    parts = [draw(st.sampled_from(["", "\ufeff", "<!DOCTYPE html>\n", "<!doctype html>"]))]
    if draw(st.booleans()):
        parts.append(f"<html{draw(_attributes)}>")
    if draw(st.booleans()):
        parts.append("<head>")
    parts += draw(st.lists(_head_item, max_size=8))
    if draw(st.booleans()):
        parts.append("</head>\n")
    parts.append(f"<{draw(st.sampled_from(['body', 'BODY', 'Body']))}{draw(_attributes)}>")
    page = "".join(parts).encode("utf-8")
    return page + draw(_high_bytes) + b"<p>" + draw(_words).encode() + b"</p></body></html>"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(html_pages())
def test_generated_pages_agree_with_html_parser(page: bytes) -> None:
    assert find_insertion_point(page) == _reference_parse_offset(page)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(html_pages(), st.sampled_from([(), ("default-src 'self'",), ("style-src 'nonce-a'",)]))
def test_removing_the_notice_restores_the_page(page: bytes, csp: tuple[str, ...]) -> None:
    result = inject(page, BANNER, csp_headers=csp)
    assert isinstance(result, InjectResult), result
    check_only_additions(page, result)
    assert result.body.count(b'id="auditproxy-notice"') == page.count(b'id="auditproxy-notice"') + 1


@st.composite
def damaged_pages(draw: st.DrawFn) -> bytes:
    """Generated pages cut, spliced and sprinkled with NULs and stray quotes."""
    page = bytearray(draw(html_pages()))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(page)))
        action = draw(st.sampled_from(["cut", "insert", "truncate"]))
        if action == "cut":
            del page[at : at + draw(st.integers(1, 20))]
        elif action == "insert":
            page[at:at] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b'"',
                        b"'",
                        b"<",
                        b">",
                        b"<!--",
                        b"<script>",
                        b"<template>",
                        b"</",
                        b"=",
                        b"\xff\xfe",
                    ]
                )
            )
        else:
            del page[at:]
    return bytes(page)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(st.binary(max_size=600), damaged_pages()), st.lists(st.text(max_size=40), max_size=2)
)
@example(b"<body>", ["style-src \x00\u00e9"])
@example(b'<html><head><meta http-equiv=content-security-policy content="style-src &x"><body>', [])
def test_never_raises_and_never_damages(page: bytes, csp: list[str]) -> None:
    result = inject(page, BANNER, csp_headers=csp, unstyled_ok=True)
    assert result != SkipReason.INTERNAL_ERROR
    if isinstance(result, InjectResult):
        check_only_additions(page, result)
    else:
        assert isinstance(result, SkipReason)


_tricky_item = st.one_of(
    _head_item,
    st.sampled_from(
        [
            "<script><!-- document.write('<script></script><body>') --></script>",
            "<script><!--<script>--></script>",
            "<script><!-- </script>",
            "<SCRIPT type=module>a<b</SCRIPT >",
            "<template><body><title></template></title></template>",
            "<template><template></template><p></template>",
            "<title><body></title>",
            "<noscript><body></noscript>",
            "<noframes><body></noframes>",
            "<style>a{}</style x>b{}</style>",
            "<!-->",
            "<!--->",
            "<!---->",
            "<!-- --!>",
            "<!-- --->",
            "<!doctype html>",
            "<?php echo 1 ?>",
            "<![CDATA[<body>]]>",
            "</head>",
            "</p>",
            "</>",
            "</3>",
            "<head>",
            "<base href=/>",
            "<meta http-equiv=refresh content=600>",
            "<meta http-equiv = 'Content-Security-Policy' content=\"style-src 'self'\">",
            "<meta content='a>b' http-equiv=content-security-policy>",
            "<meta name=http-equiv content=x>",
            "<meta http-equivx=1>",
            '<meta ="x>" http-equiv=x>',
            '<link ="x>">',
            "<div>",
            "text",
            "<bodyguard>",
            "<frameset>",
        ]
    ),
)


@st.composite
def tricky_pages(draw: st.DrawFn) -> bytes:
    page = bytearray("".join(draw(st.lists(_tricky_item, max_size=10))).encode())
    page += draw(st.sampled_from([b"<body>", b"<BODY class='a>b'>", b"", b"<p>"]))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(page)))
        page[at:at] = draw(
            st.sampled_from([b"<", b">", b'"', b"'", b"-->", b"</script>", b"=", b" "])
        )
    return bytes(page)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(tricky_pages(), damaged_pages()))
def test_fast_path_agrees_with_the_token_by_token_scan(page: bytes) -> None:
    """The regex that skips whole runs of head tokens must change nothing but speed."""
    fast = inject_module._scan(page)
    with patch.object(inject_module, "_SKIPPABLE", re.compile(b"")):
        slow = inject_module._scan(page)
    assert fast == slow


def test_an_unexpected_error_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(doc: bytes) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(inject_module, "_scan", broken)
    assert inject(b"<body>", BANNER) == SkipReason.INTERNAL_ERROR


# =========================================================================================
# 4. Content-Security-Policy headers


def allow(*headers: str) -> CspResult:
    return allow_banner_styles(list(headers), HASH)


CSP_SHAPES = {
    # shape: (header values, expected values, styles allowed, style attributes allowed)
    "no policy": ([], [], True, True),
    "no style directive": (["script-src 'self'"], ["script-src 'self'"], True, True),
    "nonce only": (
        ["style-src 'nonce-r4nd0m'"],
        [f"style-src 'nonce-r4nd0m' {HASH}"],
        True,
        False,
    ),
    "hash only": (
        ["style-src 'sha256-abc='; img-src *"],
        [f"style-src 'sha256-abc=' {HASH}; img-src *"],
        True,
        False,
    ),
    "unsafe-inline: nothing to add": (
        ["style-src 'self' 'unsafe-inline'"],
        ["style-src 'self' 'unsafe-inline'"],
        True,
        True,
    ),
    "unsafe-inline switched off by a nonce": (
        ["style-src 'unsafe-inline' 'nonce-a'"],
        [f"style-src 'unsafe-inline' 'nonce-a' {HASH}"],
        True,
        False,
    ),
    "none": (["style-src 'none'"], [f"style-src {HASH}"], True, False),
    "NONE in capitals": (["STYLE-SRC 'NONE'"], [f"STYLE-SRC {HASH}"], True, False),
    "empty directive": (
        ["style-src; img-src 'self'"],
        [f"style-src {HASH}; img-src 'self'"],
        True,
        False,
    ),
    "default-src only": (
        ["default-src 'self' https://cdn.example"],
        [
            "default-src 'self' https://cdn.example; "
            f"style-src-elem 'self' https://cdn.example {HASH}"
        ],
        True,
        False,
    ),
    "default-src 'none'": (
        ["default-src 'none'; sandbox"],
        [f"default-src 'none'; sandbox; style-src-elem {HASH}"],
        True,
        False,
    ),
    "default-src with unsafe-inline": (
        ["default-src 'self' 'unsafe-inline'"],
        ["default-src 'self' 'unsafe-inline'"],
        True,
        True,
    ),
    "trailing semicolon": (
        ["default-src 'self';  "],
        [f"default-src 'self'; style-src-elem 'self' {HASH}"],
        True,
        False,
    ),
    "style-src-elem governs <style>": (
        ["style-src-elem 'self'; style-src 'unsafe-inline'"],
        [f"style-src-elem 'self' {HASH}; style-src 'unsafe-inline'"],
        True,
        True,
    ),
    "style-src-elem already inline": (
        ["style-src-elem 'unsafe-inline'; style-src 'self'"],
        ["style-src-elem 'unsafe-inline'; style-src 'self'"],
        True,
        False,
    ),
    "style-src-attr governs attributes": (
        ["style-src 'self'; style-src-attr 'unsafe-inline'"],
        [f"style-src 'self' {HASH}; style-src-attr 'unsafe-inline'"],
        True,
        True,
    ),
    "duplicate directive: the first counts": (
        ["style-src 'unsafe-inline'; style-src 'none'"],
        ["style-src 'unsafe-inline'; style-src 'none'"],
        True,
        True,
    ),
    "our hash already there": ([f"style-src {HASH}"], [f"style-src {HASH}"], True, False),
    "trusted types and sandbox are left alone": (
        ["require-trusted-types-for 'script'; style-src 'self'; sandbox allow-scripts"],
        [f"require-trusted-types-for 'script'; style-src 'self' {HASH}; sandbox allow-scripts"],
        True,
        False,
    ),
    "multiple headers": (
        ["default-src 'self'", "style-src 'unsafe-inline'", "img-src *"],
        [
            f"default-src 'self'; style-src-elem 'self' {HASH}",
            "style-src 'unsafe-inline'",
            "img-src *",
        ],
        True,
        False,
    ),
    "comma-joined policies, each on its own": (
        ["style-src 'unsafe-inline', style-src 'nonce-b',img-src *"],
        [f"style-src 'unsafe-inline', style-src 'nonce-b' {HASH},img-src *"],
        True,
        False,
    ),
    "a policy we cannot edit safely": (
        ["default-src 'self' https://b\u00fccher.example", "style-src 'nonce-a'"],
        ["default-src 'self' https://b\u00fccher.example", "style-src 'nonce-a'"],
        False,
        False,
    ),
}


@pytest.mark.parametrize("shape", CSP_SHAPES)
def test_csp_shapes(shape: str) -> None:
    headers, expected, styles, attributes = CSP_SHAPES[shape]
    result = allow(*headers)
    assert list(result.headers) == expected
    assert result.changed == (expected != headers)
    assert result.styles_allowed is styles
    assert result.style_attributes_allowed is attributes


def test_adding_the_hash_is_idempotent() -> None:
    for headers, *_ in CSP_SHAPES.values():
        once = allow(*headers)
        if once.styles_allowed:
            assert allow(*once.headers).headers == once.headers


_source = st.sampled_from(
    ["'self'", "'none'", "'unsafe-inline'", "'nonce-abc'", "'sha256-xyz='", "https:", "*", "data:"]
)
_directive = st.builds(
    lambda name, sources: " ".join([name, *sources]),
    st.sampled_from(
        [
            "default-src",
            "style-src",
            "style-src-elem",
            "style-src-attr",
            "script-src",
            "img-src",
            "sandbox",
        ]
    ),
    st.lists(_source, max_size=3),
)
_policy = st.lists(_directive, max_size=5).map("; ".join)


def _parse(policy: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for token in policy.split(";"):
        words = token.split()
        if words and words[0].lower() not in found:
            found[words[0].lower()] = [w.lower() for w in words[1:]]
    return found


@settings(max_examples=300)
@given(st.lists(st.lists(_policy, min_size=1, max_size=3).map(", ".join), max_size=3))
def test_csp_is_never_weakened(headers: list[str]) -> None:
    result = allow(*headers)
    assert len(result.headers) == len(headers)
    for before_header, after_header in zip(headers, result.headers, strict=True):
        before_policies, after_policies = before_header.split(","), after_header.split(",")
        assert len(before_policies) == len(after_policies)
        for before, after in zip(before_policies, after_policies, strict=True):
            old, new = _parse(before), _parse(after)
            assert set(old) <= set(new), "no directive removed"
            assert set(new) - set(old) <= {"style-src-elem"}
            for name, sources in new.items():
                added = set(sources) - set(old.get(name, old.get("default-src", [])))
                assert added <= {HASH.lower()}, f"{name}: only our hash is ever added"
                if name in old:
                    assert set(old[name]) - {"'none'"} <= set(sources), f"{name} lost a source"
                if "'unsafe-inline'" in old.get(name, []) and HASH.lower() in sources:
                    assert any(s.startswith(("'nonce-", "'sha")) for s in old[name])


# --- the same through inject, with meta policies ------------------------------------------


def test_header_policy_through_inject() -> None:
    page = b"<html><head></head><body><p>x</p></body></html>"
    result = inject(page, BANNER, csp_headers=["default-src 'self'"])
    assert isinstance(result, InjectResult) and result.styled
    assert result.csp_headers == (f"default-src 'self'; style-src-elem 'self' {HASH}",)
    assert BANNER.markup(style_attributes=False) in result.body  # no style="" to violate
    untouched = inject(page, BANNER, csp_headers=["style-src 'unsafe-inline'"])
    assert isinstance(untouched, InjectResult)
    assert untouched.csp_headers is None and BANNER.html in untouched.body


def test_report_only_policies_are_not_ours_to_touch() -> None:
    """The hook passes only enforced policies; a report-only one must stay as it came."""
    response = Headers(
        content_security_policy="style-src 'self'",
        content_security_policy_report_only="style-src 'none'; report-uri /r",
    )
    result = inject(b"<body>", BANNER, csp_headers=response.get_all("Content-Security-Policy"))
    assert isinstance(result, InjectResult)
    assert result.csp_headers == (f"style-src 'self' {HASH}",)
    assert response["Content-Security-Policy-Report-Only"] == "style-src 'none'; report-uri /r"


def test_meta_policy_in_the_head_is_rewritten() -> None:
    page = (
        b'<html><head><meta http-equiv="Content-Security-Policy" '
        b"content=\"default-src 'self'; img-src *\"></head><body>x"
    )
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult) and result.styled
    check_only_additions(page, result)
    assert (
        f"content=\"default-src 'self'; img-src *; style-src-elem 'self' {HASH}\">".encode()
        in result.body
    )


@pytest.mark.parametrize(
    ("meta", "rewritten"),
    [
        (b"<meta http-equiv=content-security-policy content='style-src &#39;none&#39;'>", True),
        (b"<META HTTP-EQUIV=Content-Security-Policy CONTENT=style-src>", True),
        (b'<meta content="style-src \'nonce-a\'" http-equiv="content-security-policy">', True),
        (b"<meta http-equiv=Content-Security-Policy content=\"style-src 'unsafe-inline'\">", False),
        (b"<meta http-equiv=Content-Security-Policy content=\"img-src 'none'\">", False),
        (
            b"<meta http-equiv=Content-Security-Policy-Report-Only content=\"style-src 'none'\">",
            False,
        ),
        (
            b"<noscript><meta http-equiv=Content-Security-Policy content=\"style-src 'none'\">"
            b"</noscript>",
            False,
        ),
    ],
)
def test_meta_policy_shapes(meta: bytes, rewritten: bool) -> None:
    page = b"<!doctype html><html><head>" + meta + b"</head><body>x</body></html>"
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult) and result.styled
    check_only_additions(page, result)
    assert (len(result.edits) == 2) is rewritten
    if rewritten:
        new_value = result.edits[0].new.decode()
        assert new_value.startswith('"') and new_value.endswith(f'{HASH}"')


def test_meta_policy_after_the_head_but_before_implicit_body_is_rewritten() -> None:
    page = (
        b"<html><head></head>"
        b"<meta http-equiv=Content-Security-Policy content=\"style-src 'self'\"><p>"
    )
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult)
    assert result.offset == page.index(b"<p>")  # the meta stays in the head
    assert len(result.edits) == 2


def test_meta_policy_in_the_body_is_ignored_like_browsers_do() -> None:
    page = b"<body><meta http-equiv=Content-Security-Policy content=\"style-src 'none'\">"
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult) and result.styled and len(result.edits) == 1


def test_meta_and_header_policies_together() -> None:
    page = (
        b"<head><meta http-equiv=Content-Security-Policy content=\"style-src 'self'\"></head><body>"
    )
    result = inject(page, BANNER, csp_headers=["style-src 'nonce-n'"])
    assert isinstance(result, InjectResult) and result.styled
    assert result.csp_headers == (f"style-src 'nonce-n' {HASH}",)
    assert len(result.edits) == 2


def test_unreadable_meta_policy_means_unstyled_or_skip() -> None:
    page = (
        b'<head><meta http-equiv=Content-Security-Policy content="style-src &amp x"></head><body>'
    )
    result = inject(page, BANNER, csp_headers=["default-src 'self'"])
    assert isinstance(result, InjectResult) and not result.styled
    assert result.csp_headers is None and len(result.edits) == 1  # nothing changed for nothing
    assert BANNER.markup(style_element=False) in result.body
    assert inject(page, BANNER, unstyled_ok=False) == SkipReason.CSP


def test_uneditable_header_policy_means_unstyled_or_skip() -> None:
    csp = ["style-src 'self' https://caf\u00e9.example"]
    result = inject(b"<body>", BANNER, csp_headers=csp)
    assert isinstance(result, InjectResult) and not result.styled and result.csp_headers is None
    assert inject(b"<body>", BANNER, csp_headers=csp, unstyled_ok=False) == SkipReason.CSP


@pytest.mark.parametrize(
    ("meta", "skipped"),
    [
        (b'<meta http-equiv="refresh" content="0; url=https://example.org/">', True),
        (b"<meta http-equiv=REFRESH content=2>", True),
        (b"<meta http-equiv=refresh content='.5;url=/x'>", True),
        (b"<meta http-equiv=refresh content=600>", False),
        (b'<meta http-equiv=refresh content="url=/x">', False),  # not a valid refresh
        (b'<noscript><meta http-equiv="refresh" content="0; URL=/?nojs=1"></noscript>', False),
    ],
)
def test_redirect_pages_do_not_use_up_the_notice(meta: bytes, skipped: bool) -> None:
    result = inject(b"<html><head>" + meta + b"</head><body>", BANNER)
    assert (result == SkipReason.REFRESH) is skipped


def test_too_large_bodies_are_skipped() -> None:
    assert inject(b"<body>" + b"x" * 100, BANNER, max_bytes=50) == SkipReason.TOO_LARGE


# =========================================================================================
# 7. Headers after injection


def test_headers_after_injection_on_a_plain_dict() -> None:
    headers = {
        "ETag": '"abc"',
        "Content-MD5": "x",
        "Digest": "sha-256=x",
        "Content-Digest": "sha-256=:x:",
        "Repr-Digest": "sha-256=:x:",
        "cache-control": "public, max-age=600",
        "Content-Type": "text/html",
        "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
    }
    update_headers_after_injection(headers)
    assert headers == {
        "Content-Type": "text/html",
        "Last-Modified": "Mon, 01 Jan 2024 00:00:00 GMT",
        "Cache-Control": "no-store",
    }


def test_headers_after_injection_on_mitmproxy_headers() -> None:
    headers = Headers(etag='"a"', cache_control="max-age=60", content_type="text/html")
    headers.add("ETag", '"b"')
    update_headers_after_injection(headers)
    assert headers.get_all("etag") == []
    assert headers.get_all("cache-control") == ["no-store"]
    assert set(STALE_AFTER_INJECTION) >= {"etag", "content-md5", "digest", "repr-digest"}


def test_integrity_headers_would_be_wrong_after_injection() -> None:
    """Why digests go: they describe the old bytes."""
    page = b"<body>x"
    result = inject(page, BANNER)
    assert isinstance(result, InjectResult)
    old = base64.b64encode(hashlib.sha256(page).digest())
    assert old != base64.b64encode(hashlib.sha256(result.body).digest())


# --- decoding: strict and bounded ------------------------------------------------------------


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


DECODE_PAGE = b"<html><body>" + b"page " * 2000 + b"</body></html>"
ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_round_trips(encoding: str) -> None:
    encoded = ENCODERS[encoding](DECODE_PAGE)
    assert decode_body(encoded, encoding, MAX) == DECODE_PAGE
    assert decode_body(encoded, encoding.upper() + " ", MAX) == DECODE_PAGE


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_refuses_a_truncated_stream(encoding: str) -> None:
    """mitmproxy's own decoders return the part that decoded; the page would lose its end."""
    encoded = ENCODERS[encoding](DECODE_PAGE)
    assert decode_body(encoded[: len(encoded) - 7], encoding, MAX) == SkipReason.DECODE_ERROR


def test_decode_body_multi_member_gzip_and_multi_frame_zstd_decode_whole() -> None:
    half = len(DECODE_PAGE) // 2
    first, second = DECODE_PAGE[:half], DECODE_PAGE[half:]
    assert decode_body(gzip.compress(first) + gzip.compress(second), "gzip", MAX) == DECODE_PAGE
    frames = zstd.compress(first) + zstd.compress(second)
    assert decode_body(frames, "zstd", MAX) == DECODE_PAGE


def test_decode_body_trailing_garbage_and_raw_deflate() -> None:
    assert decode_body(gzip.compress(DECODE_PAGE) + b"junk", "gzip", MAX) == "decode_error"
    assert decode_body(zlib.compress(DECODE_PAGE) + b"junk", "deflate", MAX) == "decode_error"
    assert decode_body(_deflate_raw(DECODE_PAGE), "deflate", MAX) == DECODE_PAGE
    assert decode_body(b"not compressed", "gzip", MAX) == "decode_error"


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_stops_a_compression_bomb(encoding: str) -> None:
    bomb = ENCODERS[encoding](b"\0" * 20_000_000)
    assert len(bomb) < 100_000
    assert decode_body(bomb, encoding, 1_000_000) == SkipReason.TOO_LARGE


def test_decode_body_identity_and_unknown() -> None:
    assert decode_body(DECODE_PAGE, None, MAX) == DECODE_PAGE
    assert decode_body(DECODE_PAGE, "identity", 10) == SkipReason.TOO_LARGE
    assert decode_body(DECODE_PAGE, "compress", MAX) == SkipReason.ENCODING
