"""Generated HTML pages for the notice's tests (hypothesis strategies): ordinary heads with
every trap of the insertion point, the same cut and sprinkled with damage, and token soups
of the scan's hardest cases. Shared by test_scan.py and test_html5_placement.py."""

from __future__ import annotations

from hypothesis import strategies as st

_words = st.text(alphabet="abcdefgh xyz-_.,;:!?0123456789", min_size=0, max_size=12)
_high_bytes = st.binary(min_size=0, max_size=8).map(lambda b: bytes(c | 0x80 for c in b))
_quoted = st.sampled_from(['"a>b"', "'<body>'", '"x"', "'it''s'", '""', "'>'"])
_attribute = st.one_of(
    st.builds(
        lambda n, v: f" {n}={v}", st.sampled_from(["class", "id", "data-x", "lang"]), _quoted
    ),
    st.builds(lambda n: f" {n}", st.sampled_from(["hidden", "async", "defer"])),
    st.just("\n  class=plain"),
)
_attributes = st.lists(_attribute, max_size=3).map("".join)
_head_item = st.one_of(
    st.builds(lambda a: f"<meta{a}>", _attributes),
    st.builds(lambda a: f"<link rel=stylesheet href=/s.css{a}>", _attributes),
    st.builds(lambda w: f"<title>{w}</title>", _words),
    st.builds(lambda w: f"<!-- {w} <body class=c> -->", _words),
    st.just("<!--[if lt IE 9]><body class=ie><![endif]-->"),
    st.builds(lambda w: f'<script>var s = "<body>{w}"; if (a<b) f("</div>");</script>', _words),
    st.builds(
        lambda w: f'<script type=application/json>{{"h":"<\\/script><body>{w}"}}</script>', _words
    ),
    st.builds(lambda w: f"<style>body>p{{x:1}} /* <body> {w} */</style>", _words),
    st.just("<noscript><link rel=stylesheet href=/nojs.css></noscript>"),
    st.sampled_from(["\n", "  ", "\t", "\r\n"]),
    st.sampled_from(
        [
            "<meta http-equiv=Content-Security-Policy content=\"default-src 'self'\">",
            "<meta http-equiv='content-security-policy' content='style-src &#39;none&#39;'>",
            '<meta http-equiv="Content-Security-Policy" content="style-src \'unsafe-inline\'">',
            '<meta http-equiv="Content-Security-Policy" content="img-src *">',
        ]
    ),
)


@st.composite
def html_pages(draw: st.DrawFn) -> bytes:
    parts = [draw(st.sampled_from(["", "\ufeff", "<!DOCTYPE html>\n", "<!doctype html>"]))]
    if draw(st.booleans()):
        parts.append(f"<html{draw(_attributes)}>")
    if draw(st.booleans()):
        parts.append("<head>")
    parts += draw(st.lists(_head_item, max_size=8))
    if draw(st.booleans()):
        parts.append("</head>\n")
    parts.append(f"<{draw(st.sampled_from(['body', 'BODY', 'Body']))}{draw(_attributes)}>")
    page = "".join(parts).encode("utf-8")
    return page + draw(_high_bytes) + b"<p>" + draw(_words).encode() + b"</p></body></html>"


@st.composite
def damaged_pages(draw: st.DrawFn) -> bytes:
    """Generated pages cut, spliced and sprinkled with NULs and stray quotes."""
    page = bytearray(draw(html_pages()))
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(page)))
        action = draw(st.sampled_from(["cut", "insert", "truncate"]))
        if action == "cut":
            del page[at : at + draw(st.integers(1, 20))]
        elif action == "insert":
            page[at:at] = draw(
                st.sampled_from(
                    [
                        b"\x00",
                        b'"',
                        b"'",
                        b"<",
                        b">",
                        b"<!--",
                        b"<script>",
                        b"<template>",
                        b"</",
                        b"=",
                        b"\xff\xfe",
                    ]
                )
            )
        else:
            del page[at:]
    return bytes(page)


_tricky_item = st.one_of(
    _head_item,
    st.sampled_from(
        [
            "<script><!-- document.write('<script></script><body>') --></script>",
            "<script><!--<script>--></script>",
            "<script><!-- </script>",
            "<SCRIPT type=module>a<b</SCRIPT >",
            "<template><body><title></template></title></template>",
            "<template><template></template><p></template>",
            "<title><body></title>",
            "<noscript><body></noscript>",
            "<noframes><body></noframes>",
            "<style>a{}</style x>b{}</style>",
            "<!-->",
            "<!--->",
            "<!---->",
            "<!-- --!>",
            "<!-- --->",
            "<!doctype html>",
            "<?php echo 1 ?>",
            "<![CDATA[<body>]]>",
            "</head>",
            "</p>",
            "</>",
            "</3>",
            "<head>",
            "<base href=/>",
            "<meta http-equiv=refresh content=600>",
            "<meta http-equiv = 'Content-Security-Policy' content=\"style-src 'self'\">",
            "<meta content='a>b' http-equiv=content-security-policy>",
            "<meta name=http-equiv content=x>",
            "<meta http-equivx=1>",
            '<meta ="x>" http-equiv=x>',
            '<link ="x>">',
            "<div>",
            "text",
            "<bodyguard>",
            "<frameset>",
            "<noscript><!-- </noscript><body> --></noscript>",
            "<noscript><img></noscript>",
            "<noscript><link rel=x><style>p{}</style></noscript>",
            "<noscript><body class=nojs></noscript>",
            "<template><svg><style></template></style></template>",
            "<template><col><style></template>",
            "<template><select><style></template>",
            "<template><noscript></template></noscript></template>",
            "<template><!-- </template> --></template>",
            "<template><script><!--<script></template>--></script></template>",
            "<template><textarea></template></textarea></template>",
            "<template><a b='</template>'><</template>",
            "&#32;",
            "&#9",
            "&Tab;",
            "&#97;",
            "<meta http-equiv=refresh content=0>",
            '<link a="1" b>',
            "<script>a<!--b<script>c</script>d-->e</script>",
        ]
    ),
)


@st.composite
def tricky_pages(draw: st.DrawFn) -> bytes:
    page = bytearray("".join(draw(st.lists(_tricky_item, max_size=10))).encode())
    page += draw(st.sampled_from([b"<body>", b"<BODY class='a>b'>", b"", b"<p>"]))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(page)))
        page[at:at] = draw(
            st.sampled_from([b"<", b">", b'"', b"'", b"-->", b"</script>", b"=", b" "])
        )
    return bytes(page)
