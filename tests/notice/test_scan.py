"""Where the notice goes: the top of the body, as an HTML5 parser would open it."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auditproxy.notice import scan as scan_module
from auditproxy.notice.insert import (
    InjectResult,
    inject,
)
from auditproxy.notice.reasons import SkipReason
from support.generated import damaged_pages, html_pages, tricky_pages
from support.inject import (
    BANNER,
    PAGES,
    check_only_additions,
    find_insertion_point,
    marked,
)
from support.notice import undo

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
    page = b"<html><head>" + b"<meta http-equiv=a>" * scan_module.MAX_SCAN_STEPS + b"<body>"
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


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(tricky_pages(), damaged_pages()))
def test_fast_path_agrees_with_the_token_by_token_scan(page: bytes) -> None:
    """The regex that skips whole runs of head tokens must change nothing but speed."""
    fast = scan_module.scan(page)
    nothing = re.compile(b"")
    with patch.dict(scan_module.FAST_PATHS, dict.fromkeys(scan_module.FAST_PATHS, nothing)):
        slow = scan_module.scan(page)
    assert fast == slow


def test_an_unexpected_error_fails_open(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(doc: bytes) -> None:
        raise RuntimeError("bug")

    from auditproxy.notice import insert as insert_module

    monkeypatch.setattr(insert_module, "scan", broken)
    assert inject(b"<body>", BANNER) == SkipReason.INTERNAL_ERROR


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(tricky_pages(), damaged_pages()), st.sampled_from([24, 37, 61]))
def test_small_windows_change_nothing(page: bytes, size: int) -> None:
    """No regex call reads more than a window (the GIL); the answer never depends on it."""
    from auditproxy.notice import tokens

    expected = scan_module.scan(page)
    with patch.object(tokens, "WINDOW", size):
        assert scan_module.scan(page) == expected


@pytest.mark.parametrize(
    "page",
    [
        # Found by the generated pages above: a comment longer than the window between the
        # body that scripting off opens and the explicit <body>.
        b"<noscript><body class=nojs></noscript><!--[if lt IE 9]><body class=ie><![endif]--><body>",
        b'<noscript><body class=nojs></noscript></div class="' + b"x" * 100 + b'"><body>',
        b"<noscript><body class=nojs></noscript><?" + b"x" * 100 + b"><body>",
        b"<noscript><body class=nojs></noscript><head " + b"a=1 " * 30 + b"><body>",
    ],
)
def test_a_token_longer_than_the_window_between_the_two_bodies_changes_nothing(
    page: bytes,
) -> None:
    from auditproxy.notice import tokens

    expected = scan_module.scan(page)
    assert not isinstance(expected, SkipReason)  # only inert tokens between them
    for size in (24, 37, 61):
        with patch.object(tokens, "WINDOW", size):
            assert scan_module.scan(page) == expected
