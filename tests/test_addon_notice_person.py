"""Issue #15 through the add-on's hooks: only the person can use up, acknowledge or read
what is about them; the proxy's own paths exist only where the notice does; the period."""

from __future__ import annotations

import html
import re
from datetime import date, datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
from mitmproxy import http

from auditproxy.notice import confirmation
from auditproxy.notice.keys import ACK_PATH, RECORD_PATH, WRONG_NUMBERS
from auditproxy.notice.ownpaths import READING_SECONDS
from support.harness import HTML, PAGE, harness_for
from support.notice import (
    CLICK,
    CONFIRM_CLICK,
    DOCUMENT,
    NOTICE,
    confirmation_link,
    shown_code,
    through_confirmation,
    time_to_read,
)
from support.paths import POLICIES

TORONTO = ZoneInfo("America/Toronto")
# A plain-http navigation: browsers send no fetch metadata there, frames look the same.
PLAIN = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8", "Upgrade-Insecure-Requests": "1"}
# What the person's click on the notice's link of an http:// page sends to https://.
UPGRADED_CLICK = {**CLICK, "Sec-Fetch-Site": "cross-site", "Referer": "http://www.facebook.com/"}


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


def has_notice(f: http.HTTPFlow) -> bool:
    return NOTICE in (f.response.get_content(strict=False) or b"")


def links(f: http.HTTPFlow) -> list[str]:
    hrefs = re.findall(rb'href="([^"]+)"', f.response.content)
    return [html.unescape(h.decode("ascii")) for h in hrefs]


def ack_link(f: http.HTTPFlow) -> str:
    (link, *others) = [h for h in links(f) if ACK_PATH in h]
    assert all(o == link for o in others)  # both languages, one link
    return link


def acknowledged(harness) -> list[dict]:
    return harness.records("notice-acknowledged")


def last_link(harness, first_page: bytes, client: str = "10.1.2.3") -> str:
    """The person on the proxy's first confirmation page: reads it, presses "I have read
    this reminder", reads the next: the link of its "I understand"."""

    def answer(link: str) -> bytes:
        f = harness.flow("https://www.facebook.com" + link, client=client, headers=CONFIRM_CLICK)
        assert harness.exchange(f).response.status_code == 200, f.response.status_code
        return f.response.content

    return through_confirmation(first_page, answer, lambda: time_to_read(harness))


def say_i_understand(harness, link: str, client: str = "10.1.2.3") -> http.HTTPFlow:
    """The person's answers: the notice's link (the confirmation page), "I have read this
    reminder", "I understand"."""
    url = link if link.startswith("https://") else "https://www.facebook.com" + link
    confirm = harness.exchange(harness.flow(url, client=client, headers=CLICK))
    assert confirm.response.status_code == 200, confirm.response.status_code
    second = "https://www.facebook.com" + last_link(harness, confirm.response.content, client)
    return harness.exchange(harness.flow(second, client=client, headers=CONFIRM_CLICK))


class Clock:
    def __init__(self, *local: int) -> None:
        self.set(*local)

    def set(self, *local: int) -> None:
        self.now = datetime(*local, tzinfo=TORONTO).timestamp()

    def __call__(self) -> float:
        return self.now


# --- only a certain top-level page uses up the notice -----------------------------------


def test_a_page_without_fetch_metadata_shows_the_notice_but_never_uses_it_up(harness):
    """A hidden http:// frame with no referrer looks exactly like the person's page."""
    frame = harness.page("http://www.facebook.com/embed", request_headers=PLAIN)
    assert has_notice(frame)
    assert has_notice(harness.page("http://www.facebook.com/", request_headers=PLAIN))
    # Both went out, neither claimed; neither is known to have reached the person's eyes.
    assert len(harness.records("notice-offered")) == 2 and harness.records("notice-shown") == []
    offered = {"category": "social", "site": "facebook", "event": "offered"}
    assert harness.metric("auditproxy_notices_total", **offered) == 2
    certain = harness.page("https://www.facebook.com/", request_headers=DOCUMENT)
    assert has_notice(certain)  # the person's own certain page still gets it...
    assert len(harness.records("notice-shown")) == 1
    assert not has_notice(harness.page("http://www.facebook.com/", request_headers=PLAIN))
    assert not has_notice(harness.page("https://www.facebook.com/p", request_headers=DOCUMENT))


def test_a_frame_with_fetch_metadata_never_gets_it(harness):
    frame_headers = {**DOCUMENT, "Sec-Fetch-Dest": "iframe"}
    assert not has_notice(
        harness.page("https://www.facebook.com/embed", request_headers=frame_headers)
    )
    assert has_notice(harness.page("https://www.facebook.com/"))


def test_links_on_a_plain_http_page_go_to_the_same_host_over_https(harness):
    page = harness.page("http://www.facebook.com:8080/groups/1?x=2", request_headers=PLAIN)
    link = ack_link(page)
    assert link.startswith(f"https://www.facebook.com{ACK_PATH}?")
    assert parse_qs(urlsplit(link).query)["r"] == ["http://www.facebook.com:8080/groups/1?x=2"]
    assert f"https://www.facebook.com{RECORD_PATH}" in links(page)
    # A page script may have read that link (it can fetch its own http page): following
    # it only opens the proxy's confirmation page, sandboxed, with the notice in full.
    confirm = harness.exchange(harness.flow(link, headers=UPGRADED_CLICK))
    assert confirm.response.status_code == 200 and acknowledged(harness) == []
    headers = confirm.response.headers
    assert headers["Cache-Control"] == "no-store" and headers["X-Frame-Options"] == "DENY"
    assert "sandbox allow-forms " in headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    # Its form goes to this origin, and its answer back to the plain-http page's.
    assert "form-action 'self' http://www.facebook.com:8080;" in headers["Content-Security-Policy"]
    scripts = re.findall(rb"<script>(.*?)</script>", confirm.response.content, re.S)
    assert scripts == [confirmation.SCRIPT.encode()]  # its own only
    assert b"Use is monitored." in confirm.response.content  # the full text
    assert b"http://www.facebook.com:8080/groups/1?x=2" in confirm.response.content  # back
    first = confirmation_link(confirm.response.content)
    assert first.startswith(ACK_PATH + "?") and "&n=1&" in first
    assert first.partition("&n=")[0] == link.partition("https://www.facebook.com")[2]
    second = last_link(harness, confirm.response.content)
    assert second.partition("&n=")[0] == first.partition("&n=")[0] and "&n=2&" in second
    assert acknowledged(harness) == []  # "I have read this reminder" alone records nothing
    # The person's click there: from the sandboxed page the browser says cross-site.
    f = harness.exchange(harness.flow("https://www.facebook.com" + second, headers=CONFIRM_CLICK))
    assert (f.response.status_code, f.response.headers["Location"]) == (
        303,
        "http://www.facebook.com:8080/groups/1?x=2",
    )
    assert [r["labels.site"] for r in acknowledged(harness)] == ["facebook"]
    # The person said "I understand": the period's notice is done, even on plain HTTP.
    assert not has_notice(harness.page("http://www.facebook.com/", request_headers=PLAIN))


@pytest.mark.parametrize(
    ("change", "status"),
    [
        pytest.param(lambda link: link.replace("&c=", "&c=0"), 403, id="forged second token"),
        pytest.param(lambda link: link + "&c=0", 200, id="two second tokens"),
        pytest.param(lambda link: link.replace("&t=", "&t=0"), 403, id="forged first token"),
        pytest.param(lambda link: link.partition("&i=")[0], 200, id="first step again"),
        pytest.param(lambda link: re.sub(r"i=(\d+)", lambda m: f"i={int(m[1]) - 5000}", link),
                     403, id="an earlier time"),
        pytest.param(lambda link: link.replace("&i=", "&i=x"), 403, id="no time"),
        pytest.param(lambda link: link.replace("&i=", "&i=%C2%B2"), 403, id="a digit not 0-9"),
        pytest.param(lambda link: link.replace("&i=", "&i=" + "9" * 5000), 403, id="huge"),
        pytest.param(lambda link: link.replace("&n=2", "&n=1"), 403, id="the first step's"),
        pytest.param(lambda link: link.replace("&n=2", "&n=3"), 403, id="no such step"),
        pytest.param(lambda link: link.replace("&n=2", ""), 403, id="no step"),
        pytest.param(lambda link: re.sub(r"&k=\d+", "&k=", link), 200, id="no number"),
        pytest.param(lambda link: re.sub(r"&k=(\d+)", lambda m: f"&k={(int(m[1]) + 1) % 1000:03d}",
                                         link), 200, id="another number"),
        pytest.param(lambda link: re.sub(r"&k=\d+", "&k=%EF%BC%94%EF%BC%97%EF%BC%92", link),
                     200, id="not ASCII digits"),
    ],
)  # fmt: skip
def test_only_the_confirmation_pages_own_link_acknowledges(harness, change, status):
    link = ack_link(harness.page("http://www.facebook.com/a", request_headers=PLAIN))
    second = last_link(
        harness, harness.exchange(harness.flow(link, headers=UPGRADED_CLICK)).response.content
    )
    f = harness.exchange(
        harness.flow("https://www.facebook.com" + change(second), headers=CONFIRM_CLICK)
    )
    assert f.response.status_code == status
    if status == 200:  # a confirmation page again: the first, or a new number
        again = f.response.content
        assert confirmation_link(again).partition("&n=")[0] == second.partition("&n=")[0]
        if shown_code(again) is not None:  # "I understand" again, with a new number
            assert b"That was not the number shown" in again
            assert confirmation_link(again) != second
    assert acknowledged(harness) == []


@pytest.mark.parametrize("quick", ["I have read this reminder", "I understand"])
def test_a_click_quicker_than_reading_gets_the_confirmation_page_again(harness, quick):
    """A decoy double-click: the first press opens a confirmation page, the second lands on
    its button a fraction of a second later. Nobody reads that fast: on either page, the
    first page again (and its time anew)."""
    clock = Clock(2026, 5, 4, 9)
    harness.addon.runtime.calendar.clock = clock
    link = ack_link(harness.page("https://www.facebook.com/a"))

    def press(path: str) -> http.HTTPFlow:
        f = harness.flow("https://www.facebook.com" + path, headers=CONFIRM_CLICK)
        return harness.exchange(f)

    confirm = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
    pressed = confirmation_link(confirm.response.content)
    if quick == "I understand":
        clock.now += READING_SECONDS + 0.5
        pressed = confirmation_link(press(pressed).response.content)
    clock.now += READING_SECONDS - 0.2  # the second press of a double-click, or a reflex
    again = press(pressed)
    assert acknowledged(harness) == []
    # Back to the first link (a confirmed URL answered with a page would stay in the
    # history, and a reload there would answer): the first page again, the time anew.
    assert (again.response.status_code, again.response.headers["Location"]) == (303, link)
    confirm = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
    first = confirmation_link(confirm.response.content)
    clock.now += READING_SECONDS + 0.5
    second = confirmation_link(press(first).response.content)
    assert second != pressed and acknowledged(harness) == []
    clock.now += READING_SECONDS + 0.5
    f = press(second)
    assert f.response.status_code == 303 and len(acknowledged(harness)) == 1


def test_a_few_wrong_numbers_a_period_then_no_more(harness):
    """Blind guesses (a game that has the person type numbers under a window that hides the
    page) are few: after `WRONG_NUMBERS` wrong ones, "I understand" cannot be recorded
    this period, not even with the right number."""
    link = ack_link(harness.page("https://www.facebook.com/p"))
    confirm = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
    second = last_link(harness, confirm.response.content)
    pages = []
    for _ in range(WRONG_NUMBERS):
        code = shown_code(pages[-1].response.content) if pages else second.rpartition("k=")[2]
        wrong = f"{(int(code) + 1) % 1000:03d}"
        link_now = second if not pages else confirmation_link(pages[-1].response.content)
        time_to_read(harness)
        pages.append(press(harness, re.sub(r"k=\d+", f"k={wrong}", link_now)))
    statuses = [f.response.status_code for f in pages]
    assert statuses == [200] * (WRONG_NUMBERS - 1) + [403]
    assert b"too many times" in pages[-1].response.content
    assert b"<form" not in pages[-1].response.content  # nothing left to answer
    time_to_read(harness)
    assert press(harness, second).response.status_code == 403  # the right number, too late
    again = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
    time_to_read(harness)
    assert press(harness, confirmation_link(again.response.content)).response.status_code == 403
    assert acknowledged(harness) == []
    # Another person, another scope: their own count.
    other = ack_link(harness.page("https://www.facebook.com/p", client="10.9.9.9"))
    assert say_i_understand(harness, other, client="10.9.9.9").response.status_code == 303


def press(harness, path: str, client: str = "10.1.2.3") -> http.HTTPFlow:
    """The person's press on a confirmation page's button (`path`: where its form goes)."""
    f = harness.flow("https://www.facebook.com" + path, client=client, headers=CONFIRM_CLICK)
    return harness.exchange(f)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({**DOCUMENT, "Sec-Fetch-Site": "cross-site"}, id="a script's navigation"),
        pytest.param({**CLICK, "Sec-Fetch-Dest": "iframe"}, id="frame"),
        pytest.param({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
                      "Sec-Fetch-Site": "same-origin"}, id="script fetch"),
        pytest.param(PLAIN, id="no fetch metadata"),
    ],
)  # fmt: skip
def test_the_confirmation_click_must_be_the_persons(harness, headers):
    link = ack_link(harness.page("http://www.facebook.com/a", request_headers=PLAIN))
    second = last_link(
        harness, harness.exchange(harness.flow(link, headers=UPGRADED_CLICK)).response.content
    )
    f = harness.exchange(harness.flow("https://www.facebook.com" + second, headers=headers))
    assert f.response.status_code != 303 and acknowledged(harness) == []
    assert b"auditproxy" not in (f.response.content or b"")  # nothing about us to read


def test_a_plain_http_link_of_another_person_opens_nothing(harness):
    link = ack_link(
        harness.page("http://www.facebook.com/a", request_headers=PLAIN, client="10.9.9.9")
    )
    f = harness.exchange(harness.flow(link, headers=UPGRADED_CLICK, client="10.1.1.1"))
    assert f.response.status_code == 403 and b"&amp;c=" not in f.response.content


def test_links_on_a_certain_page_stay_on_its_origin(harness):
    page = harness.page("https://www.facebook.com/groups/1")
    assert ack_link(page).startswith(f"{ACK_PATH}?r=%2Fgroups%2F1&")
    assert RECORD_PATH in links(page)


# --- "I understand": only the person's own navigation, once a period ---------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"Accept": "*/*", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
                      "Sec-Fetch-Site": "same-origin"}, id="script fetch"),
        pytest.param({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
                      "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
                     id="cors"),
        pytest.param({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image",
                      "Sec-Fetch-Site": "cross-site"}, id="cross-site img"),
        pytest.param({**CLICK, "Sec-Fetch-Dest": "iframe"}, id="frame"),
        pytest.param(PLAIN, id="no fetch metadata"),
    ],
)  # fmt: skip
def test_what_is_not_a_navigation_goes_to_the_site_as_without_us(harness, headers):
    """A page's script cannot learn from the proxy's paths that the proxy is there: what
    is not a top-level navigation is the site's, and answered by it."""
    link = ack_link(harness.page("https://www.facebook.com/p"))
    f = harness.flow("https://www.facebook.com" + link, headers=headers)
    harness.hooks.requestheaders(f)
    assert f.response is None  # goes on to the site
    harness.respond(f, status=404, body=b"the site's own")
    assert f.response.content == b"the site's own" and acknowledged(harness) == []
    (access,) = [r for r in harness.records("access") if r["url.path"] == ACK_PATH]
    assert access["http.response.status_code"] == 404
    good = say_i_understand(harness, link)  # the link itself still works for the person
    assert good.response.status_code == 303 and len(acknowledged(harness)) == 1


@pytest.mark.parametrize("step", ["first", "confirmation"])
def test_a_navigation_the_person_did_not_make_is_refused(harness, step):
    """A script's navigation without the person's activation, on either link."""
    link = ack_link(harness.page("https://www.facebook.com/p"))
    if step == "confirmation":
        confirm = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
        link = confirmation_link(confirm.response.content)
    f = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=DOCUMENT))
    assert f.response.status_code == 403
    assert "Location" not in f.response.headers
    # Shown to whoever navigated, and to no script: an opaque origin, never framed.
    assert "sandbox" in f.response.headers["Content-Security-Policy"]
    assert f.response.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert acknowledged(harness) == []


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(CLICK, id="the person's click on the notice"),
        pytest.param({**CLICK, "Sec-Fetch-Site": "cross-site",
                      "Referer": "https://evil.example/"}, id="another site's link"),
        pytest.param({**CLICK, "Sec-Fetch-Site": "cross-site",
                      "Referer": "http://www.facebook.com/"}, id="from its http page"),
    ],
)  # fmt: skip
def test_the_notices_link_only_opens_the_confirmation_page(harness, headers):
    """Whoever follows the notice's link (a page's script may have read it: markup that a
    script turned into text, an overlay over the notice) reaches the notice in full, made
    by the proxy; only the person's click there says "I understand"."""
    link = ack_link(harness.page("https://www.facebook.com/p"))
    for _ in range(2):
        f = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=headers))
        assert f.response.status_code == 200 and b"Use is monitored." in f.response.content
        assert "sandbox" in f.response.headers["Content-Security-Policy"]
    assert acknowledged(harness) == []
    assert not has_notice(harness.page("https://www.facebook.com/q"))  # claimed by /p


def test_replays_write_one_acknowledgement_per_person_scope_and_period(harness):
    link = ack_link(harness.page("https://www.facebook.com/p"))
    for _ in range(4):
        f = say_i_understand(harness, link)
        assert (f.response.status_code, f.response.headers["Location"]) == (303, "/p")
    assert len(acknowledged(harness)) == 1
    assert (
        harness.metric(
            "auditproxy_notices_total", category="social", site="facebook", event="acknowledged"
        )
        == 1
    )
    # Each of the two confirmation pages and each replayed acknowledgement: an ordinary
    # access record.
    assert len([r for r in harness.records("access") if r["url.path"] == ACK_PATH]) == 4 * 2 + 3


# --- the proxy's own paths exist only where the notice does ------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://example.org" + ACK_PATH + "?t=1",  # unclassified: log
        "https://business.facebook.com" + RECORD_PATH,  # a `log` category
        "https://bank.test" + ACK_PATH,  # bypass (plain HTTP)
    ],
)
def test_own_paths_are_the_sites_own_where_no_notice_is_shown(harness, url):
    f = harness.flow(url, headers=CLICK)
    harness.hooks.requestheaders(f)
    assert f.response is None  # goes on to the site
    harness.respond(f, status=404, body=b"the site's own")
    assert f.response.content == b"the site's own"


def test_an_unknown_own_path_on_a_monitored_site_never_reaches_it(harness):
    f = harness.flow("https://www.facebook.com/.well-known/auditproxy/other", headers=CLICK)
    harness.hooks.requestheaders(f)
    assert f.response is not None and f.response.status_code == 404
    fetched = harness.flow(
        "https://www.facebook.com/.well-known/auditproxy/other",
        headers={"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
    )
    harness.hooks.requestheaders(fetched)
    assert fetched.response is None  # a script's: the site's to answer


# --- "what is recorded about me" ----------------------------------------------------------


def record(harness, client: str, headers=CLICK, scheme: str = "https") -> http.HTTPFlow:
    f = harness.flow(f"{scheme}://www.facebook.com{RECORD_PATH}", client=client, headers=headers)
    harness.exchange(f)
    return f


def test_the_record_page_is_about_the_person_asking_only(harness):
    link = ack_link(harness.page("https://www.facebook.com/", client="10.1.1.1"))
    say_i_understand(harness, link, client="10.1.1.1")
    mine, theirs = record(harness, "10.1.1.1"), record(harness, "10.2.2.2")
    for f in (mine, theirs):
        assert f.response.status_code == 200
        assert f.response.headers["Cache-Control"] == "no-store"
        assert "sandbox" in f.response.headers["Content-Security-Policy"]
        assert "Access-Control-Allow-Origin" not in f.response.headers
        assert b"<script" not in f.response.content
    assert b"10.1.1.1" in mine.response.content and b"10.2.2.2" not in mine.response.content
    assert b"10.2.2.2" in theirs.response.content and b"10.1.1.1" not in theirs.response.content
    assert b"<li>facebook: shown, you said" in mine.response.content
    assert b"No reminder is on record for you" in theirs.response.content
    assert NOTICE not in mine.response.content


@pytest.mark.parametrize(
    ("headers", "scheme"),
    [
        pytest.param({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty",
                      "Sec-Fetch-Site": "same-origin"}, "https", id="script fetch"),
        pytest.param({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe",
                      "Sec-Fetch-Site": "cross-site"}, "https", id="frame"),
        pytest.param({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "script",
                      "Sec-Fetch-Site": "cross-site"}, "https", id="script tag"),
        pytest.param(PLAIN, "https", id="https without fetch metadata"),
        pytest.param(PLAIN, "http", id="plain http"),
    ],
)  # fmt: skip
def test_the_record_page_is_never_given_to_a_frame_or_script(harness, headers, scheme):
    f = harness.flow(
        f"{scheme}://www.facebook.com{RECORD_PATH}", client="10.1.1.1", headers=headers
    )
    harness.hooks.requestheaders(f)
    assert f.response is None  # the site's: on a plain-http page the link is https://
    harness.respond(f, status=404, body=b"the site's own")
    assert b"10.1.1.1" not in f.response.content


def test_the_record_page_shows_a_pseudonym_and_its_key_id(tmp_path):
    policy = tmp_path / "pseudonym.yaml"
    policy.write_text(
        (POLICIES / "small.yaml").read_text().replace("log_as: name", "log_as: pseudonym")
    )
    for harness in harness_for(tmp_path, policy):
        f = record(harness, "10.1.1.1")
        (access,) = [r for r in harness.records("access") if r["url.path"] == RECORD_PATH]
        assert access["user.hash"].encode() in f.response.content
        assert access["labels.user_key_id"].encode() in f.response.content
        assert b"10.1.1.1" not in f.response.content


# --- the interval -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "same_period", "next_period", "first_day"),
    [
        ("week", (2026, 5, 10, 23), (2026, 5, 11, 0, 1), date(2026, 5, 4)),  # Wed -> Sun, Mon
        ("month", (2026, 5, 31, 23), (2026, 6, 1, 0, 1), date(2026, 5, 1)),
    ],
)
def test_the_policy_chooses_the_interval(tmp_path, interval, same_period, next_period, first_day):
    policy = tmp_path / "interval.yaml"
    policy.write_text(
        (POLICIES / "small.yaml")
        .read_text()
        .replace("notice:\n", f"notice:\n  interval: {interval}\n")
    )
    for harness in harness_for(tmp_path, policy):
        clock = Clock(2026, 5, 6, 9)  # a Wednesday
        harness.addon.runtime.calendar.clock = clock
        page = harness.page("https://www.facebook.com/")
        assert has_notice(page)
        link = ack_link(page)
        assert parse_qs(urlsplit(link).query)["d"] == [str(first_day.toordinal())]
        clock.set(*same_period)
        assert not has_notice(harness.page("https://www.facebook.com/"))
        f = say_i_understand(harness, link)  # the period's link still counts, any day of it
        assert f.response.status_code == 303 and len(acknowledged(harness)) == 1
        clock.set(*next_period)
        assert has_notice(harness.page("https://www.facebook.com/"))
        stale = harness.flow("https://www.facebook.com" + link, headers=CLICK)
        harness.exchange(stale)  # last period's link only goes back
        assert stale.response.status_code == 303 and len(acknowledged(harness)) == 1


def test_report_only_header_reaches_the_browser_with_our_hash(harness):
    headers = {**HTML, "Content-Security-Policy-Report-Only": "default-src 'self'; report-uri /r"}
    f = harness.page("https://www.facebook.com/", headers=headers)
    assert has_notice(f)
    report_only = f.response.headers["Content-Security-Policy-Report-Only"]
    assert report_only.startswith(
        "default-src 'self'; report-uri /r; style-src-elem 'self' 'sha256-"
    )
    assert f.response.content.endswith(PAGE[PAGE.index(b"<p>") :])


def test_i_understand_is_not_where_a_site_could_predict_it(harness):
    link = ack_link(harness.page("https://www.facebook.com/p"))
    gaps = set()
    for _ in range(40):
        page = harness.exchange(harness.flow("https://www.facebook.com" + link, headers=CLICK))
        gaps.add(re.search(rb'<div class="g(\d)"></div>|$', page.response.content).group(1))
    assert len(gaps) >= 4  # of 8: the chance of fewer is below one in a billion
