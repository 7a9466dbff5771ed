"""What tests of the notice share: how a page request looks, how the notice is found, and
the oracle that takes it out again."""

from __future__ import annotations

import html
import re
from typing import Any

from auditproxy.notice.insert import InjectResult
from auditproxy.notice.ownpaths import READING_SECONDS

# The headers a browser sends when a person opens a page (a top-level navigation).
DOCUMENT = {
    "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
}
# The headers of a person's own click on a link of a page of the same site (what the proxy
# asks of the acknowledgement link): a navigation with the person's activation.
CLICK = {**DOCUMENT, "Sec-Fetch-User": "?1", "Sec-Fetch-Site": "same-origin"}
# The person's click on "I understand" in the proxy's confirmation page: the page is an
# opaque origin (sandboxed), so the browser calls the navigation cross-site.
CONFIRM_CLICK = {**CLICK, "Sec-Fetch-Site": "cross-site"}
# The notice in a page's bytes (the interface contract's element id).
NOTICE = b'id="auditproxy-notice"'

_CONFIRMATION = re.compile(rb'<a class="ack" href="([^"]+)"')


def time_to_read(harness: Any) -> None:
    """The person reads the confirmation page before clicking its "I understand" (a
    quicker click gets the page again): the proxy's clock moves on in an add-on test."""
    calendar = harness.addon.runtime.calendar
    clock = calendar.clock
    calendar.clock = lambda: clock() + READING_SECONDS + 1


def confirmation_link(page: bytes) -> str:
    """The link of "I understand" in the proxy's confirmation page (one for all languages)."""
    links = {html.unescape(m.decode("ascii")) for m in _CONFIRMATION.findall(page)}
    assert len(links) == 1, f"not one confirmation link: {links}"
    return links.pop()


def undo(result: InjectResult) -> bytes:
    """The original body, from the changed one and its edits: the proof that only the
    notice was added and nothing of the page was damaged."""
    pieces, new_pos, old_pos = [], 0, 0
    for edit in result.edits:
        unchanged = edit.start - old_pos
        pieces.append(result.body[new_pos : new_pos + unchanged])
        new_pos += unchanged
        assert result.body[new_pos : new_pos + len(edit.new)] == edit.new
        pieces.append(edit.old)
        new_pos += len(edit.new)
        old_pos = edit.start + len(edit.old)
    pieces.append(result.body[new_pos:])
    return b"".join(pieces)
