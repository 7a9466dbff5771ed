"""What tests of the notice share: how a page request looks, how the notice is found, and
the oracle that takes it out again."""

from __future__ import annotations

import html.parser
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from auditproxy.notice.confirmation import CODE_FIELD
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


def time_to_read(harness: Any) -> None:
    """The person reads the confirmation page before clicking its "I understand" (a
    quicker click gets the page again): the proxy's clock moves on in an add-on test."""
    calendar = harness.addon.runtime.calendar
    clock = calendar.clock
    calendar.clock = lambda: clock() + READING_SECONDS + 1


class _Forms(html.parser.HTMLParser):
    """Each form's action and the fields a browser sends with it: its hidden inputs, and
    its text inputs as `typed` says (by name)."""

    def __init__(self, typed: dict[str, str]) -> None:
        super().__init__(convert_charrefs=True)
        self.typed, self.forms = typed, []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "form":
            assert (a.get("method") or "get").lower() == "get", a
            self.forms.append((a.get("action") or "", []))
        elif tag == "input" and self.forms:
            if (a.get("type") or "text").lower() == "hidden":
                self.forms[-1][1].append((a["name"], a.get("value") or ""))
            else:
                self.forms[-1][1].append((a["name"], self.typed[a["name"]]))


def form_links(page: bytes, typed: dict[str, str] | None = None) -> set[str]:
    """The URL each of the page's GET forms sends the browser to when pressed."""
    parser = _Forms(typed or {})
    parser.feed(page.decode("ascii"))
    parser.close()
    return {f"{action}?{urlencode(fields, quote_via=quote)}" for action, fields in parser.forms}


_CODE = re.compile(rb'<strong class="code"[^>]* data-n="([0-9]+)"></strong>')


def shown_code(page: bytes) -> str | None:
    """The number the "I understand" page asks the person to type (the same in each
    language), or None on a page that asks none."""
    codes = {m.decode() for m in _CODE.findall(page)}
    assert len(codes) <= 1, codes
    return codes.pop() if codes else None


def confirmation_link(page: bytes, typed: str | None = None) -> str:
    """Where the button of a confirmation page ("I have read this reminder", then "I
    understand") takes the browser (one form per language, one link for all), the number
    the page shows typed in (or `typed`)."""
    code = shown_code(page)
    links = form_links(page, {CODE_FIELD: typed if typed is not None else code or ""})
    assert len(links) == 1, f"not one confirmation link: {links}"
    return links.pop()


def through_confirmation(
    first_page: bytes, answer: Callable[[str], bytes], wait: Callable[[], None]
) -> str:
    """The person on the proxy's confirmation pages: reads the first (`wait`), presses "I
    have read this reminder" (`answer(link)`: the next page's body), reads that page and
    returns the link of its "I understand"."""
    wait()
    second_page = answer(confirmation_link(first_page))
    wait()
    return confirmation_link(second_page)


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
