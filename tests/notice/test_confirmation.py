"""The confirmation page of "I understand" (`notice.confirmation`)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re

import pytest

from auditproxy.notice import confirmation
from auditproxy.policy.load import load_policy
from auditproxy.policy.model import Policy
from support.notice import confirmation_link, form_links
from support.paths import EXAMPLE_POLICY

ACTION = "/.well-known/auditproxy/acknowledge"
FIELDS = [("r", "http://a.test/"), ("d", "1"), ("s", "all"), ("t", "ab"), ("i", "5"), ("c", "cd")]
SENT = f"{ACTION}?r=http%3A%2F%2Fa.test%2F&d=1&s=all&t=ab&i=5&c=cd"
BACK = "http://a.test/x?y=1&z=2"


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE_POLICY)


def render(policy: Policy, places: tuple[int, int] = (0, 0), **changes: object) -> bytes:
    texts = policy.notice.ordered_texts()
    args = {"action": ACTION, "fields": FIELDS, "back_url": BACK, **changes}
    return confirmation.render(texts, places=places, **args)  # type: ignore[arg-type]


def hrefs(page: bytes) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page.decode("ascii"))]


def test_the_notice_in_full_in_the_policys_order_with_one_acknowledgement(example):
    texts = example.notice.ordered_texts()
    page = render(example)
    assert page.isascii()
    words = html.unescape(re.sub(r"<[^>]+>", " ", page.decode("ascii")))
    positions = []
    for text in texts:
        for part in (text.heading, text.disclaimer, text.monitoring, text.acknowledge):
            assert part in words
        positions.append(page.index(f'<section lang="{text.lang}">'.encode()))
    assert positions == sorted(positions)  # English, then French, as the policy says
    # Each language's form ("I have read this reminder", "I understand") sends the same.
    assert page.count(b"<form ") == len(texts) and page.count(b'type="checkbox"') == len(texts)
    assert confirmation_link(page) == f"{SENT}&read=1"
    assert hrefs(page).count(BACK) == len(texts)  # and a way back that acknowledges nothing
    for said in ("I have read this reminder", "J'ai lu ce rappel"):
        assert said in words
    assert "Revenir \u00e0 la page sans r\u00e9pondre" in words


def test_unticked_the_form_sends_no_tick_and_the_browser_will_not_send_it(example):
    page = render(example)
    assert form_links(page, tick=False) == {SENT}  # what the proxy refuses to count
    boxes = re.findall(rb"<input [^>]*checkbox[^>]*>", page)
    assert boxes and all(b" required" in box and b" checked" not in box for box in boxes)


def test_nothing_runs_and_nothing_outside_is_loaded(example):
    page = render(example).lower()
    for forbidden in (b"<script", b"<iframe", b"javascript:", b"<img", b"<link", b"autofocus"):
        assert forbidden not in page
    assert not re.search(rb"<[^>]*\son[a-z]+=", page)
    assert re.findall(rb'<form [^>]*action="([^"]*)"', page) == [ACTION.encode()] * 2
    headers = confirmation.headers(BACK)
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    # Forms and nothing else the sandbox holds back: no scripts, no popups, same origin
    # never (an opaque origin: no page of the site can read this one).
    (sandbox,) = [d.split()[1:] for d in csp.split("; ") if d.startswith("sandbox")]
    assert "allow-forms" in sandbox
    assert not {"allow-scripts", "allow-same-origin", "allow-popups"} & set(sandbox)
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize(
    ("back", "targets"),
    [
        ("/groups/1?x=2", "'self'"),
        ("http://a.test:8080/x", "'self' http://a.test:8080"),
        ("http://[2001:db8::1]/x", "'self' http://[2001:db8::1]"),
    ],
)
def test_the_form_may_go_only_here_and_on_to_the_page_it_came_from(back, targets):
    """Chromium checks the acknowledgement's redirect against `form-action` too: a
    plain-http page's return is another origin than this https page."""
    csp = confirmation.headers(back)["Content-Security-Policy"]
    assert f"; form-action {targets}; " in csp


def test_its_style_is_allowed_by_its_own_policy(example):
    """The page's one <style> matches the hash its Content-Security-Policy allows."""
    page = render(example).decode("ascii")
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in confirmation.headers(BACK)["Content-Security-Policy"]


def test_markup_in_the_policys_wording_or_the_fields_is_text(example):
    (first, *rest) = example.notice.ordered_texts()
    hostile = dataclasses.replace(first, heading='<img src=x onerror="alert(1)">')
    fields = [*FIELDS[:-1], ("c", '"><script>')]
    page = confirmation.render([hostile, *rest], ACTION, fields, BACK)
    assert b"<img" not in page and b"<script" not in page
    assert confirmation_link(page).endswith("&c=%22%3E%3Cscript%3E&read=1")


def test_where_the_tick_and_i_understand_appear_varies_and_stays_styled(example):
    """A site cannot lay a decoy where the tick or "I understand" will be: each page moves
    the tick down from the text, and the button down from the tick, by one of `GAPS` steps
    each, the same in every language, each step allowed by the page's CSP."""
    gaps = range(confirmation.GAPS)
    pages = {(a, b): render(example, (a, b)) for a in gaps for b in gaps}
    assert len(set(pages.values())) == confirmation.GAPS**2
    assert b"<div class=" not in pages[0, 0]
    (style,) = re.findall(r"<style>(.*?)</style>", pages[0, 0].decode("ascii"), re.S)
    for (a, b), page in pages.items():
        markup = page.decode("ascii")
        for section in markup.split("<section ")[1:]:
            tick, button = section.index('type="checkbox"'), section.index("<button")
            found = list(re.finditer(r'<div class="g(\d)"></div>', section))
            where = [m.start() for m in found]
            assert [int(m[1]) for m in found] == [n for n in (a, b) if n]
            assert all(w < tick for w in where[: bool(a)])
            assert all(tick < w < button for w in where[bool(a) :])
        for n in (a, b):
            if n:
                assert f".g{n}{{height:{2 * n}rem}}" in style
