"""Which responses may carry the notice, from their headers; and the charset rules."""

from __future__ import annotations

import re

import pytest
from mitmproxy.http import Headers

from auditproxy.notice.eligibility import charset_ok, eligibility, media_type
from auditproxy.notice.insert import (
    inject,
)
from auditproxy.notice.reasons import SkipReason
from support.inject import (
    BANNER,
    MAX,
)

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
        (dict(method="POST"), None),  # a form the person sent: a top-level page
        (dict(method="POST", request={"Sec-Fetch-Mode": "cors"}), SkipReason.METHOD),
        (dict(method="POST", request={"Sec-Fetch-Dest": "iframe"}), SkipReason.METHOD),
        (dict(method="POST", drop=("Sec-Fetch-Mode", "Sec-Fetch-Dest")), SkipReason.METHOD),
        (dict(method="PUT"), SkipReason.METHOD),
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
