"""Shared by the notice's unit tests: the banner of the example policy, and checks that a
changed page holds nothing but the notice (and our hash in its meta policies)."""

from __future__ import annotations

from pathlib import Path

from auditproxy.notice.banner import NOTICE_ID, Banner, render_banner
from auditproxy.notice.insert import InjectResult
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.scan import scan
from auditproxy.policy.load import load_policy
from support.notice import undo

REPO = Path(__file__).resolve().parents[2]
PAGES = REPO / "tests" / "fixtures" / "pages"
MAX = 5_000_000
MARK = b"^^"  # where a test expects the notice


def notice() -> Banner:
    texts = load_policy(REPO / "policy" / "department.yaml").notice.ordered_texts()
    return render_banner(texts, ack_url="/.well-known/auditproxy/ack?t=signed")


BANNER = notice()
HASH = BANNER.style_hash


def marked(doc: bytes) -> tuple[bytes, int]:
    assert doc.count(MARK) == 1
    return doc.replace(MARK, b""), doc.index(MARK)


def check_only_additions(original: bytes, result: InjectResult) -> None:
    """The notice went in once, whole; everything else is the page's own bytes."""
    assert undo(result) == original
    *meta_edits, insertion = result.edits
    assert insertion.old == b"" and insertion.start == result.offset
    assert insertion.new.startswith(f'<div id="{NOTICE_ID}"'.encode())
    assert insertion.new in {
        BANNER.html,
        BANNER.markup(style_attributes=False),
        BANNER.markup(style_element=False),
    }
    assert all(e.start < result.offset for e in meta_edits)
    assert all(e.old.count(b"sha256-") < e.new.count(b"sha256-") for e in meta_edits)


def find_insertion_point(body: bytes) -> int | None:
    """Byte offset where the notice goes: the top of the body. None when there is none."""
    head = scan(body)
    return None if isinstance(head, SkipReason) else head.offset
