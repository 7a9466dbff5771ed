"""Decoding a page's body strictly and with bounded output.

Stricter than mitmproxy's own decoders, which return what they can of a damaged body
without complaint: a damaged body is `decode_error`, and the page goes out as it came.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Callable

import brotli

from auditproxy.notice.reasons import SkipReason

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # the backport of PEP 784's module, which mitmproxy 12.3 uses too
    from backports import zstd


def decode_body(raw: bytes, content_encoding: str | None, max_bytes: int) -> bytes | SkipReason:
    """The page's decoded bytes, or why it cannot be used.

    Stricter than mitmproxy's own decoders, which return what they can of a damaged body
    without complaint: a truncated gzip or zstd stream, trailing garbage, or a broken
    Brotli stream is `decode_error` (the page goes out as it came; re-encoding a partial
    page would send the client less than the origin did). Every member of a multi-member
    gzip and every frame of a multi-frame zstd body is decoded, as browsers do. Output is
    bounded: a body that decodes to more than `max_bytes` is `too_large`, before it fills
    memory (a compression bomb costs at most a little over `max_bytes`).
    """
    encoding = (content_encoding or "identity").strip().lower()
    try:
        if encoding in ("", "identity", "none"):
            return raw if len(raw) <= max_bytes else SkipReason.TOO_LARGE
        if encoding in ("gzip", "x-gzip"):
            return _members(raw, lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), max_bytes)
        if encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
            wrapped = raw[:1] and (raw[0] & 0x0F) == 8 and int.from_bytes(raw[:2]) % 31 == 0
            bits = zlib.MAX_WBITS if wrapped else -zlib.MAX_WBITS
            return _members(raw, lambda: zlib.decompressobj(bits), max_bytes, once=True)
        if encoding == "br":
            return _brotli(raw, max_bytes)
        if encoding == "zstd":
            return _zstd_frames(raw, max_bytes)
    except (zlib.error, brotli.error, zstd.ZstdError):
        return SkipReason.DECODE_ERROR
    return SkipReason.ENCODING


def _members(
    raw: bytes, make: Callable[[], zlib._Decompress], max_bytes: int, *, once: bool = False
) -> bytes | SkipReason:
    out = bytearray()
    data = raw
    while True:
        decoder = make()
        out += decoder.decompress(data, max_bytes + 1 - len(out))
        if decoder.unconsumed_tail or len(out) > max_bytes:
            return SkipReason.TOO_LARGE
        if not decoder.eof:
            return SkipReason.DECODE_ERROR  # truncated
        data = decoder.unused_data
        if not data:
            return bytes(out)
        if once:
            return SkipReason.DECODE_ERROR  # trailing garbage after the stream


def _zstd_frames(raw: bytes, max_bytes: int) -> bytes | SkipReason:
    """Every frame in turn (skippable ones too), each sliced out of one memoryview by its
    size from the frame header: no copy of the rest per frame, and each decompress call
    stops at the output bound itself rather than after it."""
    out = bytearray()
    view = memoryview(raw)
    offset = 0
    while offset < len(view):
        size = zstd.get_frame_size(view[offset:])  # ZstdError: truncated or not zstd
        decoder = zstd.ZstdDecompressor()
        out += decoder.decompress(view[offset : offset + size], max_bytes + 1 - len(out))
        while not decoder.eof:
            if len(out) > max_bytes:
                return SkipReason.TOO_LARGE
            if decoder.needs_input:
                return SkipReason.DECODE_ERROR  # truncated
            out += decoder.decompress(b"", max_bytes + 1 - len(out))
        if len(out) > max_bytes:
            return SkipReason.TOO_LARGE
        offset += size
    return bytes(out)


def _brotli(raw: bytes, max_bytes: int) -> bytes | SkipReason:
    decoder = brotli.Decompressor()
    out = decoder.process(raw, output_buffer_limit=max_bytes + 1)
    if len(out) > max_bytes:
        return SkipReason.TOO_LARGE
    return bytes(out) if decoder.is_finished() else SkipReason.DECODE_ERROR
