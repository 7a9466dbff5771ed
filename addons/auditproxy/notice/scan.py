# Over 300 lines: one tokenizer, whose states only make sense together (issue #13 rewrites it).
"""Finding the top of the page's body, and the head's meta policies, in one scan.

A scan with anchored regular expressions and `bytes.find`, never an HTML parser (about
0.3 ms for a 2 MB page with a 130 KB head, a tenth of what html.parser needs just to reach
its <body>). It follows the HTML tokenizer wherever that matters for the start of the
body: comments, bogus comments and doctypes, quoted attribute values, the raw-text
elements script (with its escape states), style, noscript (scripting on, as in nearly
every browser) and noframes, the RCDATA title and textarea, and templates. It stops where
the tree builder opens the body: after a `<body>` start tag, or, in a page with no
`<body>` tag, before the first token that makes the parser create one implicitly (text,
an element that cannot be in the head, `</body>`, `</html>`). Inserting there keeps
everything the page meant for the head (notably `<meta http-equiv=
"Content-Security-Policy">`) in the head. Frameset pages are never touched.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Final

from auditproxy.notice.eligibility import is_redirect_refresh
from auditproxy.notice.reasons import SkipReason

MAX_SCAN_STEPS: Final = 10_000  # tokens looked at one by one; bounds hostile heads


_LEADING_SPACE = re.compile(rb"(?:\xef\xbb\xbf)?[\t\n\f\r ]*")
_NOT_SPACE = re.compile(rb"[^\t\n\f\r ]")
_TAG_NAME = re.compile(rb"[A-Za-z][^\t\n\f\r />]*")
# A tag's attributes as the tokenizer reads them: names may start with = " ' <; values are
# double-quoted, single-quoted (a > inside does not end the tag) or unquoted. Possessive
# quantifiers keep every pattern here linear on hostile input.
_NAME_END = rb"(?=[\t\n\f\r />])"
_VALUE = rb"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+("[^"]*+"|'[^']*+'|[^\t\n\f\r >]*+))?+"""
_ATTRIBUTE_NAME = rb"[^\t\n\f\r />][^\t\n\f\r />=]*+"
_ATTRIBUTES = rb"(?:[\t\n\f\r /]++|" + _ATTRIBUTE_NAME + _VALUE + rb")*+"
_TAG_REST = re.compile(_ATTRIBUTES + b">")
_ATTRIBUTE = re.compile(b"(" + _ATTRIBUTE_NAME + b")" + _VALUE)
_COMMENT_END = re.compile(rb"--!?>")


def _raw_text_element(name: bytes, content: bytes) -> bytes:
    return (
        b"<(?i:"
        + name
        + b")"
        + _NAME_END
        + _ATTRIBUTES
        + b">"
        + content
        + b"</(?i:"
        + name
        + b")"
        + _NAME_END
        + _ATTRIBUTES
        + b">"
    )


def _text_until_end_tag(name: bytes, *, stop: bytes = b"") -> bytes:
    return b"(?:[^<]++|<(?!" + stop + b"/(?i:" + name + b")" + _NAME_END + b"))*+"


# Runs of head tokens that can neither open the body nor matter to us, consumed by one
# regex match in C (the scan's fast path; _token() handles everything else one by one):
# space, comments, doctypes, head elements other than <meta http-equiv> and <template>,
# whole raw text elements (scripts only without "<!--", whose escape states _token()
# follows), end tags other than </body>, </html>, </br>.
_SKIPPABLE = re.compile(
    b"(?:"
    + b"|".join(
        [
            rb"[\t\n\f\r ]++",
            rb"<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)",
            rb"<!(?!--)[^>]*+>|<\?[^>]*+>",
            rb"<(?i:html|head|link|base|basefont|bgsound)" + _NAME_END + _ATTRIBUTES + b">",
            rb"<(?i:meta)"
            + _NAME_END
            + rb"(?:[\t\n\f\r /]++|(?!(?i:http-equiv)(?:[\t\n\f\r />=]|\Z))"
            + _ATTRIBUTE_NAME
            + _VALUE
            + rb")*+>",
            _raw_text_element(b"script", _text_until_end_tag(b"script", stop=b"!--|")),
            *(
                _raw_text_element(name, _text_until_end_tag(name))
                for name in (b"style", b"title", b"noscript", b"noframes")
            ),
            rb"</(?!(?i:body|html|br)"
            + _NAME_END
            + rb")[A-Za-z][^\t\n\f\r />]*+"
            + _ATTRIBUTES
            + b">",
        ]
    )
    + b")*+"
)
# Elements the parser keeps in (or moves back to) the head: before the body, any other
# start tag makes the parser open the body implicitly.
_HEAD_ELEMENTS = frozenset(
    {b"html", b"head", b"base", b"basefont", b"bgsound", b"link", b"meta", b"title"}
    | {b"noscript", b"noframes", b"style", b"script", b"template"}
)
_BODY_OPENING_END_TAGS = frozenset({b"body", b"html", b"br"})
# Elements whose content is text up to their end tag (raw text and RCDATA; script aside).
_RAW_TEXT = frozenset(b"style xmp iframe noembed noframes noscript title textarea".split())


def _case_insensitive(name: bytes) -> bytes:
    return b"".join(b"[%c%c]" % (c, c ^ 0x20) if chr(c).isalpha() else bytes([c]) for c in name)


def _end_tag_pattern(name: bytes) -> re.Pattern[bytes]:
    # A literal "</" prefix lets the regex engine skip ahead fast.
    return re.compile(b"</" + _case_insensitive(name) + rb"[\t\n\f\r />]")


_END_TAG = {name: _end_tag_pattern(name) for name in (*_RAW_TEXT, b"script")}
_SCRIPT_START = re.compile(b"<" + _case_insensitive(b"script") + rb"[\t\n\f\r />]")
_FRAMESET = re.compile(rb"<frameset[\t\n\f\r />]", re.I)


@dataclass(frozen=True, slots=True)
class MetaPolicy:
    """A `<meta http-equiv="Content-Security-Policy">` in the head."""

    start: int  # the content attribute's value, quotes included
    end: int
    policy: str | None  # its text; None when it cannot be read and rewritten safely


@dataclass(slots=True)
class _Head:
    """What the scan learnt before the insertion point."""

    offset: int = -1
    policies: list[MetaPolicy] = field(default_factory=list)
    refresh: bool = False


def scan(doc: bytes) -> _Head | SkipReason:
    """Tokenize up to the start of the body; see the module docstring.

    `_SKIPPABLE` consumes runs of ordinary head tokens in C; `_token()` then deals with the
    one token that stopped it (tests check both paths agree on any input)."""
    head = _Head()
    pos = _match_end(_LEADING_SPACE, doc, 0)
    if not doc.startswith(b"<", pos):
        return SkipReason.NO_INSERTION_POINT  # does not look like HTML
    templates = 0  # open <template> elements: their content is not the page's
    for _ in range(MAX_SCAN_STEPS):
        if templates == 0:
            pos = _match_end(_SKIPPABLE, doc, pos)
        lt = doc.find(b"<", pos)
        text_end = len(doc) if lt < 0 else lt
        text = _NOT_SPACE.search(doc, pos, text_end) if templates == 0 else None
        if text is not None:
            return _implicit_body(doc, head, text.start())  # text opens the body
        if lt < 0:
            return _implicit_body(doc, head, len(doc)) if templates == 0 else _NONE
        step = _token(doc, lt, head, templates)
        if isinstance(step, _Stop):
            return step.result
        pos, templates = step
    return SkipReason.NO_INSERTION_POINT


_NONE = SkipReason.NO_INSERTION_POINT


def _match_end(pattern: re.Pattern[bytes], doc: bytes, pos: int) -> int:
    """Where a pattern that may match nothing stops matching."""
    match = pattern.match(doc, pos)
    return pos if match is None else match.end()


@dataclass(frozen=True, slots=True)
class _Stop:
    result: _Head | SkipReason


def _token(doc: bytes, lt: int, head: _Head, templates: int) -> tuple[int, int] | _Stop:
    """Consume the markup at `lt`: (next position, open templates), or where to stop."""
    if doc.startswith(b"!--", lt + 1):
        end = _comment_end(doc, lt + 4)
    elif doc.startswith((b"!", b"?"), lt + 1):  # doctype, CDATA outside SVG, bogus comment
        end = _after(doc, b">", lt + 2)
    elif doc.startswith(b"/", lt + 1):
        return _end_tag(doc, lt, head, templates)
    elif name := _TAG_NAME.match(doc, lt + 1):
        return _start_tag(doc, lt, name, head, templates)
    elif templates == 0:
        return _Stop(_implicit_body(doc, head, lt))  # a "<" that is text opens the body
    else:
        end = lt + 1
    return _Stop(_NONE) if end is None else (end, templates)


def _start_tag(
    doc: bytes, lt: int, name_match: re.Match[bytes], head: _Head, templates: int
) -> tuple[int, int] | _Stop:
    rest = _TAG_REST.match(doc, name_match.end())
    if rest is None:
        return _Stop(_NONE)  # the tag never ends
    name, end = name_match.group().lower(), rest.end()
    if templates == 0:
        if name == b"body":
            head.offset = end
            return _Stop(head)
        if name == b"frameset":
            return _Stop(SkipReason.FRAMESET)
        if name not in _HEAD_ELEMENTS:
            return _Stop(_implicit_body(doc, head, lt))
        if name == b"meta":
            _note_meta(doc, name_match.end(), end, head)
    if name == b"template":
        templates += 1
    content_end = _content_end(doc, name, end)
    return _Stop(_NONE) if content_end is None else (content_end, templates)


def _end_tag(doc: bytes, lt: int, head: _Head, templates: int) -> tuple[int, int] | _Stop:
    name_match = _TAG_NAME.match(doc, lt + 2)
    if name_match is None:  # "</>" is dropped; "</3" and the like are bogus comments
        end = _after(doc, b">", lt + 2)
        return _Stop(_NONE) if end is None else (end, templates)
    rest = _TAG_REST.match(doc, name_match.end())
    if rest is None:
        return _Stop(_NONE)
    name = name_match.group().lower()
    if templates == 0 and name in _BODY_OPENING_END_TAGS:
        return _Stop(_implicit_body(doc, head, lt))
    if name == b"template" and templates > 0:
        templates -= 1
    return rest.end(), templates


def _implicit_body(doc: bytes, head: _Head, offset: int) -> _Head | SkipReason:
    """The parser opens the body here. A later <frameset> would still replace such a body;
    our notice's text would stop that, so such pages are left alone."""
    if _FRAMESET.search(doc, offset):
        return SkipReason.FRAMESET
    head.offset = offset
    return head


def _after(doc: bytes, needle: bytes, start: int) -> int | None:
    found = doc.find(needle, start)
    return None if found < 0 else found + len(needle)


def _comment_end(doc: bytes, start: int) -> int | None:
    """End of a comment whose "<!--" ends at `start` ("<!-->" and "<!--->" are complete)."""
    if doc.startswith(b">", start):
        return start + 1
    if doc.startswith(b"->", start):
        return start + 2
    found = _COMMENT_END.search(doc, start)
    return None if found is None else found.end()


def _content_end(doc: bytes, name: bytes, start: int) -> int | None:
    """Where markup resumes after a start tag: past the text of raw text elements."""
    if name == b"script":
        close = _script_end(doc, start)
    elif name in _RAW_TEXT:
        found = _END_TAG[name].search(doc, start)
        close = None if found is None else found.start()
    elif name == b"plaintext":
        close = None  # the rest of the document is text
    else:
        return start
    return close  # the end tag itself is then read as markup


def _script_end(doc: bytes, pos: int) -> int | None:
    """Start of the `</script` that ends a script. Follows the tokenizer's escape states:
    after "<!--", a "<script" makes the next "</script" close only that inner one, until
    "-->"."""
    state = "data"  # or "escaped" (after "<!--"), "double" (after "<!--" and "<script")
    while True:
        close = _END_TAG[b"script"].search(doc, pos)
        close_at = len(doc) if close is None else close.start()
        if state == "data":
            opener = doc.find(b"<!--", pos, close_at)
            if opener < 0:
                return None if close is None else close_at
            state, pos = "escaped", opener + 2  # "<!-->" ends at once: "--" counts for "-->"
            continue
        exit_at = doc.find(b"-->", pos, close_at)
        limit = close_at if exit_at < 0 else exit_at
        inner = _SCRIPT_START.search(doc, pos, limit) if state == "escaped" else None
        if inner is not None:
            state, pos = "double", inner.end()
        elif exit_at >= 0:
            state, pos = "data", exit_at + 3
        elif close is None:
            return None
        elif state == "escaped":
            return close_at
        else:
            state, pos = "escaped", close.end()


def _note_meta(doc: bytes, attributes_start: int, tag_end: int, head: _Head) -> None:
    attributes = _attributes(doc, attributes_start, tag_end - 1)
    equiv = attributes.get(b"http-equiv")
    content = attributes.get(b"content")
    if equiv is None or content is None:
        return
    kind = (_attribute_text(doc, *equiv) or "").lower()
    text = _attribute_text(doc, *content)
    if kind == "content-security-policy":
        head.policies.append(MetaPolicy(content[0], content[1], text))
    elif kind == "refresh":
        head.refresh = head.refresh or is_redirect_refresh(text)


def _attributes(doc: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """Each attribute's value span (quotes included); the first of duplicates wins."""
    found: dict[bytes, tuple[int, int]] = {}
    for match in _ATTRIBUTE.finditer(doc, start, end):
        name = match.group(1).lower()
        if name not in found:
            span = match.span(2) if match.group(2) is not None else (match.end(), match.end())
            found[name] = span
    return found


_BARE_AMPERSAND = re.compile(r"&(?![A-Za-z][A-Za-z0-9]*;|#[0-9]+;|#[xX][0-9A-Fa-f]+;)")


def _attribute_text(doc: bytes, start: int, end: int) -> str | None:
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
