"""Fetch metadata: which requests are a person's own top-level navigation (issue #15)."""

from __future__ import annotations

import pytest

from auditproxy.notice.keys import safe_return_target
from auditproxy.notice.navigation import (
    has_fetch_metadata,
    is_certain_page,
    is_top_level,
    person_navigation,
)

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
    ],
)
def test_a_click_of_the_person_counts(changes):
    assert person_navigation(headers(**{**CLICK, **changes})) is None


@pytest.mark.parametrize(
    "referer", [None, "http://www.facebook.com/", "https://evil.example/", "http://facebook.com/"]
)
def test_a_click_from_another_site_counts_only_where_any_site_may_start_it(referer):
    """The link of a plain-http page opens the proxy's confirmation page, which the person
    must click again: from there (an opaque origin) the browser says cross-site."""
    values = {**CLICK, "sec_fetch_site": "cross-site"}
    if referer is not None:
        values["referer"] = referer
    assert "another site" in (person_navigation(headers(**values)) or "")
    assert person_navigation(headers(**values), any_site=True) is None


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
        ({"sec_fetch_site": "cross-site", "referer": "http://www.facebook.com/"}, "another"),
        ({"sec_fetch_site": "garbage"}, "another site"),
    ],
)
def test_anything_else_is_refused_with_a_reason(changes, why):
    reason = person_navigation(headers(**{**CLICK, **changes}))
    assert reason is not None and why in reason
    if not why.startswith("another"):
        # Whatever the site: a fetch, a frame or a script's navigation never counts.
        assert person_navigation(headers(**{**CLICK, **changes}), any_site=True) == reason


def test_without_fetch_metadata_nothing_counts():
    """Plain HTTP: a script's fetch can send every other header a click sends."""
    forged = headers(
        accept="text/html,application/xhtml+xml", upgrade_insecure_requests="1",
        referer="http://www.facebook.com/",
    )  # fmt: skip
    assert not has_fetch_metadata(forged)
    assert "no fetch metadata" in (person_navigation(forged) or "")
    assert "no fetch metadata" in (person_navigation(forged, any_site=True) or "")
    assert not is_top_level(forged)


@pytest.mark.parametrize(
    ("values", "top"),
    [
        ({"sec_fetch_mode": "navigate", "sec_fetch_dest": "document"}, True),
        ({"sec_fetch_mode": " Navigate ", "sec_fetch_dest": "DOCUMENT"}, True),
        ({"sec_fetch_mode": "navigate", "sec_fetch_dest": "iframe"}, False),
        ({"sec_fetch_mode": "cors", "sec_fetch_dest": "empty"}, False),
        ({"sec_fetch_mode": "no-cors", "sec_fetch_dest": "image"}, False),
        ({"sec_fetch_dest": "document"}, False),  # a navigation says so
        ({"accept": "text/html"}, False),
    ],
)
def test_the_proxy_answers_its_own_paths_to_top_level_navigations_only(values, top):
    assert is_top_level(headers(**values)) is top


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
