"""Decoding a page's body strictly, in bounded steps, in time linear in its bytes.

Stricter than mitmproxy's own decoders, which return what they can of a damaged body
without complaint: a damaged body is `decode_error`, and the page goes out as it came.
Every decoder works in steps of at most `STEP` bytes out (and in, for zlib and Brotli):
the output bound is enforced inside each step, never after a step that might have
produced gigabytes, and the `Budget` is checked between steps.
"""

from __future__ import annotations

import sys
import zlib
from typing import Final

import brotli

from auditproxy.notice.budget import Budget
from auditproxy.notice.reasons import SkipReason

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the backport of PEP 784's module, which mitmproxy 12.3 uses too
    from backports import zstd

STEP: Final = 64 * 1024  # bytes out of one decoder call; bytes into one, for zlib and Brotli
FIRST_FEED: Final = 64  # a gzip member's first input; doubled while the member goes on
MAX_ZSTD_FRAMES: Final = 1024  # a new decoder per frame costs ~10 us: more frames are too much
# zstd windows of at most 8 MiB, as RFC 9659 asks of HTTP and browsers enforce: a frame
# that declares more (memory the decoder would allocate up front) does not decode.
_ZSTD_OPTIONS: Final = {zstd.DecompressionParameter.window_log_max: 23}


def decode_body(
    raw: bytes, content_encoding: str | None, max_bytes: int, budget: Budget | None = None
) -> bytes | SkipReason:
    """The page's decoded bytes, or why it cannot be used.

    A truncated gzip or zstd stream, trailing garbage, or a broken Brotli stream is
    `decode_error` (the page goes out as it came; re-encoding a partial page would send
    the client less than the origin did). Every member of a multi-member gzip and every
    frame of a multi-frame zstd body is decoded, as browsers do. A body that decodes to
    more than `max_bytes` is `too_large`, found out at most `STEP` bytes later (a
    compression bomb costs at most `max_bytes + STEP`), as is one of more than
    `MAX_ZSTD_FRAMES` zstd frames. Raises `DeadlineExceeded` when `budget` runs out.
    """
    budget = budget or Budget()
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding in ("", "identity", "none"):
            return raw if len(raw) <= max_bytes else SkipReason.TOO_LARGE
        if encoding in ("gzip", "x-gzip"):
            return _zlib(raw, 16 + zlib.MAX_WBITS, max_bytes, budget, members=True)
        if encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            wrapped = raw[:1] and (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2]) % 31 == 0
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            return _zlib(raw, bits, max_bytes, budget, members=False)
        if encoding == "br":
            return _brotli(raw, max_bytes, budget)
        if encoding == "zstd":
            return _zstd_frames(raw, max_bytes, budget)
    except (zlib.error, brotli.error, zstd.ZstdError):
        return SkipReason.DECODE_ERROR
    return SkipReason.ENCODING


def _zlib(
    raw: bytes, wbits: int, max_bytes: int, budget: Budget, *, members: bool
) -> bytes | SkipReason:
    """A deflate stream, or gzip members back to back.

    zlib copies the input left over after a member's end (`unused_data`), so a member is
    fed small pieces first, doubling while it goes on: what is copied after it ends is at
    most its own size plus `FIRST_FEED`, and many tiny members cost linear time (they
    once cost the rest of the body each: quadratic)."""
    out = bytearray()
    view = memoryview(raw)
    pos = 0
    while True:
        decoder = zlib.decompressobj(wbits)
        feed = FIRST_FEED
        while not decoder.eof:
            budget.check()
            data: bytes | memoryview = decoder.unconsumed_tail
            if not data and pos < len(view):
                data = view[pos : pos + feed]
                pos, feed = pos + len(data), min(feed * 2, STEP)
            chunk = decoder.decompress(data, min(STEP, max_bytes + 1 - len(out)))
            out += chunk
            if len(out) > max_bytes:
                return SkipReason.TOO_LARGE
            if not data and not chunk:
                return SkipReason.DECODE_ERROR  # truncated: no input left, no end
        pos -= len(decoder.unused_data)
        if pos >= len(view):
            return bytes(out)
        if not members:
            return SkipReason.DECODE_ERROR  # trailing garbage after the stream


def _brotli(raw: bytes, max_bytes: int, budget: Budget) -> bytes | SkipReason:
    out = bytearray()
    view = memoryview(raw)
    pos = 0
    decoder = brotli.Decompressor()
    while not decoder.is_finished():
        budget.check()
        data: bytes | memoryview = b""  # b"": more output from the input it already has
        if pos < len(view) and decoder.can_accept_more_data():
            data = view[pos : pos + STEP]
            pos += len(data)
        chunk = decoder.process(data, output_buffer_limit=min(STEP, max_bytes + 1 - len(out)))
        out += chunk
        if len(out) > max_bytes:
            return SkipReason.TOO_LARGE
        if not data and not chunk and not decoder.is_finished():
            return SkipReason.DECODE_ERROR  # truncated: no input left, no end
    if pos < len(view):
        return SkipReason.DECODE_ERROR  # bytes after the end of the stream
    return bytes(out)


def _is_skippable(frame: memoryview) -> bool:
    """A skippable frame (magic 0x184D2A5?): metadata, no content."""
    return frame[1:4] == b"\x2a\x4d\x18" and frame[0] & 0xF0 == 0x50


def _zstd_frames(raw: bytes, max_bytes: int, budget: Budget) -> bytes | SkipReason:
    """Every frame in turn, each sliced out of one memoryview by its size from the frame
    header: no copy of the rest per frame, and each call stops at `STEP` bytes out."""
    out = bytearray()
    view = memoryview(raw)
    offset = frames = 0
    while offset < len(view):
        budget.check()
        frames += 1
        if frames > MAX_ZSTD_FRAMES:
            return SkipReason.TOO_LARGE
        size = zstd.get_frame_size(view[offset:])  # ZstdError: truncated or not zstd
        frame = view[offset : offset + size]
        offset += size
        if _is_skippable(frame):
            continue
        decoder = zstd.ZstdDecompressor(options=_ZSTD_OPTIONS)
        data: bytes | memoryview = frame
        while not decoder.eof:
            budget.check()
            chunk = decoder.decompress(data, min(STEP, max_bytes + 1 - len(out)))
            out += chunk
            if len(out) > max_bytes:
                return SkipReason.TOO_LARGE
            if decoder.needs_input and not decoder.eof:
                return SkipReason.DECODE_ERROR  # the frame ended before its end
            data = b""
    return bytes(out)
