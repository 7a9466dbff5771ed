"""The HTML tokenizer's states that decide where markup ends, as linear searches over bytes.

Each function follows the WHATWG tokenizer for one construct (a tag and its attributes, a
comment, a raw text or RCDATA element's text, a script's text with its escape states) and
runs in time linear in what it consumes: possessive patterns that never backtrack, and
searches that are never repeated over the same bytes (`script_end` keeps the next match of
each of its patterns until the position passes it).
"""

from __future__ import annotations

import html
import re
from typing import Final

SPACE: Final = rb"[\t\n\f\r ]"
# Character references that stand for whitespace (tab, LF, FF, CR, space): the tree builder
# treats them like the characters themselves, which keeps the parser in the head.
_SPACE_REFERENCE = (
    rb"&(?:#0*+(?:9|1[023]|32)(?![0-9]);?+|#[xX]0*+(?:9|[aAcCdD]|20)(?![0-9a-fA-F]);?+"
    rb"|Tab;|NewLine;)"
)
SPACE_RUN: Final = re.compile(b"(?:" + SPACE + b"++|" + _SPACE_REFERENCE + b")*+")
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


def tag_end(doc: bytes, after_name: int) -> int | None:
    """End of a tag whose name ends at `after_name`; None: it never ends (end of input)."""
    rest = TAG_REST.match(doc, after_name)
    return None if rest is None else rest.end()


def after(doc: bytes, needle: bytes, start: int) -> int | None:
    found = doc.find(needle, start)
    return None if found < 0 else found + len(needle)


def comment_end(doc: bytes, start: int) -> int | None:
    """End of a comment whose "<!--" ends at `start` ("<!-->" and "<!--->" are complete)."""
    if doc.startswith(b">", start):
        return start + 1
    if doc.startswith(b"->", start):
        return start + 2
    found = _COMMENT_END.search(doc, start)
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
    found = _END_TAG[name].search(doc, start)
    return None if found is None else found.start()


# A script's text, following the tokenizer's escape states as one regular expression (they
# are a finite automaton): plain script data runs to "<!--" (escaped) or "</script"; escaped
# text runs to "-->" (back to data), "</script" (the end) or "<script" (double escaped);
# double escaped text runs to "-->" (data) or "</script" (back to escaped). "<!-->" ends at
# once: the "--" of "<!--" count for "-->", so the escaped part starts after "<!".
_SCRIPT = rb"(?i:script)" + _DELIMITER
_DATA_RUN = rb"(?:[^<]++|<(?!!--|/" + _SCRIPT + rb"))*+"
_ESCAPED_RUN = rb"(?:[^<-]++|-(?!->)|<(?!/?" + _SCRIPT + rb"))*+"
_DOUBLE_RUN = rb"(?:[^<-]++|-(?!->)|<(?!/" + _SCRIPT + rb"))*+"
_ESCAPED = (
    _ESCAPED_RUN
    + rb"(?:<"
    + _SCRIPT
    + _DOUBLE_RUN
    + rb"(?:</"
    + _SCRIPT
    + _ESCAPED_RUN
    + rb"|(?=-->)))*+"
)
_SCRIPT_TEXT = re.compile(
    _DATA_RUN
    + rb"(?:<!"
    + _ESCAPED
    + b"-->"
    + _DATA_RUN
    + rb")*+(?:<!"
    + _ESCAPED
    + rb")?+(?=</"
    + _SCRIPT
    + b")"
)


def script_end(doc: bytes, pos: int) -> int | None:
    """Start of the `</script` that ends a script's text starting at `pos`: one match of a
    pattern that never backtracks more than one step of its outer loop (linear)."""
    found = _SCRIPT_TEXT.match(doc, pos)
    return None if found is None else found.end()


def attributes(doc: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """Each attribute's value span (quotes included); the first of duplicates wins."""
    found: dict[bytes, tuple[int, int]] = {}
    for match in _ATTRIBUTE.finditer(doc, start, end):
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
