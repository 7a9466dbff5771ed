"""Putting the notice into a decoded HTML page: pure bytes in, bytes out, never raises.

`inject(body, banner, ...)` on the decoded body (`response.content`, never `.text`, which
mitmproxy would re-encode as UTF-8) gives an `InjectResult` or a `SkipReason`. After a
successful injection the hook sets `result.body`, replaces the Content-Security-Policy
headers with `result.csp_headers` and the Content-Security-Policy-Report-Only headers with
`result.report_only_headers` when those are not None, and calls
`update_headers_after_injection(headers)` (drops ETag and digests, sets
`Cache-Control: no-store`; mitmproxy recomputes Content-Length when content is set).

Charsets: the banner is pure ASCII, and it goes right after a `>` (or before a `<`). It
means the same wherever ASCII bytes always mean ASCII at markup boundaries: UTF-8, every
single-byte charset, and the EUC, Shift_JIS, Big5, GBK and GB18030 family, whose trail
bytes are never `<`, `>`, `"` or `'`. Not so for UTF-16/32, UTF-7 and the stateful
ISO-2022 and HZ encodings: those pages are skipped (`eligibility.charset_ok`).
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Final

from auditproxy.notice.banner import Banner
from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.csp import CspResult, allow_banner_styles, allow_in_policy
from auditproxy.notice.eligibility import PRESCAN_BYTES, charset_ok
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.scan import MAX_POLICY_TEXT, MetaPolicy, scan

# Response headers that describe the old body; drop them from a changed response.
STALE_AFTER_INJECTION: Final = ("etag", "content-md5", "digest", "content-digest", "repr-digest")


@dataclass(frozen=True, slots=True)
class Edit:
    """One change to the original body: `old` at `start` became `new`."""

    start: int
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class InjectResult:
    body: bytes
    csp_headers: tuple[str, ...] | None  # new Content-Security-Policy values; None: unchanged
    styled: bool  # False: the unstyled variant went in (a CSP blocks our <style>)
    offset: int  # where the notice starts, in the original body
    edits: tuple[Edit, ...]  # every change, in offsets of the original body, in order
    report_only_headers: tuple[str, ...] | None = None  # new Report-Only values; None: same


def inject(
    body: bytes,
    banner: Banner,
    *,
    content_type: str | None = None,
    csp_headers: Sequence[str] = (),
    unstyled_ok: bool = True,
    max_bytes: int | None = None,
    budget: Budget | None = None,
    report_only_headers: Sequence[str] = (),
) -> InjectResult | SkipReason:
    """Insert `banner` at the top of the page's body. Never raises, but
    `DeadlineExceeded` when `budget` runs out.

    `content_type` is the response's Content-Type header (for its charset), `csp_headers`
    the enforced Content-Security-Policy header values, `report_only_headers` the
    Content-Security-Policy-Report-Only ones. A report-only policy is handled exactly like
    an enforced one: a violation it merely reports would still tell the site about the
    notice. When a policy cannot allow our styles, the unstyled notice goes in if
    `unstyled_ok`, else the result is `SkipReason.CSP`. Every byte of the page is kept:
    only the notice is inserted and head meta policies may gain our style hash (see
    `InjectResult.edits`).
    """
    policies = (tuple(csp_headers), tuple(report_only_headers))
    try:
        return _inject(body, banner, content_type, policies, unstyled_ok, max_bytes, budget)
    except DeadlineExceeded:
        raise
    except Exception:  # fail open: the page goes out as it came; the metric shows the bug
        return SkipReason.INTERNAL_ERROR


def _inject(
    body: bytes,
    banner: Banner,
    content_type: str | None,
    headers: tuple[tuple[str, ...], tuple[str, ...]],
    unstyled_ok: bool,
    max_bytes: int | None,
    budget: Budget | None,
) -> InjectResult | SkipReason:
    if max_bytes is not None and len(body) > max_bytes:
        return SkipReason.TOO_LARGE
    if not charset_ok(content_type, body[:PRESCAN_BYTES]):
        return SkipReason.CHARSET
    head = scan(body, budget)
    if isinstance(head, SkipReason):
        return head
    if head.refresh:
        return SkipReason.REFRESH
    header_csp, report_only = (_header_policies(h, banner.style_hash) for h in headers)
    policies = head.policies
    if sum(len(meta.policy or "") for meta in policies) > MAX_POLICY_TEXT:
        policies = [MetaPolicy(meta.start, meta.end, None) for meta in policies]
    meta_edits, meta_styles, meta_attributes = _allow_in_meta_policies(
        body, policies, banner.style_hash
    )
    styled = header_csp.styles_allowed and report_only.styles_allowed and meta_styles
    if not styled and not unstyled_ok:
        return SkipReason.CSP
    attributes = (
        header_csp.style_attributes_allowed
        and report_only.style_attributes_allowed
        and meta_attributes
    )
    notice = banner.markup(style_element=styled, style_attributes=attributes)
    edits = (*(meta_edits if styled else ()), Edit(head.offset, b"", notice))
    return InjectResult(
        body=_apply(body, edits),
        csp_headers=header_csp.headers if styled and header_csp.changed else None,
        styled=styled,
        offset=head.offset,
        edits=edits,
        report_only_headers=report_only.headers if styled and report_only.changed else None,
    )


def _header_policies(values: tuple[str, ...], style_hash: str) -> CspResult:
    """What header policies allow; more text than we read counts as forbidding styles."""
    if sum(len(value) for value in values) > MAX_POLICY_TEXT:
        return CspResult(values, False, False, False)
    return allow_banner_styles(values, style_hash)


def _allow_in_meta_policies(
    doc: bytes, policies: list[MetaPolicy], source: str
) -> tuple[list[Edit], bool, bool]:
    """Rewrite head meta policies' content attributes to allow our style, where needed.

    Returns the edits, whether styles are allowed and whether style attributes are."""
    edits: list[Edit] = []
    styles_allowed = attributes_allowed = True
    for meta in policies:
        if meta.policy is None:  # unreadable: assume it blocks
            styles_allowed = attributes_allowed = False
            continue
        outcome = allow_in_policy(meta.policy, source)  # one policy: commas are not special
        styles_allowed &= outcome.styles_allowed
        attributes_allowed &= outcome.style_attributes_allowed
        if outcome.text != meta.policy:
            value = outcome.text.replace("&", "&amp;").replace('"', "&quot;")
            edits.append(Edit(meta.start, doc[meta.start : meta.end], f'"{value}"'.encode()))
    return edits, styles_allowed, attributes_allowed


def _apply(doc: bytes, edits: Sequence[Edit]) -> bytes:
    pieces: list[bytes] = []
    pos = 0
    for edit in edits:
        pieces += (doc[pos : edit.start], edit.new)
        pos = edit.start + len(edit.old)
    pieces.append(doc[pos:])
    return b"".join(pieces)


def update_headers_after_injection(headers: MutableMapping[str, str]) -> None:
    """Drop what described the old body and keep the changed page out of every cache.

    Content-Length is not touched: mitmproxy sets it when the content is set.
    """
    stale = [name for name in headers if name.lower() in STALE_AFTER_INJECTION]
    for name in stale:
        del headers[name]
    existing = [name for name in headers if name.lower() == "cache-control"]
    for name in existing:
        del headers[name]
    headers["Cache-Control"] = "no-store"
