"""The tokenizer's linear searches (`notice.tokens`) against a character-by-character
reading of the WHATWG tokenizer's states."""

from __future__ import annotations

from unittest.mock import patch

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from auditproxy.notice import tokens

_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_DELIMITERS = frozenset(b"\t\n\f\r />")


def reference_script_end(doc: bytes, pos: int) -> int | None:
    """The script data states of the HTML tokenizer, one character at a time: where the
    `</script` that ends the script starts, or None."""
    state, i, buffer, tag_start = "data", pos, b"", 0
    while i < len(doc):
        c = doc[i]
        reconsume = False
        if state == "data":
            state = "lt" if c == 0x3C else "data"
        elif state == "lt":
            if c == 0x2F:
                state, buffer, tag_start = "end open", b"", i - 1
            elif c == 0x21:
                state = "escape start"
            else:
                state, reconsume = "data", True
        elif state in ("end open", "escaped end open"):
            back = "data" if state == "end open" else "escaped"
            if c in _ALPHA:
                state, reconsume = ("end name" if back == "data" else "escaped end name"), True
            else:
                state, reconsume = back, True
        elif state in ("end name", "escaped end name"):
            back = "data" if state == "end name" else "escaped"
            if c in _DELIMITERS and buffer == b"script":
                return tag_start
            if c in _ALPHA:
                buffer += bytes([c]).lower()
            else:
                state, reconsume = back, True
        elif state == "escape start":
            state, reconsume = ("escape start dash", False) if c == 0x2D else ("data", True)
        elif state == "escape start dash":
            state, reconsume = ("escaped dash dash", False) if c == 0x2D else ("data", True)
        elif state in ("escaped", "escaped dash", "escaped dash dash"):
            if c == 0x2D:
                state = {"escaped": "escaped dash"}.get(state, "escaped dash dash")
            elif c == 0x3C:
                state = "escaped lt"
            elif c == 0x3E and state == "escaped dash dash":
                state = "data"
            else:
                state = "escaped"
        elif state == "escaped lt":
            if c == 0x2F:
                state, buffer, tag_start = "escaped end open", b"", i - 1
            elif c in _ALPHA:
                state, buffer, reconsume = "double start", b"", True
            else:
                state, reconsume = "escaped", True
        elif state in ("double start", "double end"):
            inside, outside = (
                ("double", "escaped") if state == "double start" else ("escaped", "double")
            )
            if c in _DELIMITERS:
                state = inside if buffer == b"script" else outside
            elif c in _ALPHA:
                buffer += bytes([c]).lower()
            else:
                state, reconsume = outside, True
        elif state in ("double", "double dash", "double dash dash"):
            if c == 0x2D:
                state = {"double": "double dash"}.get(state, "double dash dash")
            elif c == 0x3C:
                state = "double lt"
            elif c == 0x3E and state == "double dash dash":
                state = "data"
            else:
                state = "double"
        elif state == "double lt":
            if c == 0x2F:
                state, buffer = "double end", b""
            else:
                state, reconsume = "double", True
        if not reconsume:
            i += 1
    return None


_PIECES = st.sampled_from(
    [
        b"<!--",
        b"-->",
        b"-",
        b"--",
        b"<",
        b">",
        b"!",
        b"/",
        b"x",
        b" ",
        b"<!-",
        b"<!",
        b"<script>",
        b"</script>",
        b"<SCRIPT ",
        b"</ScRiPt/",
        b"<script",
        b"</script",
        b"</scripts>",
        b"<scriptx>",
        b"--!>",
        b"<<",
        b"</",
        b"\n",
    ]
)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_PIECES, max_size=24).map(b"".join))
@example(b"<!--<script></script>--></script>")
@example(b"<!--<script>--></script>")
@example(b"<!-- </script>")
@example(b"<!--->x</script>")
@example(b"<!-<!--</script>")
def test_script_end_follows_the_tokenizer(text: bytes) -> None:
    assert tokens.script_end(text, 0) == reference_script_end(text, 0)


@pytest.mark.parametrize("size", [10_000, 200_000])
def test_script_end_is_linear_on_escape_switches(size: int) -> None:
    """Once worse than quadratic: every "<!-->" searched again for "</script"."""
    for piece in (b"<!-->", b"<!--<script>-->", b"<!--<script></script>"):
        text = piece * (size // len(piece))
        assert tokens.script_end(text, 0) is None
        assert tokens.script_end(text + b"</script>", 0) == len(text)


def test_tag_end_never_reads_an_unclosed_quote_as_unquoted() -> None:
    """`<meta a="<body>` never ends: the value runs to the end of the input."""
    assert tokens.tag_end(b'<meta a="x><body>', 5) is None
    assert tokens.tag_end(b"<meta a='x><body>", 5) is None
    assert tokens.tag_end(b"<meta a=>", 5) == 9
    assert tokens.tag_end(b'<meta a="1"="x>', 5) == 15
    assert tokens.tag_end(b"<meta a = b>", 5) == 12


# --- windows: no regex call reads more than WINDOW bytes, and nothing changes -------------

_ATTRIBUTE_PIECES = st.sampled_from(
    [b" ", b"a", b"=", b'"', b"'", b">", b"/", b"<", b"x=y", b' b="1>2"', b"\n", b"=="]
)


def reference_tag_end(doc: bytes, pos: int) -> int | None:
    """The tokenizer's attribute states, one character at a time."""
    state = "before name"
    spaces = b"\t\n\f\r "
    while pos < len(doc):
        c = doc[pos : pos + 1]
        pos += 1
        if state in ("before name", "after value"):
            if c == b">":
                return pos
            if c not in spaces + b"/":
                state = "name"
        elif state == "name":
            if c == b">":
                return pos
            state = {b"=": "before value", b"/": "before name"}.get(c, state)
            if c in spaces:
                state = "after name"
        elif state == "after name":
            if c == b">":
                return pos
            if c == b"=":
                state = "before value"
            elif c == b"/":
                state = "before name"
            elif c not in spaces:
                state = "name"
        elif state == "before value":
            if c == b">":
                return pos
            if c in (b'"', b"'"):
                state = "quoted " + c.decode()
            elif c not in spaces:
                state = "unquoted"
        elif state.startswith("quoted"):
            if c.decode("latin-1") == state[-1]:
                state = "after value"
        elif state == "unquoted":
            if c == b">":
                return pos
            if c in spaces:
                state = "before name"
    return None


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_ATTRIBUTE_PIECES, max_size=30).map(b"".join), st.sampled_from([8, 13, 64]))
@example(b"a=\"1\" b='>' c", 8)
def test_tag_end_follows_the_tokenizer_in_any_window(text: bytes, size: int) -> None:
    with patch.object(tokens, "WINDOW", size), patch.object(tokens, "MAX_TAG_UNITS", 10_000):
        assert tokens.tag_end(b"<a" + text, 2) == reference_tag_end(b"<a" + text, 2)


@settings(max_examples=2000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(_PIECES, max_size=40).map(b"".join), st.sampled_from([12, 17, 40]))
@example(b"<!--<script>--></script>", 12)
def test_script_end_is_the_same_in_any_window(text: bytes, size: int) -> None:
    with patch.object(tokens, "WINDOW", size):
        assert tokens.script_end(text, 0) == reference_script_end(text, 0)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.lists(
        st.sampled_from([b" ", b"\n", b"&#32;", b"&#9", b"&#97;", b"&Tab;", b"&#x20", b"x", b"<"]),
        max_size=30,
    ).map(b"".join),
    st.sampled_from([20, 24, 33]),
)
def test_space_end_is_the_same_in_any_window(text: bytes, size: int) -> None:
    expected = tokens.space_end(text, 0)
    with patch.object(tokens, "WINDOW", size):
        assert tokens.space_end(text, 0) == expected


@pytest.mark.parametrize("size", [5, 7, 64])
def test_searches_find_what_crosses_a_window(size: int) -> None:
    doc = b"-" * 50 + b"--!>" + b"</style >" + b"x" * 30
    with patch.object(tokens, "WINDOW", size):
        assert tokens.comment_end(doc, 0) == 54
        assert tokens.raw_text_end(doc, b"style", 0) == 54
        assert tokens.raw_text_end(doc + b"</textarea>", b"textarea", 0) == len(doc)
