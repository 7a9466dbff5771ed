"""Hostile response bodies for the notice: every shape that once made its work grow faster
than the body (issue #13), and the others an attacker would try next, at any size. Used by
the unit tests, the corpus (tests/fixtures/corpus/make_corpus.py), the end-to-end tests
and bench/run.py's worst-case table."""

from __future__ import annotations

import gzip
import sys
import zlib

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

HEAD = b"<!DOCTYPE html><html><head>"


def _fill(prefix: bytes, piece: bytes, size: int, suffix: bytes = b"") -> bytes:
    count = max(1, (size - len(prefix) - len(suffix)) // len(piece))
    return prefix + piece * count + suffix


def scan_shapes(size: int) -> dict[str, bytes]:
    """HTML pages of about `size` bytes that make the scan read all of them (or as much as
    its limits allow), each named for what it attacks."""
    return {
        # the report's shape: every "<!-->" once searched the rest for "</script"
        "script, many <!-->": _fill(HEAD + b"<script>", b"<!-->", size),
        "script, escape switches": _fill(HEAD + b"<script>", b"<!--<script>-->", size),
        "script, double escaped": _fill(HEAD + b"<script><!--", b"<script></script>", size),
        "scripts with <!--, no -->": _fill(HEAD, b"<script><!--</script>", size),
        "many empty comments": _fill(HEAD, b"<!---->", size, b"<body>"),
        "one comment of dashes": _fill(HEAD + b"<!--", b"-", size, b"--><body>"),
        "comment, never closed": _fill(HEAD + b"<!--", b"<!-- -- -!>", size),
        "huge attribute value": _fill(HEAD + b'<meta content="', b"a>", size, b'"><body>'),
        "many attributes": _fill(HEAD + b"<link", b" a", size, b"><body>"),
        "attribute never closed": _fill(HEAD + b'<meta a="', b"<body>", size),
        "many = in a tag": _fill(HEAD + b"<meta ", b"a= ", size),
        "nested templates": _fill(HEAD, b"<template>", size, b"<body>"),
        "template of small tags": _fill(HEAD + b"<template>", b"<a>", size),
        "template of < text": _fill(HEAD + b"<template>", b"<", size),
        "raw text end tags cut": _fill(HEAD + b"<title>", b"</titl", size),
        "meta policies": _fill(
            HEAD,
            b"<meta http-equiv=content-security-policy content=\"style-src 'self'\">",
            size,
            b"<body>",
        ),
        "head tags one by one": _fill(HEAD, b"<meta http-equiv=x>", size, b"<body>"),
        "noscript in head": _fill(
            HEAD + b"<noscript>", b"<link rel=a>", size, b"</noscript><body>"
        ),
        "whitespace references": _fill(HEAD, b"&#32;&Tab;", size, b"<body>"),
        "text, then no frameset": _fill(HEAD + b"</head>x", b"<framesex ", size),
    }


def typical_head(size: int) -> bytes:
    """A page whose head alone is about `size` bytes of what real heads hold (inline
    scripts with JSON, styles, preloads, metas, comments): the scan reads all of it."""
    piece = (
        b'<link rel="preload" href="/static/app.js" as="script">\n'
        b'<meta name="description" content="News &amp; views, &quot;daily&quot;">\n'
        b'<script>window.__d = {"a": "</sc" + "ript>", "b": [1, 2], "c": "x < y"};'
        b" function f(a, b) { return a < b ? a : b; }</script>\n"
        b"<style>.card > .title { color: #333; margin: 0 auto; } /* <body> */</style>\n"
        b"<!-- build 1234: <body class=x> -->\n"
    )
    return _fill(HEAD, piece, size, b"</head><body><p>x</p></body></html>")


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def decoder_shapes(size: int, bomb: int) -> dict[str, tuple[str, bytes]]:
    """(Content-Encoding, body) of about `size` bytes on the wire, or bombs that expand to
    `bomb` bytes, for every decoder."""
    empty_member = gzip.compress(b"", mtime=0)
    tiny_member = gzip.compress(b"<", mtime=0)
    skippable = b"\x50\x2a\x4d\x18" + (0).to_bytes(4, "little")
    zeros = b"\0" * bomb
    return {
        "gzip, many empty members": ("gzip", _fill(b"", empty_member, size)),
        "gzip, many 1-byte members": ("gzip", _fill(b"", tiny_member, size)),
        "gzip, bomb": ("gzip", gzip.compress(zeros, mtime=0)),
        "deflate, bomb": ("deflate", zlib.compress(zeros)),
        "deflate raw, bomb": ("deflate", _deflate_raw(zeros)),
        "br, bomb": ("br", brotli.compress(zeros, quality=5)),
        "zstd, bomb": ("zstd", zstd.compress(zeros)),
        "zstd, many tiny frames": ("zstd", _fill(b"", zstd.compress(b"<"), size)),
        "zstd, many skippable frames": ("zstd", _fill(b"", skippable, size)),
    }


def encode(data: bytes, coding: str) -> bytes:
    """A typical page, encoded as origins do."""
    if coding == "gzip":
        return gzip.compress(data, compresslevel=6, mtime=0)
    if coding == "deflate":
        return zlib.compress(data, 6)
    if coding == "br":
        return brotli.compress(data, quality=5)
    if coding == "zstd":
        return zstd.compress(data, level=3)
    return data
