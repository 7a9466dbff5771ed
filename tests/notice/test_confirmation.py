"""The confirmation page of a plain-http page's "I understand" (`notice.confirmation`)."""

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
from support.paths import EXAMPLE_POLICY

CONFIRM = "/.well-known/auditproxy/acknowledge?r=http%3A%2F%2Fa.test%2F&d=1&s=all&t=ab&c=cd"
BACK = "http://a.test/x?y=1&z=2"


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE_POLICY)


def hrefs(page: bytes) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page.decode("ascii"))]


def test_the_notice_in_full_in_the_policys_order_with_one_confirmation_link(example):
    texts = example.notice.ordered_texts()
    page = confirmation.render(texts, CONFIRM, BACK)
    assert page.isascii()
    words = html.unescape(re.sub(r"<[^>]+>", " ", page.decode("ascii")))
    positions = []
    for text in texts:
        for part in (text.heading, text.disclaimer, text.monitoring, text.acknowledge):
            assert part in words
        positions.append(page.index(f'<section lang="{text.lang}">'.encode()))
    assert positions == sorted(positions)  # English, then French, as the policy says
    links = hrefs(page)
    assert links.count(CONFIRM) == len(texts)  # each language's "I understand", one link
    assert links.count(BACK) == len(texts)  # and a way back that acknowledges nothing
    assert "Revenir \u00e0 la page sans r\u00e9pondre" in words


def test_nothing_runs_and_nothing_outside_is_loaded(example):
    page = confirmation.render(example.notice.ordered_texts(), CONFIRM, BACK).lower()
    for forbidden in (b"<script", b"<form", b"<iframe", b"javascript:", b"<img", b"<link"):
        assert forbidden not in page
    assert not re.search(rb"<[^>]*\son[a-z]+=", page)
    csp = confirmation.HEADERS["Content-Security-Policy"]
    assert "sandbox" in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    assert confirmation.HEADERS["Cache-Control"] == "no-store"
    assert confirmation.HEADERS["Referrer-Policy"] == "no-referrer"


def test_its_style_is_allowed_by_its_own_policy(example):
    """The page's one <style> matches the hash its Content-Security-Policy allows."""
    page = confirmation.render(example.notice.ordered_texts(), CONFIRM, BACK).decode("ascii")
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in confirmation.HEADERS["Content-Security-Policy"]


def test_markup_in_the_policys_wording_or_the_links_is_text(example):
    (first, *rest) = example.notice.ordered_texts()
    hostile = dataclasses.replace(first, heading='<img src=x onerror="alert(1)">')
    page = confirmation.render([hostile, *rest], CONFIRM + '"><script>', BACK)
    assert b"<img" not in page and b"<script" not in page
    assert CONFIRM + '"><script>' in hrefs(page)


def test_where_i_understand_appears_varies_and_stays_styled(example):
    """A site cannot lay a decoy where "I understand" will be: each page moves it down by
    one of `GAPS` steps, the same in every language, each step allowed by the page's CSP."""
    texts = example.notice.ordered_texts()
    pages = {
        gap: confirmation.render(texts, CONFIRM, BACK, gap) for gap in range(confirmation.GAPS)
    }
    assert len(set(pages.values())) == confirmation.GAPS
    assert b"<div class=" not in pages[0]
    for gap in range(1, confirmation.GAPS):
        assert pages[gap].count(f'<div class="g{gap}"></div>'.encode()) == len(texts)
        (style,) = re.findall(r"<style>(.*?)</style>", pages[gap].decode("ascii"), re.S)
        assert f".g{gap}{{height:{2 * gap}rem}}" in style
