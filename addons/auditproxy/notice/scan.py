# Over 300 lines: the tree builder's modes before the body only make sense together.
"""Finding the top of the page's body, and the head's meta policies, in one linear scan.

A scan with anchored regular expressions and `bytes.find`, never a full HTML parser: it
follows the WHATWG tokenizer (`notice.tokens`) and the tree builder's modes up to the
opening of the body ("initial" to "before head", "in head", "in head noscript", "after
head", and the content of templates), and stops where the parser opens the body: after a
`<body>` start tag, or, with no such tag, before the first token that makes the parser
create one (text, an element that cannot be in the head, `</body>`, `</html>`, `</br>`).
Inserting there keeps everything the page meant for the head (notably `<meta http-equiv=
"Content-Security-Policy">`) in the head.

Scripting on or off: a `<noscript>` in the head is raw text when scripting is on and markup
(which may hold comments, or open the body) when it is off. A page with such an element is
scanned both ways; unless both put the body at the same place (or nothing but space,
comments and ignored tags lies between the two), it is skipped (`noscript`): the notice is
the first thing in the body either way, or not there at all.
What the scan cannot be sure of, it skips: frameset pages, foreign content (SVG, MathML),
`<select>` and `<col>` inside a template (they change what the tokenizer does with the
template's text), a head with more than `MAX_SCAN_STEPS` tokens it has to look at one by
one. Time is linear in the bytes scanned (no regex call reads more than a window of
`tokens.WINDOW` bytes), and a `Budget` is checked at every step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

from auditproxy.notice import tokens
from auditproxy.notice.budget import Budget
from auditproxy.notice.eligibility import is_redirect_refresh
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.tokens import ATTRIBUTE_NAME, ATTRIBUTES, NAME_END, VALUE

MAX_SCAN_STEPS: Final = 2_000  # tokens looked at one by one; bounds hostile heads
MAX_META_POLICIES: Final = 8  # meta policies read; later ones count as unreadable
# Policy text read at most, headers and meta policies each (real ones are a few KiB; reading
# costs about 1 us a byte). Beyond it a policy counts as unreadable: the unstyled notice,
# and the policy left exactly as it was.
MAX_POLICY_TEXT: Final = 32 * 1024

_NONE: Final = SkipReason.NO_INSERTION_POINT
# The tree builder's modes before the body ("initial", "before html" and "before head"
# behave alike here).
BEFORE, IN_HEAD, NOSCRIPT, AFTER = range(4)
TEMPLATE: Final = 4  # the content of a template, whatever the mode


def _raw_text_element(name: bytes, content: bytes) -> bytes:
    end_tag = b"</(?i:" + name + b")" + NAME_END + ATTRIBUTES + b">"
    return b"<(?i:" + name + b")" + NAME_END + ATTRIBUTES + b">" + content + end_tag


def _text_until_end_tag(name: bytes, *, stop: bytes = b"") -> bytes:
    return b"(?:[^<]++|<(?!" + stop + b"/(?i:" + name + b")" + NAME_END + b"))*+"


def _end_tags_except(names: bytes) -> bytes:
    return (
        rb"</(?!(?i:" + names + b")" + NAME_END + rb")[A-Za-z][^\t\n\f\r />]*+" + ATTRIBUTES + b">"
    )


# Runs of tokens that change nothing we track, consumed by one regex match in C (the fast
# path; `_Scan.token()` handles everything else one by one, and the tests check that both
# agree on any input). Common to every mode before the body: space, comments, doctypes
# and bogus comments, <html>.
_ANY_MODE = [
    rb"[\t\n\f\r ]++",
    rb"<!--(?:-?>|(?:[^-]++|-(?!-!?>))*+--!?>)",
    rb"<!(?!--)[^>]*+>|<\?[^>]*+>",
    rb"<(?i:html)" + NAME_END + ATTRIBUTES + b">",
]
# Before the head: end tags other than those that imply a head are ignored.
_SKIPPABLE_BEFORE = re.compile(
    b"(?:" + b"|".join([*_ANY_MODE, _end_tags_except(b"head|body|html|br")]) + b")*+"
)
# In the head and after it: head elements other than <meta http-equiv>, <noscript> and
# <template>, whole raw text elements (scripts only without "<!--", whose escape states
# `tokens.script_end` follows), end tags that are ignored.
_SKIPPABLE = re.compile(
    b"(?:"
    + b"|".join(
        [
            *_ANY_MODE,
            rb"<(?i:head|link|base|basefont|bgsound)" + NAME_END + ATTRIBUTES + b">",
            rb"<(?i:meta)"
            + NAME_END
            + rb"(?:[\t\n\f\r /]++|(?!(?i:http-equiv)(?:[\t\n\f\r />=]|\Z))"
            + ATTRIBUTE_NAME
            + VALUE
            + rb")*+>",
            _raw_text_element(b"script", _text_until_end_tag(b"script", stop=b"!--|")),
            *(
                _raw_text_element(name, _text_until_end_tag(name))
                for name in (b"style", b"title", b"noframes")
            ),
            _end_tags_except(b"head|body|html|br|template"),
        ]
    )
    + b")*+"
)

# Inside a template: text, and tokens that neither open nor close a template nor change how
# the tokenizer reads what follows (whole raw text elements are consumed, scripts only
# without "<!--").
_SKIPPABLE_TEMPLATE = re.compile(
    b"(?:"
    + b"|".join(
        [
            rb"(?:[^<]++|<(?![A-Za-z!?/]|\Z))++",  # text, "<" that is text among it
            # start tags, but <template>, those _UNSURE_IN_TEMPLATE, raw text and plaintext
            rb"<(?!(?i:t(?:emplate|itle|extarea)|s(?:vg|elect|cript|tyle)|math|col|xmp|iframe"
            rb"|no(?:script|embed|frames)|plaintext)"
            + NAME_END
            + rb")[A-Za-z][^\t\n\f\r />]*+"
            + ATTRIBUTES
            + b">",
            _end_tags_except(b"template"),
            rb"</>|</[^A-Za-z>][^>]*+>",
            *_ANY_MODE[1:],
            _raw_text_element(b"script", _text_until_end_tag(b"script", stop=b"!--|")),
            *(
                _raw_text_element(name, _text_until_end_tag(name))
                for name in b"style xmp iframe noembed noframes title textarea".split()
            ),
        ]
    )
    + b")*+"
)
# The fast path of each mode (none in "in head noscript", which is rare).
FAST_PATHS: Final = {
    BEFORE: _SKIPPABLE_BEFORE,
    IN_HEAD: _SKIPPABLE,
    AFTER: _SKIPPABLE,
    TEMPLATE: _SKIPPABLE_TEMPLATE,
}

# Start tags the parser keeps in the head (or puts back into it after </head>).
_HEAD_CONTENT = frozenset(
    b"base basefont bgsound link meta title noscript noframes style script template".split()
)
_NOSCRIPT_CONTENT = frozenset(b"basefont bgsound link meta noframes style".split())
# Inside a template: foreign content (CDATA sections, <style> and <script> that are not raw
# text), and modes that ignore raw text start tags (<select>, <col> right in a template).
_UNSURE_IN_TEMPLATE = frozenset(b"svg math select col".split())
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
    body_tag: bool = False  # the offset is the end of a <body> start tag


def scan(doc: bytes, budget: Budget | None = None) -> _Head | SkipReason:
    """Tokenize up to the start of the body; see the module docstring.

    Raises `DeadlineExceeded` when `budget` runs out."""
    budget = budget or Budget()
    scripting = _Scan(doc, True, budget)
    first = scripting.run()
    if not scripting.noscript_seen:
        return first  # no <noscript> where it matters: scripting changes nothing
    second = _Scan(doc, False, budget).run()
    if isinstance(first, _Head) and isinstance(second, _Head):
        if first.policies == second.policies:
            early, late = sorted((first, second), key=lambda head: head.offset)
            if early.offset == late.offset or (
                early.body_tag and _inert_in_body(doc, early.offset, late.offset)
            ):
                # A refresh inside <noscript> (a site's no-script version) is left out:
                # nearly every browser runs scripts, and would stay on this page.
                late.refresh = first.refresh
                return late
    elif first == second:
        return first
    return SkipReason.NOSCRIPT


# What adds nothing to a body that is open (html and body on the stack): space, comments,
# <html>, <body> and <head> start tags, end tags other than </p>, </br>, </body>, </html>.
_INERT_IN_BODY = re.compile(
    b"(?:"
    + b"|".join(
        [
            *_ANY_MODE,
            rb"<(?i:body|head)" + NAME_END + ATTRIBUTES + b">",
            _end_tags_except(b"p|br|body|html"),
        ]
    )
    + b")*+"
)


def _inert_in_body(doc: bytes, start: int, end: int) -> bool:
    """Whether the bytes between an explicit <body> tag and `end` add nothing to the body:
    then the notice at `end` is still the first thing in it."""
    while start < end:
        match = _INERT_IN_BODY.match(doc, start, min(end, tokens.window(doc, start)))
        if match is not None and match.end() > start:
            start = match.end()
            continue
        # Something else, or one token longer than a window: read it with the tokenizer's
        # own steps, so that the answer never depends on the window.
        after = _inert_token_end(doc, start)
        if after is None or after > end:
            return False
        start = after
    return True


_TAG_OPEN = re.compile(rb"<(/?)([A-Za-z][^\t\n\f\r />]*+)")


def _inert_token_end(doc: bytes, pos: int) -> int | None:
    """The end of one token at `pos` that adds nothing to an open body (a comment, a bogus
    comment, an <html>, <body> or <head> start tag, an end tag other than </p>, </br>,
    </body>, </html>), or None: another token, or one that never ends."""
    if doc.startswith(b"<!--", pos):
        return tokens.comment_end(doc, pos + 4)
    if doc.startswith((b"<!", b"<?"), pos):
        return tokens.after(doc, b">", pos + 2)
    opened = _TAG_OPEN.match(doc, pos, tokens.window(doc, pos))
    if opened is None or opened.end() == tokens.window(doc, pos):
        return None  # not a tag, or a name longer than a window: not sure
    name = opened[2].lower()
    if opened[1]:
        inert = name not in (b"p", b"br", b"body", b"html")
    else:
        inert = name in (b"html", b"body", b"head")
    return tokens.tag_end(doc, opened.end()) if inert else None


def _match_end(pattern: re.Pattern[bytes], doc: bytes, pos: int) -> int:
    """Where a pattern that may match nothing stops matching."""
    match = pattern.match(doc, pos)
    return pos if match is None else match.end()


class _Scan:
    """One tokenization with the scripting flag on or off."""

    __slots__ = ("budget", "doc", "head", "mode", "noscript_seen", "scripting", "templates")

    def __init__(self, doc: bytes, scripting: bool, budget: Budget) -> None:
        self.doc, self.scripting, self.budget = doc, scripting, budget
        self.head = _Head()
        self.mode = BEFORE
        self.templates = 0  # open <template> elements: their content is not the page's
        self.noscript_seen = False  # a <noscript> start tag whose content scripting changes

    def run(self) -> _Head | SkipReason:
        doc = self.doc
        pos = _match_end(tokens.LEADING, doc, 0)
        if not doc.startswith(b"<", pos):
            return _NONE  # does not look like HTML
        for _ in range(MAX_SCAN_STEPS):
            self.budget.check()  # a window of fast-path tokens, or one token, per step
            lt = self._next_markup(pos)
            if not isinstance(lt, int):
                return lt
            if lt < 0:
                return self.body_at(len(doc)) if self.templates == 0 else _NONE
            result = self.token(lt)
            if not isinstance(result, int):
                return result
            pos = result
        return _NONE

    def _next_markup(self, pos: int) -> int | _Head | SkipReason:
        """The next "<" (-1: none), or the result if text opens the body first."""
        doc = self.doc
        if self.templates:
            pos = tokens.run_end(FAST_PATHS[TEMPLATE], doc, pos)
            return doc.find(b"<", pos)  # a template's text is not the page's
        fast = FAST_PATHS.get(self.mode)
        if fast is not None:
            pos = tokens.run_end(fast, doc, pos)
        pos = tokens.space_end(doc, pos)
        lt = doc.find(b"<", pos)
        if pos != (len(doc) if lt < 0 else lt):
            return self.body_at(pos)  # text that is not space opens the body
        return lt

    def token(self, lt: int) -> int | _Head | SkipReason:
        """Consume the markup at `lt`: the next position, or the result."""
        doc = self.doc
        if doc.startswith(b"!--", lt + 1):
            end = tokens.comment_end(doc, lt + 4)
        elif doc.startswith((b"!", b"?"), lt + 1):  # doctype, CDATA outside SVG, bogus
            end = tokens.after(doc, b">", lt + 2)
        elif doc.startswith(b"/", lt + 1):
            return self.end_tag(lt)
        elif name := tokens.TAG_NAME.match(doc, lt + 1):
            end = tokens.tag_end(doc, name.end())
            if end is None:
                return _NONE  # the tag never ends
            lowered = name.group().lower()
            if self.templates:
                return self.in_template(lowered, end)
            return self.start_tag(lt, lowered, name.end(), end)
        elif self.templates == 0:
            return self.body_at(lt)  # a "<" that is text opens the body
        else:
            end = lt + 1
        return _NONE if end is None else end

    def end_tag(self, lt: int) -> int | _Head | SkipReason:
        doc = self.doc
        name_match = tokens.TAG_NAME.match(doc, lt + 2)
        if name_match is None:
            if doc.startswith(b">", lt + 2):
                return lt + 3  # "</>" is dropped
            if lt + 2 >= len(doc):
                return self.body_at(lt) if self.templates == 0 else _NONE  # "</" is text
            end = tokens.after(doc, b">", lt + 2)  # "</3" and the like: a bogus comment
            return _NONE if end is None else end
        end = tokens.tag_end(doc, name_match.end())
        if end is None:
            return _NONE
        name = name_match.group().lower()
        if self.templates:
            if name == b"template":
                self.templates -= 1  # closes the innermost template, whatever is open in it
            return end
        if self.mode == NOSCRIPT:
            if name == b"noscript":
                self.mode = IN_HEAD
            # </br> closes the noscript, then opens the body; other end tags are ignored
            return self.body_at(lt) if name == b"br" else end
        if name in (b"body", b"html", b"br"):
            return self.body_at(lt)
        if name == b"head" and self.mode != AFTER:
            self.mode = AFTER  # before the head, </head> implies a <head>, then closes it
        return end

    def start_tag(self, lt: int, name: bytes, attrs: int, end: int) -> int | _Head | SkipReason:
        mode = self.mode
        if name == b"html":
            return end  # its attributes join the root element: nothing changes here
        if mode == BEFORE:
            self.mode = mode = IN_HEAD  # <head>, or any other start tag implies a head
            if name == b"head":
                return end
        if mode == NOSCRIPT:
            if name in (b"head", b"noscript"):
                return end  # ignored
            if name in _NOSCRIPT_CONTENT:
                if name == b"meta":
                    self.note_meta(attrs, end, enforced=False)  # not a child of the head
                return self.content_end(name, end)
            self.mode = mode = IN_HEAD  # anything else closes the noscript, then goes on
        if name == b"body":
            self.head.offset, self.head.body_tag = end, True
            return self.head
        if name == b"frameset":
            return SkipReason.FRAMESET
        if name == b"head":
            return end  # ignored in the head and after it
        if name not in _HEAD_CONTENT or (mode == AFTER and name == b"noscript"):
            return self.body_at(lt)  # not head content: the parser opens the body here
        if name == b"meta":
            self.note_meta(attrs, end, enforced=True)
        elif name == b"template":
            self.templates = 1
            return end
        elif name == b"noscript":
            self.noscript_seen = True
            if not self.scripting:
                self.mode = NOSCRIPT  # its content is markup, in "in head noscript"
                return end
        return self.content_end(name, end)

    def in_template(self, name: bytes, end: int) -> int | SkipReason:
        if name == b"template":
            self.templates += 1
            return end
        if name in _UNSURE_IN_TEMPLATE:
            return _NONE
        if name == b"noscript":
            self.noscript_seen = True
            if not self.scripting:
                return end  # an ordinary element: its content is markup
        return self.content_end(name, end)

    def content_end(self, name: bytes, start: int) -> int | SkipReason:
        """Where markup resumes after a start tag: past the text of raw text elements (the
        end tag itself is then read as markup, and ignored)."""
        if name == b"script":
            close = tokens.script_end(self.doc, start)
        elif name in tokens.RAW_TEXT:
            close = tokens.raw_text_end(self.doc, name, start)
        elif name == b"plaintext":
            close = None  # the rest of the document is text
        else:
            return start
        return _NONE if close is None else close

    def body_at(self, offset: int) -> _Head | SkipReason:
        """The parser opens the body here. A later <frameset> would still replace such a
        body; our notice's text would stop that, so such pages are left alone."""
        if tokens.search(_FRAMESET, self.doc, offset, 10):
            return SkipReason.FRAMESET
        self.head.offset = offset
        return self.head

    def note_meta(self, attributes_start: int, tag_end: int, *, enforced: bool) -> None:
        doc, head = self.doc, self.head
        attributes = tokens.attributes(doc, attributes_start, tag_end - 1)
        if attributes is None:  # absurd: if it is a policy, it counts as unreadable
            if enforced:
                head.policies.append(MetaPolicy(tag_end, tag_end, None))
            return
        equiv = attributes.get(b"http-equiv")
        content = attributes.get(b"content")
        if equiv is None or content is None:
            return
        if equiv[1] - equiv[0] > 64:
            return  # no http-equiv we know is that long
        kind = (tokens.attribute_text(doc, *equiv) or "").lower()
        if kind == "content-security-policy" and enforced:
            # Beyond a few, or a long one, a policy is not read (the work would be the
            # page's to choose): it counts as unreadable, which means the unstyled notice
            # and no edit.
            read = len(head.policies) < MAX_META_POLICIES
            read = read and content[1] - content[0] <= MAX_POLICY_TEXT
            text = tokens.attribute_text(doc, *content) if read else None
            head.policies.append(MetaPolicy(content[0], content[1], text))
        elif kind == "refresh":  # only its start counts: the delay
            text = tokens.attribute_text(doc, content[0], min(content[1], content[0] + 64))
            head.refresh = head.refresh or is_redirect_refresh(text)
