"""The page "what is recorded about me": its content follows the policy and the person."""

from __future__ import annotations

import dataclasses
import re
from datetime import date

import pytest

from auditproxy.notice import transparency
from auditproxy.notice.transparency import Entry, RecordView, render
from auditproxy.policy.load import load_policy, parse_policy
from auditproxy.policy.model import Contact, LoggingSettings, NoticeInterval, Policy
from support.paths import EXAMPLE_POLICY, POLICIES

DAY = date(2026, 5, 4)
PSEUDONYM = {"user.hash": "0123456789abcdef0123456789abcdef", "labels.user_key_id": "a1b2c3d4e5f6"}


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE_POLICY)


def view(user=PSEUDONYM, entries=(), source="proxy_auth") -> RecordView:
    return RecordView(user, source, DAY, tuple(entries))


def text(page: bytes) -> str:
    import html

    inline = re.sub(r"</?(?:code|a|strong)\b[^>]*>", "", page.decode("ascii"))
    return html.unescape(re.sub(r"<[^>]+>", " ", inline))


def test_bilingual_pure_ascii_no_script_no_form(example):
    page = render(example, view())
    assert page.isascii()
    lowered = page.lower()
    for forbidden in (b"<script", b"<form", b"<input", b"<iframe", b"javascript:", b"<img"):
        assert forbidden not in lowered
    assert not re.search(rb"<[^>]*\son[a-z]+=", lowered), "no event handler attributes"
    words = text(page)
    assert "What is recorded about me" in words
    assert "Ce qui est enregistr\u00e9 \u00e0 mon sujet" in words
    assert page.count(b'<section lang="en">') == 1 and page.count(b'<section lang="fr">') == 1


def test_the_pseudonym_and_its_key_id_or_the_name(example):
    words = text(render(example, view()))
    assert PSEUDONYM["user.hash"] in words and PSEUDONYM["labels.user_key_id"] in words
    assert "instead of your name" in words
    small = load_policy(POLICIES / "small.yaml")  # log_as: name
    words = text(render(small, view({"user.name": "alice"}, source="header")))
    assert "Records carry your user name: alice." in words
    assert "single sign-on" in words
    assert PSEUDONYM["user.hash"] not in words


def test_what_is_recorded_and_never_follows_the_logging_settings(example):
    off = text(render(example, view()))
    assert "the page's path: only the site's name" in off
    assert "your computer's network address" in off.split("What is never recorded")[1]
    on = dataclasses.replace(example, logging=LoggingSettings(True, True, None))
    words = text(render(on, view()))
    recorded, never = words.split("What is recorded for each request")[1].split(
        "What is never recorded"
    )
    assert "the page's path, without the part after ?" in recorded
    assert "your computer's network address" in recorded
    assert "network address" not in never.split("Site categories")[0]
    for always in ("the part of a web address after ?", "cookies, passwords"):
        assert always in never


def test_each_category_and_what_happens(example):
    words = text(render(example, view()))
    assert "social" in words and "Allowed and recorded; the reminder is shown once a day." in words
    assert "only the site's name and port are recorded" in words  # banking, health
    assert "Blocked; the attempt is recorded." in words
    assert "Every other site" in words
    weekly = dataclasses.replace(
        example, notice=dataclasses.replace(example.notice, interval=NoticeInterval.WEEK)
    )
    assert "once a week (Monday to Sunday)" in text(render(weekly, view()))


def test_this_periods_notices_and_acknowledgements(example):
    words = text(render(example, view()))
    assert "No reminder is on record for you since 2026-05-04." in words
    entries = [
        Entry("site:facebook", True, True),
        Entry("site:x", True, False),
        Entry("site:reddit", False, False),
    ]
    words = text(render(example, view(entries=entries)))
    assert "Your reminders since 2026-05-04" in words
    assert "facebook: shown, you said \u201cI understand\u201d" in words
    assert "x: shown" in words and "reddit" not in words.split("Site categories")[0]
    assert "reddit" not in words.split("Your reminders")[1].split("How long")[0]


def test_retention_and_contact(example):
    words = text(render(example, view()))
    assert "The department keeps these records for 365 days." in words
    assert "atip-aiprp@example.gc.ca" in words
    bare = dataclasses.replace(example, contact=None, logging=LoggingSettings(False, False, None))
    words = text(render(bare, view()))
    assert "The policy does not say; ask the contact below." in words
    assert "See the Policy on the Use of Electronic Networks." in words
    hostile = dataclasses.replace(
        example, contact=Contact('<img src=x onerror="alert(1)">', None, "https://x.test/")
    )
    page = render(hostile, view())
    assert b"<img" not in page and b"&lt;img" in page


def test_names_in_the_page_are_escaped(example):
    page = render(example, view({"user.name": "<b>bob</b>"}))
    assert b"<b>bob" not in page and b"&lt;b&gt;bob" in page


def test_headers_keep_every_other_document_out():
    headers = transparency.HEADERS
    csp = headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "frame-ancestors 'none'", "sandbox", "form-action"):
        assert directive in csp
    assert "script" not in csp and "unsafe" not in csp
    assert transparency.STYLE_HASH in csp
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Cross-Origin-Resource-Policy"] == "same-origin"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert "Access-Control-Allow-Origin" not in headers


def test_a_policy_in_other_languages_reads_english():
    text_ = (POLICIES / "small.yaml").read_text().replace("languages: [en, fr]", "languages: [fr]")
    text_ = text_[: text_.index("    en:\n")] + text_[text_.index("    fr:\n") :]
    policy = parse_policy(text_)
    page = render(policy, view())
    assert b'<section lang="fr">' in page and b'<section lang="en">' not in page


# --- a person in a policy group (issue #14's groups with #15's page) ----------------------

GROUPED = """groups:
  - name: comms
    directory_group: Communications
    categories: {social: log, other: block}
    log_as: name
  - name: fr-only
    directory_group: Francophones
    notice:
      scope: category
      languages: [fr]
"""


def test_the_page_follows_the_persons_group():
    policy = parse_policy((POLICIES / "small.yaml").read_text() + GROUPED)
    comms, francophones = policy.groups
    words = text(render(policy, view(user={"user.name": "alice"}), comms))
    social = words.split("social", 1)[1].split("work", 1)[0]
    assert social.strip() == "Allowed and recorded."  # social: only logged for them
    assert "Blocked; the attempt is recorded." in words.split("Every other site")[1]
    assert "alice" in words
    french = render(policy, view(), francophones).decode("ascii")
    assert '<section lang="fr">' in french and '<section lang="en">' not in french


def test_the_scopes_a_person_can_have_follow_their_group():
    from auditproxy.notice.ownpaths import notice_scopes

    policy = parse_policy((POLICIES / "small.yaml").read_text() + GROUPED)
    comms, francophones = policy.groups
    assert notice_scopes(policy) == ["site:facebook", "site:x"]
    assert notice_scopes(policy, comms) == []  # social is only logged for them
    assert notice_scopes(policy, francophones) == ["category:social"]
