"""Fetch metadata: which requests are a person's own top-level navigation (issue #15)."""

from __future__ import annotations

import pytest

from auditproxy.notice.keys import safe_return_target
from auditproxy.notice.navigation import has_fetch_metadata, is_certain_page, person_navigation

HOST = "www.facebook.com"


def headers(**values: str) -> dict[bytes, bytes]:
    return {k.replace("_", "-").lower().encode(): v.encode() for k, v in values.items()}


CLICK = dict(
    sec_fetch_mode="navigate", sec_fetch_dest="document", sec_fetch_user="?1",
    sec_fetch_site="same-origin",
)  # fmt: skip


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"sec_fetch_site": "same-site"},
        {"sec_fetch_site": "none"},  # typed or pasted in the address bar, a bookmark
        # Our link on this host's plain-http page, followed over https (cross-site by scheme).
        {"sec_fetch_site": "cross-site", "referer": "http://www.facebook.com/"},
        {"sec_fetch_site": "cross-site", "referer": "http://WWW.Facebook.com:8080/"},
    ],
)
def test_a_click_of_the_person_counts(changes):
    assert person_navigation(headers(**{**CLICK, **changes}), HOST) is None


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"sec_fetch_mode": "cors", "sec_fetch_dest": "empty"}, "not a navigation"),  # fetch()
        ({"sec_fetch_mode": "no-cors", "sec_fetch_dest": "image"}, "not a navigation"),  # <img>
        ({"sec_fetch_mode": "same-origin", "sec_fetch_dest": "empty"}, "not a navigation"),
        ({"sec_fetch_dest": "iframe"}, "not a top-level page"),  # a frame
        ({"sec_fetch_user": "?0"}, "not activated by the person"),
        ({"sec_fetch_user": ""}, "not activated by the person"),  # location = ... by a script
        ({"sec_fetch_site": "cross-site"}, "another site"),
        ({"sec_fetch_site": "cross-site", "referer": "https://www.facebook.com/"}, "another"),
        ({"sec_fetch_site": "cross-site", "referer": "http://evil.example/"}, "another site"),
        ({"sec_fetch_site": "cross-site", "referer": "http://facebook.com/"}, "another site"),
        ({"sec_fetch_site": "cross-site", "referer": "http://u@www.facebook.com/"}, "another"),
        ({"sec_fetch_site": "cross-site", "referer": "http://[::1"}, "another site"),
        ({"sec_fetch_site": "garbage"}, "another site"),
    ],
)
def test_anything_else_is_refused_with_a_reason(changes, why):
    reason = person_navigation(headers(**{**CLICK, **changes}), HOST)
    assert reason is not None and why in reason


def test_without_fetch_metadata_nothing_counts():
    """Plain HTTP: a script's fetch can send every other header a click sends."""
    forged = headers(
        accept="text/html,application/xhtml+xml", upgrade_insecure_requests="1",
        referer="http://www.facebook.com/",
    )  # fmt: skip
    assert not has_fetch_metadata(forged)
    assert "no fetch metadata" in (person_navigation(forged, HOST) or "")


def test_only_a_document_is_a_certain_page():
    assert is_certain_page(headers(sec_fetch_dest="document", sec_fetch_mode="navigate"))
    assert not is_certain_page(headers(sec_fetch_dest="iframe", sec_fetch_mode="navigate"))
    assert not is_certain_page(headers(accept="text/html"))


@pytest.mark.parametrize(
    ("target", "safe"),
    [
        ("/groups/1?x=2", True),
        ("http://www.facebook.com/groups/1?x=2", True),
        ("http://www.facebook.com:8080/", True),
        ("http://www.facebook.com", True),
        ("https://www.facebook.com/", False),  # only plain http is ever a full URL
        ("http://evil.example/", False),
        ("http://www.facebook.com.evil.example/", False),
        ("http://user@www.facebook.com/", False),
        ("http://www.facebook.com@evil.example/", False),
        ("http://www.facebook.com:x/", False),
        ("http://www.facebook.com//evil.example/", False),
        ("http://www.facebook.com/\r\nSet-Cookie: a", False),
        ("//evil.example/", False),
        ("javascript:alert(1)", False),
        ("", False),
    ],
)
def test_return_targets(target, safe):
    assert (safe_return_target(target, HOST) is not None) is safe
