"""The notice into whole pages: meta policies, every byte kept, headers after."""

from __future__ import annotations

import base64
import hashlib

import pytest
from mitmproxy.http import Headers

from auditproxy.notice.insert import (
    STALE_AFTER_INJECTION,
    InjectResult,
    inject,
    update_headers_after_injection,
)
from auditproxy.notice.reasons import SkipReason
from support.inject import (
    BANNER,
    HASH,
    check_only_additions,
)

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


def test_report_only_policies_get_the_same_care_as_enforced_ones() -> None:
    """Issue #15: a violation that a Report-Only policy merely reports still reaches the
    site. Its policy gains our hash where needed; what is enforced is not changed by it."""
    result = inject(
        b"<body>",
        BANNER,
        csp_headers=["style-src 'self'"],
        report_only_headers=["style-src 'none'; report-uri /r"],
    )
    assert isinstance(result, InjectResult) and result.styled
    assert result.csp_headers == (f"style-src 'self' {HASH}",)
    assert result.report_only_headers == (f"style-src {HASH}; report-uri /r",)
    assert BANNER.markup(style_attributes=False) in result.body  # no style="" to report


@pytest.mark.parametrize(
    ("report_only", "variant", "changed"),
    [
        # 'unsafe-inline' without a nonce or hash: a hash would switch it off. Unchanged.
        ("style-src 'unsafe-inline'; report-uri /r", "styled", None),
        ("default-src 'self'; report-to csp", "without_style_attributes", True),
        ("style-src-attr 'none'", "without_style_attributes", None),
        # Not editable for certain (not ASCII): the unstyled notice, nothing to report.
        ("style-src 'self' https://caf\u00e9.example", "unstyled", None),
    ],
)
def test_report_only_shapes(report_only: str, variant: str, changed: bool | None) -> None:
    result = inject(b"<body>", BANNER, report_only_headers=[report_only])
    assert isinstance(result, InjectResult)
    expected = {
        "styled": BANNER.html,
        "without_style_attributes": BANNER.markup(style_attributes=False),
        "unstyled": BANNER.markup(style_element=False),
    }[variant]
    assert expected in result.body
    assert result.csp_headers is None  # nothing enforced appears
    if changed:
        assert result.report_only_headers is not None
        assert HASH in result.report_only_headers[0]
        assert result.report_only_headers[0].startswith(report_only)
    else:
        assert result.report_only_headers is None


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
