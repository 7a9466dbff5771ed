"""The daily notice stage through the add-on's hooks: when it appears, when it never does."""

from __future__ import annotations

import gzip
import html
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import brotli
import pytest
from mitmproxy import http

from auditproxy.notice.banner import STYLE_HASH
from auditproxy.notice.keys import ACK_PATH, safe_return_path
from support import zstd
from support.harness import HTML, PAGE, harness_for
from support.notice import (
    CLICK,
    CONFIRM_CLICK,
    DOCUMENT,
    NOTICE,
    through_confirmation,
    time_to_read,
)
from support.paths import POLICIES

TORONTO = ZoneInfo("America/Toronto")
# A page request without fetch metadata (plain HTTP): what a browser sends, frames too.
PLAIN_PAGE = {"Host": "www.facebook.com", "Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


def has_notice(f: http.HTTPFlow) -> bool:
    return NOTICE in (f.response.get_content(strict=False) or b"")


def ack_url(f: http.HTTPFlow) -> str:
    match = re.search(rb'href="(/\.well-known/auditproxy/acknowledge\?[^"]+)"', f.response.content)
    assert match, "no acknowledgement link in the notice"
    return html.unescape(match.group(1).decode("ascii"))


def skipped(harness, reason: str) -> float:
    return harness.metric("auditproxy_notice_skipped_total", reason=reason)


class Clock:
    def __init__(self, *local: int) -> None:
        self.set(*local)

    def set(self, *local: int) -> None:
        self.now = datetime(*local, tzinfo=TORONTO).timestamp()

    def __call__(self) -> float:
        return self.now


# --- once a day ---------------------------------------------------------------------------


def test_first_page_of_the_day_gets_the_notice_the_second_does_not(harness):
    first = harness.page("http://www.facebook.com/", headers={**HTML, "ETag": '"v1"'})
    assert has_notice(first)
    assert first.response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in first.response.headers
    assert first.response.content.endswith(b"<p>page</p></body></html>")
    second = harness.page("http://www.facebook.com/groups")
    assert not has_notice(second)
    assert second.response.content == PAGE
    assert [r["event.action"] for r in harness.records()] == ["notice-shown", "access", "access"]
    shown = harness.records("notice-shown")[0]
    assert (shown["labels.site"], shown["labels.notice_scope"]) == ("facebook", "site:facebook")
    labels = dict(category="social", site="facebook", event="shown")
    assert harness.metric("auditproxy_notices_total", **labels) == 1


def test_per_site_and_per_person(harness):
    assert has_notice(harness.page("http://www.facebook.com/"))
    assert has_notice(harness.page("http://x.com/"))  # another site
    assert has_notice(harness.page("http://www.facebook.com/", client="10.7.7.7"))  # another person
    assert not has_notice(harness.page("http://static.fbcdn.net/"))  # facebook's CDN: same site


def test_never_on_log_bypass_block_or_refused(harness):
    for url in ("http://example.org/", "http://business.facebook.com/", "http://bank.test/"):
        assert not has_notice(harness.page(url))
    assert harness.page("http://malware.test/").response.status_code == 403
    assert not has_notice(harness.page("http://malware.test/"))
    assert not has_notice(harness.page("http://www.facebook.com/", client="203.0.113.1"))
    assert (
        harness.metric(
            "auditproxy_notices_total", category="social", site="facebook", event="shown"
        )
        == 0
    )


@pytest.mark.parametrize(
    "scope, second_url, second_gets_it",
    [
        ("site", "http://x.com/", True),
        ("category", "http://x.com/", False),
        ("all", "http://x.com/", False),
    ],
)
def test_scope(tmp_path, scope, second_url, second_gets_it):
    policy = tmp_path / "scoped.yaml"
    policy.write_text(
        (POLICIES / "small.yaml").read_text().replace("notice:\n", f"notice:\n  scope: {scope}\n")
    )
    for harness in harness_for(tmp_path, policy):
        assert has_notice(harness.page("http://www.facebook.com/"))
        assert has_notice(harness.page(second_url)) is second_gets_it


def test_restart_does_not_show_it_again_the_same_day(tmp_path):
    for harness in harness_for(tmp_path):
        assert has_notice(harness.page())
    for harness in harness_for(tmp_path):  # same state file, new process
        assert not has_notice(harness.page())
        assert has_notice(harness.page("http://x.com/"))


def test_the_day_rolls_over_at_local_midnight(harness):
    clock = Clock(2026, 11, 22, 23, 59)
    harness.addon.runtime.calendar.clock = clock
    assert has_notice(harness.page())
    clock.set(2026, 11, 22, 23, 59, 59)
    assert not has_notice(harness.page())
    clock.set(2026, 11, 23, 0, 1)
    assert has_notice(harness.page())


def test_daylight_saving_night(harness):
    clock = Clock(2026, 11, 1, 0, 30)  # Toronto falls back at 02:00 that night
    harness.addon.runtime.calendar.clock = clock
    assert has_notice(harness.page())
    clock.now += 2 * 3600  # 01:30 again, after the change: still the same day
    assert not has_notice(harness.page())
    clock.set(2026, 11, 2, 0, 0, 1)
    assert has_notice(harness.page())


# --- where it never goes -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_headers",
    [
        {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Mode": "navigate", "Accept": "text/html"},
        {"Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors", "Accept": "*/*"},
        {"Sec-Fetch-Dest": "script", "Accept": "*/*"},
        {"Accept": "text/html", "X-Requested-With": "XMLHttpRequest"},
        {"Accept": "application/json"},
        {**DOCUMENT, "Sec-Purpose": "prefetch"},
    ],
)
def test_not_a_page_is_neither_injected_nor_counted(harness, request_headers):
    f = harness.page(request_headers=request_headers)
    assert not has_notice(f)
    total = harness.addon.metrics.registry.get_sample_value
    assert not any(
        total("auditproxy_notice_skipped_total", {"reason": r}) for r in ("not_document", "method")
    )
    assert has_notice(harness.page())  # the next real page still gets it


@pytest.mark.parametrize(
    ("status", "location", "counted"),
    [(204, False, False), (304, False, False), (301, True, False), (302, True, False),
     (303, True, False), (307, True, False), (308, True, False),
     (203, False, True), (206, False, True), (226, False, True), (300, False, True),
     (302, False, True), (404, False, True), (500, False, True),
     (300, True, True), (305, True, True), (306, True, True), (399, True, True)],
)  # fmt: skip
def test_only_200(harness, status, location, counted):
    """Only a 200 page gets the notice. Any other page the browser shows (an error page, a
    203, a 206, a 3xx it does not follow, or one without a Location) is counted as skipped:
    a site answering every page so would otherwise leave no trace. A redirect is no page."""
    f = harness.flow(headers=DOCUMENT)
    headers = {**HTML, "Location": "/elsewhere"} if location else HTML
    harness.exchange(
        f, status=status, body=PAGE if status not in (204, 304) else b"", headers=headers
    )
    assert not has_notice(f)
    skipped = harness.metric("auditproxy_notice_skipped_total", reason="not_ok")
    assert skipped == (1 if counted else 0)
    image = harness.flow(headers={**DOCUMENT, "Sec-Fetch-Dest": "image"})
    harness.exchange(image, status=status, body=b"GIF89a", headers={"Content-Type": "image/gif"})
    frame = harness.flow(headers={**DOCUMENT, "Sec-Fetch-Dest": "iframe"})
    harness.exchange(frame, status=status, body=PAGE, headers=HTML)
    assert harness.metric("auditproxy_notice_skipped_total", reason="not_ok") == skipped
    assert has_notice(harness.page())


@pytest.mark.parametrize(
    "content_type",
    ["application/xhtml+xml", "image/svg+xml", None, "application/unknown", "application/json"],
)
@pytest.mark.parametrize("request_headers", [DOCUMENT, PLAIN_PAGE], ids=["https", "plain http"])
def test_an_error_page_of_any_type_is_counted(harness, content_type, request_headers):
    """The browser shows (or sniffs as HTML) an error page of any type: counted, whatever
    its Content-Type says, as a 200 page of that type is."""
    headers = {"Content-Type": content_type} if content_type else {}
    harness.exchange(harness.flow(headers=request_headers), status=404, body=PAGE, headers=headers)
    assert harness.metric("auditproxy_notice_skipped_total", reason="not_ok") == 1


def test_head_and_post(harness):
    """HEAD has no page. A POST is a page when the browser says it is a top-level
    navigation (a form the person sent: a site could serve every page so); a script's POST,
    or one without fetch metadata (which a script's looks like), is not, nor counted."""
    assert not has_notice(
        harness.exchange(harness.flow(method="HEAD", headers=DOCUMENT), headers=HTML, body=b"")
    )
    script = {"Accept": "text/html", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}
    for headers in (script, PLAIN_PAGE):
        f = harness.exchange(harness.flow(method="POST", headers=headers), headers=HTML, body=PAGE)
        assert not has_notice(f)
    assert harness.metric("auditproxy_notice_skipped_total", reason="method") == 0
    form = harness.flow(method="POST", headers={**DOCUMENT, "Sec-Fetch-User": "?1"})
    assert has_notice(harness.exchange(form, headers=HTML, body=PAGE))
    assert len(harness.records("notice-shown")) == 1
    assert not has_notice(harness.page())  # the day's notice is done


@pytest.mark.parametrize("status", [404, 203, 500])
def test_an_error_page_without_fetch_metadata_is_counted_too(harness, status):
    """Over plain HTTP (no fetch metadata) a site could answer every page with an error
    status: counted like a page (the same tests as a 200 page; a same-site frame looks the
    same and counts too), never a cross-site frame, a script's request or an image."""
    frame = {**PLAIN_PAGE, "Referer": "http://news.example/"}
    for headers, body_type in (
        (frame, HTML),
        ({**PLAIN_PAGE, "X-Requested-With": "XMLHttpRequest"}, HTML),
        ({"Accept": "image/avif,image/*"}, {"Content-Type": "image/png"}),
    ):
        harness.exchange(harness.flow(headers=headers), status=status, body=PAGE, headers=body_type)
    assert harness.metric("auditproxy_notice_skipped_total", reason="not_ok") == 0
    harness.exchange(harness.flow(headers=PLAIN_PAGE), status=status, body=PAGE, headers=HTML)
    assert harness.metric("auditproxy_notice_skipped_total", reason="not_ok") == 1


@pytest.mark.parametrize(
    "headers, reason",
    [
        ({"Content-Type": "application/json"}, "not_html"),
        ({"Content-Type": "application/xhtml+xml"}, "xhtml"),
        ({"Content-Type": "text/event-stream"}, "event_stream"),
        ({**HTML, "Content-Disposition": "attachment; filename=a.html"}, "attachment"),
        ({"Content-Type": "text/html; charset=utf-16"}, "charset"),
        ({**HTML, "Content-Encoding": "compress"}, "encoding"),
    ],
)
def test_pages_that_cannot_carry_it_are_counted_and_the_next_tries_again(harness, headers, reason):
    f = harness.page(headers=headers)
    assert not has_notice(f)
    assert skipped(harness, reason) == 1
    assert has_notice(harness.page())  # the claim was not used up


def test_no_insertion_point_frameset(harness):
    frameset = b"<html><head></head><frameset><frame src=a></frameset></html>"
    assert not has_notice(harness.page(body=frameset))
    assert skipped(harness, "frameset") == 1


def test_large_and_streamed_pages(harness):
    harness.configure(auditproxy_notice_max_bytes=1000)
    big = PAGE.replace(b"<p>page</p>", b"<p>" + b"x" * 2000 + b"</p>")
    assert not has_notice(harness.page(body=big))
    assert skipped(harness, "too_large") == 1
    f = harness.flow(headers=DOCUMENT)
    harness.hooks.requestheaders(f)
    f.response = http.Response.make(200, b"", HTML)
    f.response.stream = True  # mitmproxy decided to stream it
    harness.hooks.responseheaders(f)
    assert "auditproxy.notice" not in f.metadata
    assert skipped(harness, "streamed") == 1


def test_already_seen_pages_are_not_counted_as_skips(harness):
    assert has_notice(harness.page())
    harness.page(headers={"Content-Type": "application/pdf"})
    assert skipped(harness, "not_html") == 0


# --- encodings and charsets ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, encode, decode",
    [
        ("gzip", gzip.compress, gzip.decompress),
        ("br", brotli.compress, brotli.decompress),
        (
            "zstd",
            zstd.compress,
            lambda b: zstd.decompress(b),
        ),
    ],
)
def test_compressed_pages(harness, name, encode, decode):
    f = harness.page(body=encode(PAGE), headers={**HTML, "Content-Encoding": name})
    assert f.response.headers["Content-Encoding"] == name
    raw = decode(f.response.raw_content)
    assert NOTICE in raw and raw.endswith(b"<p>page</p></body></html>")


def test_windows_1252_page_keeps_its_bytes(harness):
    page = (
        b'<html><head><meta charset="windows-1252"></head>'
        b"<body><p>caf\xe9 \x93quoted\x94</p></body></html>"
    )
    f = harness.page(body=page, headers={"Content-Type": "text/html; charset=windows-1252"})
    body = f.response.content
    assert NOTICE in body
    assert b"<p>caf\xe9 \x93quoted\x94</p>" in body
    assert body.replace(body[body.index(b"<div") : body.index(b"<p>caf")], b"") == page


def test_body_text_in_comments_and_scripts_is_not_the_body(harness):
    page = (
        b"<html><head><!-- <body> --><script>var s = '<body>';</script></head>"
        b"<body class=real><p>x</p></body></html>"
    )
    body = harness.page(body=page).response.content
    assert body.index(NOTICE) > body.index(b"<body class=real>")


def test_page_without_body_tag(harness):
    page = b"<!doctype html><title>t</title><p>no body tag</p>"
    body = harness.page(body=page).response.content
    assert body.index(NOTICE) < body.index(b"<p>no body tag")
    assert body.index(NOTICE) > body.index(b"</title>")


# --- Content-Security-Policy -----------------------------------------------------------------


def test_strict_csp_with_nonce_gets_our_hash_and_keeps_its_nonce(harness):
    csp = "default-src 'self'; script-src 'nonce-abc'; style-src 'nonce-abc'"
    f = harness.page(headers={**HTML, "Content-Security-Policy": csp})
    assert has_notice(f)
    new = f.response.headers["Content-Security-Policy"]
    assert "'nonce-abc'" in new and "script-src 'nonce-abc'" in new
    assert re.search(r"style-src 'nonce-abc' 'sha256-[A-Za-z0-9+/=]+'", new)


def test_unsafe_inline_is_never_switched_off(harness):
    csp = "style-src 'self' 'unsafe-inline'"
    f = harness.page(headers={**HTML, "Content-Security-Policy": csp})
    assert has_notice(f)
    assert f.response.headers["Content-Security-Policy"] == csp


def test_report_only_is_handled_like_the_enforced_policy(harness):
    """Issue #15: a violation that a Report-Only policy merely reports still tells the site
    about the notice, so the hash goes in there too (the policy stays as strict)."""
    f = harness.page(headers={**HTML, "Content-Security-Policy-Report-Only": "style-src 'none'"})
    assert has_notice(f)
    assert f.response.headers["Content-Security-Policy-Report-Only"] == f"style-src {STYLE_HASH}"
    assert "Content-Security-Policy" not in f.response.headers  # nothing enforced appears


def test_unreadable_csp_means_the_unstyled_notice_not_a_weaker_policy(harness):
    csp = "style-src 'self' https://caf\u00e9.example"  # not ASCII: cannot be edited safely
    headers = [(b"Content-Type", b"text/html"), (b"Content-Security-Policy", csp.encode())]
    f = harness.page(headers=headers)
    assert has_notice(f)
    assert f.response.headers["Content-Security-Policy"] == csp
    assert harness.metric("auditproxy_notices_unstyled_total", category="social") == 1


# --- acknowledgement -----------------------------------------------------------------------


def test_acknowledgement_records_and_returns_to_the_page(harness):
    page = harness.page("http://www.facebook.com/groups/42?tab=posts")
    link = ack_url(page)
    confirm = harness.exchange(harness.flow("http://www.facebook.com" + link, headers=CLICK))
    assert confirm.response.status_code == 200  # the confirmation page: nothing recorded yet
    assert harness.records("notice-acknowledged") == []

    def answer(link: str) -> bytes:
        f = harness.exchange(harness.flow("http://www.facebook.com" + link, headers=CONFIRM_CLICK))
        assert f.response.status_code == 200 and harness.records("notice-acknowledged") == []
        return f.response.content

    second = through_confirmation(confirm.response.content, answer, lambda: time_to_read(harness))
    f = harness.flow("http://www.facebook.com" + second, headers=CONFIRM_CLICK)
    harness.exchange(f)
    assert f.response.status_code == 303
    assert f.response.headers["Location"] == "/groups/42?tab=posts"
    assert f.response.headers["Cache-Control"] == "no-store"
    acknowledged = harness.records("notice-acknowledged")
    assert len(acknowledged) == 1 and acknowledged[0]["labels.site"] == "facebook"
    # The page and the two confirmation pages; the acknowledgement is its own record.
    assert [r["url.path"] for r in harness.records("access")] == ["/groups/42"] + [ACK_PATH] * 2
    labels = dict(category="social", site="facebook", event="acknowledged")
    assert harness.metric("auditproxy_notices_total", **labels) == 1


def test_acknowledgement_cannot_be_used_by_someone_else(harness):
    link = ack_url(harness.page())
    f = harness.flow("http://www.facebook.com" + link, client="10.9.8.7", headers=CLICK)
    harness.exchange(f)
    assert f.response.status_code == 403
    assert b"not valid" in f.response.content
    assert harness.records("notice-acknowledged") == []
    # Still one record for the request, whatever its fate.
    (refused,) = [r for r in harness.records("access") if r["url.path"] == ACK_PATH]
    assert refused["http.response.status_code"] == 403


@pytest.mark.parametrize(
    "tamper",
    [
        lambda u: u.replace("r=%2F", "r=%2F%2Fevil.example%2F"),
        lambda u: re.sub(r"t=[0-9a-f]+", "t=" + "0" * 32, u),
        lambda u: u.replace("s=site%3Afacebook", "s=site%3Ax"),
        lambda u: re.sub(r"d=\d+", "d=1", u),
        lambda u: u + "&r=/other",
    ],
)
def test_acknowledgement_tampering_is_refused(harness, tamper):
    link = tamper(ack_url(harness.page()))
    f = harness.flow("http://www.facebook.com" + link, headers=CLICK)
    harness.exchange(f)
    assert f.response.status_code == 403
    assert "Location" not in f.response.headers


def test_acknowledgement_link_is_bound_to_its_origin(harness):
    link = ack_url(harness.page("http://www.facebook.com/"))
    f = harness.flow("http://x.com" + link, headers=CLICK)
    harness.exchange(f)
    assert f.response.status_code == 403


def test_yesterdays_link_just_goes_back(harness):
    clock = Clock(2026, 11, 22, 10)
    harness.addon.runtime.calendar.clock = clock
    link = ack_url(harness.page("http://www.facebook.com/p"))
    clock.set(2026, 11, 23, 10)
    f = harness.flow("http://www.facebook.com" + link, headers=CLICK)
    harness.exchange(f)
    assert (f.response.status_code, f.response.headers["Location"]) == (303, "/p")
    assert harness.records("notice-acknowledged") == []
    assert [r["http.response.status_code"] for r in harness.records("access")][-1] == 303


@pytest.mark.parametrize(
    "path, safe",
    [
        ("/a/b?c=d", True),
        ("//evil.example/", False),
        ("/\\evil.example", False),
        ("https://evil.example/", False),
        ("/a\r\nSet-Cookie: x", False),
        ("", False),
    ],
)
def test_safe_return_path(path, safe):
    assert (safe_return_path(path) is not None) is safe


def test_ack_path_never_reaches_the_site(harness):
    f = harness.flow("http://www.facebook.com" + ACK_PATH + "?garbage", headers=CLICK)
    harness.hooks.requestheaders(f)
    assert f.response is not None and f.response.status_code == 403


def test_a_service_workers_preload_of_the_proxys_paths_is_the_sites(harness):
    """A navigation preload carries the navigation's own headers, but the site's service
    worker reads the answer: the proxy's pages never go to it."""
    link = ack_url(harness.page("https://www.facebook.com/p"))
    preload = {**CLICK, "Service-Worker-Navigation-Preload": "true"}
    for path in (link, "/.well-known/auditproxy/recorded"):
        f = harness.flow("https://www.facebook.com" + path, headers=preload)
        harness.hooks.requestheaders(f)
        assert f.response is None  # goes on to the site


# --- faults ---------------------------------------------------------------------------------


def test_broken_state_store_never_blocks_and_is_counted(tmp_path):
    for harness in harness_for(tmp_path):
        (tmp_path / "broken").write_text("not a folder")
        harness.configure(auditproxy_state=str(tmp_path / "broken" / "state.sqlite3"))
        assert has_notice(harness.page())  # from memory
        assert not has_notice(harness.page())  # still once a day
        assert harness.metric("auditproxy_errors_total", stage="state") >= 1


def test_a_race_of_first_pages_shows_one_notice(harness):
    a, b = harness.flow(headers=DOCUMENT), harness.flow(headers=DOCUMENT)
    for f in (a, b):
        harness.hooks.requestheaders(f)
        f.response = http.Response.make(200, PAGE, HTML)
        harness.hooks.responseheaders(f)  # both look like first visits
    harness.hooks.response(a)
    harness.hooks.response(b)
    assert [has_notice(a), has_notice(b)] == [True, False]
    assert len(harness.records("notice-shown")) == 1


def test_notice_fault_leaves_the_page_alone(harness, monkeypatch):
    from auditproxy.notice import stage

    def explode(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(stage, "render_banner", explode)
    f = harness.page()
    assert f.response.content == PAGE
    assert harness.metric("auditproxy_errors_total", stage="notice") == 1
    assert len(harness.records("access")) == 1
    monkeypatch.undo()
    assert has_notice(harness.page())  # the claim was released
