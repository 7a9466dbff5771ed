"""The HTML tokenizer's states that decide where markup ends, as linear searches over bytes.

Each function follows the WHATWG tokenizer for one construct (a tag and its attributes, a
comment, a raw text or RCDATA element's text, a script's text with its escape states) and
runs in time linear in what it consumes: possessive patterns that never backtrack, and
no byte read again but a constant number of times.

No single regular expression call reads more than `WINDOW` bytes. A regex holds the GIL
for its whole call, and the scan runs in a worker thread beside the event loop: a call
over megabytes of hostile markup would hold the loop for that long. So searches go window
by window (with an overlap as long as what they look for), and patterns that consume runs
of tokens stop at a window's end without consuming what they cannot see whole: a caller
goes on from there.
"""

from __future__ import annotations

import html
import re
from typing import Final

WINDOW: Final = 64 * 1024  # bytes one regex call may read: ~3 ms at the slowest

SPACE: Final = rb"[\t\n\f\r ]"


# Character references that stand for whitespace (tab, LF, FF, CR, space): the tree builder
# treats them like the characters themselves, which keeps the parser in the head.
def _space_run(last: bytes, last_hex: bytes) -> re.Pattern[bytes]:
    reference = (
        rb"&(?:#0*+(?:9|1[023]|32)" + last + rb";?+|#[xX]0*+(?:9|[aAcCdD]|20)" + last_hex
    ) + rb";?+|Tab;|NewLine;)"
    return re.compile(b"(?:" + SPACE + b"++|" + reference + b")*+")


# At the very end of the input, and inside a window (where the byte after a number must be
# seen, not assumed: "&#9" might go on as "&#97;", an "a").
_SPACE_RUN = _space_run(rb"(?![0-9])", rb"(?![0-9a-fA-F])")
_SPACE_RUN_IN_WINDOW = _space_run(rb"(?=[^0-9])", rb"(?=[^0-9a-fA-F])")
LEADING: Final = re.compile(rb"(?:\xef\xbb\xbf)?+" + SPACE + b"*+")
TAG_NAME: Final = re.compile(rb"[A-Za-z][^\t\n\f\r />]*+")

# A tag's attributes as the tokenizer reads them. Names may start with = " ' < (not after
# a name, where "=" starts the value); a value is double-quoted, single-quoted (a ">"
# inside does not end the tag) or unquoted. A quoted value that never closes runs to the
# end of the input, so the tag never ends: the value pattern cannot fail once "=" is seen,
# and nothing is ever read twice in another way.
NAME_END: Final = rb"(?=[\t\n\f\r />])"
_VALUE = rb"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+("[^"]*+(?:"|\Z)|'[^']*+(?:'|\Z)|[^\t\n\f\r >]*+))?+"""
ATTRIBUTE_NAME: Final = rb"[^\t\n\f\r />][^\t\n\f\r />=]*+"
ATTRIBUTES: Final = rb"(?:[\t\n\f\r /]++|" + ATTRIBUTE_NAME + _VALUE + rb")*+"
VALUE: Final = _VALUE
TAG_REST: Final = re.compile(ATTRIBUTES + b">")
_ATTRIBUTE = re.compile(b"(" + ATTRIBUTE_NAME + b")" + _VALUE)
_COMMENT_END = re.compile(rb"--!?>")


def window(doc: bytes, pos: int) -> int:
    """The end of the window that starts at `pos`."""
    return min(len(doc), pos + WINDOW)


def run_end(pattern: re.Pattern[bytes], doc: bytes, pos: int) -> int:
    """Where a pattern that may match nothing stops matching, within one window."""
    found = pattern.match(doc, pos, window(doc, pos))
    return pos if found is None else found.end()


def search(
    pattern: re.Pattern[bytes], doc: bytes, pos: int, longest: int
) -> re.Match[bytes] | None:
    """`pattern.search(doc, pos)`, window by window, for a pattern whose matches are at most
    `longest` bytes long (each window overlaps the last by that much, less one)."""
    size = max(WINDOW, 2 * longest)
    while True:
        end = min(len(doc), pos + size)
        found = pattern.search(doc, pos, end)
        if found is not None or end == len(doc):
            return found
        pos = end - longest + 1


def space_end(doc: bytes, pos: int) -> int:
    """The end of a run of whitespace and whitespace character references."""
    while True:
        end = window(doc, pos)
        if end == len(doc):
            return run_end(_SPACE_RUN, doc, pos)
        stop = run_end(_SPACE_RUN_IN_WINDOW, doc, pos)
        if stop < end - 16:  # well inside the window: what stopped it is not space
            return stop
        pos = stop  # maybe a reference cut by the window: read it in the next one


def tag_end(doc: bytes, after_name: int) -> int | None:
    """End of a tag whose name ends at `after_name`; None: it never ends (end of input), or
    has more attributes than `MAX_TAG_UNITS` in more than a window (not sure).

    Only a quoted value can hold a ">": with no quote before the first one, that is the
    end (found at memchr speed). Otherwise the attributes' pattern, within a window; a
    longer tag is read state by state."""
    close = doc.find(b">", after_name)
    if close < 0:
        return None
    if doc.find(b'"', after_name, close) < 0 and doc.find(b"'", after_name, close) < 0:
        return close + 1
    end = window(doc, after_name)
    rest = TAG_REST.match(doc, after_name, end)  # a ">" found inside the window is the end
    if rest is not None:
        return rest.end()
    return None if end == len(doc) else _tag_end_by_states(doc, after_name)


MAX_TAG_UNITS: Final = 4096  # attributes read one by one in a tag longer than a window
_SPACES = re.compile(SPACE + b"*+")
_SPACES_SLASHES = re.compile(rb"[\t\n\f\r /]*+")
_NAME_RUN = re.compile(rb"[^\t\n\f\r />=]*+")
_UNQUOTED_RUN = re.compile(rb"[^\t\n\f\r >]*+")


def _skip(pattern: re.Pattern[bytes], doc: bytes, pos: int) -> int:
    """The end of a run of one character class (fast enough to need no window)."""
    found = pattern.match(doc, pos)
    return pos if found is None else found.end()


def _tag_end_by_states(doc: bytes, pos: int) -> int | None:
    """The tokenizer's attribute states, one attribute part a step (runs of one character
    class are read by the regex engine at ~1 ns a byte, quoted values by `find`)."""
    n = len(doc)
    state = "before name"  # also after a quoted value and after "/"
    for _ in range(MAX_TAG_UNITS):
        pos = _skip(_SPACES_SLASHES if state == "before name" else _SPACES, doc, pos)
        if pos >= n:
            return None
        byte = doc[pos]
        if byte == 0x3E:  # ">"
            return pos + 1
        if state == "before value" and byte in (0x22, 0x27):  # a quoted value
            closing = doc.find(bytes([byte]), pos + 1)
            if closing < 0:
                return None
            pos, state = closing + 1, "before name"
            continue
        if state == "before value":
            pos = _skip(_UNQUOTED_RUN, doc, pos)
            state = "before name"  # ended by a space (or ">", read next)
            continue
        if state == "after name" and byte in (0x3D, 0x2F):  # "=" or "/"
            pos, state = pos + 1, ("before value" if byte == 0x3D else "before name")
            continue
        # a name: its first byte may be anything but space, "/", ">" (even = " ' <)
        pos = _skip(_NAME_RUN, doc, pos + 1)
        if pos >= n:
            return None
        byte = doc[pos]
        if byte == 0x3D:
            pos, state = pos + 1, "before value"
        elif byte == 0x2F:
            pos, state = pos + 1, "before name"
        elif byte != 0x3E:
            state = "after name"
    return None


def after(doc: bytes, needle: bytes, start: int) -> int | None:
    found = doc.find(needle, start)
    return None if found < 0 else found + len(needle)


def comment_end(doc: bytes, start: int) -> int | None:
    """End of a comment whose "<!--" ends at `start` ("<!-->" and "<!--->" are complete)."""
    if doc.startswith(b">", start):
        return start + 1
    if doc.startswith(b"->", start):
        return start + 2
    found = search(_COMMENT_END, doc, start, 4)
    return None if found is None else found.end()


def case_insensitive(name: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else bytes([c]) for c in name)


# Raw text (style, xmp, iframe, noembed, noframes; noscript with scripting on) and RCDATA
# (title, textarea): text up to the first "</name" followed by space, "/" or ">".
RAW_TEXT: Final = frozenset(b"style xmp iframe noembed noframes noscript title textarea".split())
_DELIMITER = rb"[\t\n\f\r />]"  # what ends a tag name
_END_TAG = {
    name: re.compile(b"</" + case_insensitive(name) + _DELIMITER) for name in (*RAW_TEXT, b"script")
}


def raw_text_end(doc: bytes, name: bytes, start: int) -> int | None:
    """Start of the end tag that closes a raw text or RCDATA element's text."""
    found = search(_END_TAG[name], doc, start, len(name) + 3)
    return None if found is None else found.start()


# A script's text, following the tokenizer's escape states (a finite automaton) as regular
# expressions: plain script data runs to "<!--" (escaped) or "</script"; escaped text runs
# to "-->" (back to data), "</script" (the end) or "<script" (double escaped); double
# escaped text runs to "-->" (data) or "</script" (back to escaped). "<!-->" ends at once:
# the "--" of "<!--" count for "-->", so the escaped part starts after "<!". Each pattern
# follows every switch it can see whole inside its window, and stops before a "<" or "-"
# too close to the window's end to tell what it starts; `script_end` reads what stopped it.
_SCRIPT = rb"(?i:script)" + _DELIMITER
_NEAR_END = rb"[\s\S]{0,8}\Z"  # fewer than 9 bytes left: "</script>" cannot be seen
_DATA_RUN = rb"(?:[^<]++|<(?!!--|/" + _SCRIPT + b"|" + _NEAR_END + rb"))*+"
_DASH = rb"-(?!->|[\s\S]?\Z)"
_ESCAPED_RUN = rb"(?:[^<-]++|" + _DASH + rb"|<(?!/?" + _SCRIPT + b"|" + _NEAR_END + rb"))*+"
_DOUBLE_RUN = rb"(?:[^<-]++|" + _DASH + rb"|<(?!/" + _SCRIPT + b"|" + _NEAR_END + rb"))*+"
_ESCAPED = (
    _ESCAPED_RUN + rb"(?:<" + _SCRIPT + _DOUBLE_RUN
    + rb"(?:</" + _SCRIPT + _ESCAPED_RUN + rb"|(?=-->)))*+"
)  # fmt: skip
_DATA = _DATA_RUN + rb"(?:<!" + _ESCAPED + b"-->" + _DATA_RUN + rb")*+"
DATA, ESCAPED, DOUBLE = range(3)
_FROM_STATE = {
    DATA: re.compile(_DATA),
    ESCAPED: re.compile(_ESCAPED + rb"(?:-->(?P<data>)" + _DATA + rb")?+"),
    DOUBLE: re.compile(_DOUBLE_RUN),
}
_SCRIPT_CLOSE = re.compile(b"</" + _SCRIPT)
_SCRIPT_OPEN = re.compile(b"<" + _SCRIPT)


def script_end(doc: bytes, pos: int) -> int | None:
    """Start of the `</script` that ends a script's text starting at `pos`, or None."""
    state = DATA
    while True:
        found = _FROM_STATE[state].match(doc, pos, window(doc, pos))
        pos = pos if found is None else found.end()
        if state == ESCAPED and found is not None and found.group("data") is not None:
            state = DATA
        # What stopped the pattern, read with the whole document:
        if _SCRIPT_CLOSE.match(doc, pos):
            if state != DOUBLE:
                return pos
            state, pos = ESCAPED, pos + 9
        elif state == DATA and doc.startswith(b"<!--", pos):
            state, pos = ESCAPED, pos + 2
        elif state != DATA and doc.startswith(b"-->", pos):
            state, pos = DATA, pos + 3
        elif state == ESCAPED and _SCRIPT_OPEN.match(doc, pos):
            state, pos = DOUBLE, pos + 8
        elif pos >= len(doc):
            return None
        else:
            pos += 1  # the window's end, or a byte it stopped short of: plain text here


MAX_ATTRIBUTES: Final = 256  # attributes read from a tag whose attributes matter (<meta>)


def attributes(doc: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]] | None:
    """Each attribute's value span (quotes included); the first of duplicates wins. None
    for a tag with more than `MAX_ATTRIBUTES` (what it means is not worth the work)."""
    found: dict[bytes, tuple[int, int]] = {}
    for count, match in enumerate(_ATTRIBUTE.finditer(doc, start, end)):
        if count == MAX_ATTRIBUTES:
            return None
        name = match.group(1).lower()
        if name not in found:
            span = match.span(2) if match.group(2) is not None else (match.end(), match.end())
            found[name] = span
    return found


_BARE_AMPERSAND = re.compile(r"&(?![A-Za-z][A-Za-z0-9]*+;|#[0-9]++;|#[xX][0-9A-Fa-f]++;)")


def attribute_text(doc: bytes, start: int, end: int) -> str | None:
    """An attribute value as text; None when character references make it ambiguous."""
    raw = doc[start:end]
    if raw[:1] in (b'"', b"'") and len(raw) >= 2:
        raw = raw[1:-1]
    text = raw.decode("latin-1")
    if "&" in text:
        if _BARE_AMPERSAND.search(text):
            return None  # legacy references without ";" depend on context
        text = html.unescape(text)
    return text
