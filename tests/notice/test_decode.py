"""Decoding bodies strictly and with bounded output."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest

from auditproxy.notice.decode import decode_body
from auditproxy.notice.reasons import SkipReason
from support import zstd
from support.inject import (
    MAX,
)

# --- decoding: strict and bounded ------------------------------------------------------------


def _deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


DECODE_PAGE = b"<html><body>" + b"page " * 2000 + b"</body></html>"
ENCODERS = {
    "gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_round_trips(encoding: str) -> None:
    encoded = ENCODERS[encoding](DECODE_PAGE)
    assert decode_body(encoded, encoding, MAX) == DECODE_PAGE
    assert decode_body(encoded, encoding.upper() + " ", MAX) == DECODE_PAGE


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_refuses_a_truncated_stream(encoding: str) -> None:
    """mitmproxy's own decoders return the part that decoded; the page would lose its end."""
    encoded = ENCODERS[encoding](DECODE_PAGE)
    assert decode_body(encoded[: len(encoded) - 7], encoding, MAX) == SkipReason.DECODE_ERROR


def test_decode_body_multi_member_gzip_and_multi_frame_zstd_decode_whole() -> None:
    half = len(DECODE_PAGE) // 2
    first, second = DECODE_PAGE[:half], DECODE_PAGE[half:]
    assert decode_body(gzip.compress(first) + gzip.compress(second), "gzip", MAX) == DECODE_PAGE
    frames = zstd.compress(first) + zstd.compress(second)
    assert decode_body(frames, "zstd", MAX) == DECODE_PAGE


def test_decode_body_trailing_garbage_and_raw_deflate() -> None:
    assert decode_body(gzip.compress(DECODE_PAGE) + b"junk", "gzip", MAX) == "decode_error"
    assert decode_body(zlib.compress(DECODE_PAGE) + b"junk", "deflate", MAX) == "decode_error"
    assert decode_body(_deflate_raw(DECODE_PAGE), "deflate", MAX) == DECODE_PAGE
    assert decode_body(b"not compressed", "gzip", MAX) == "decode_error"


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_decode_body_stops_a_compression_bomb(encoding: str) -> None:
    bomb = ENCODERS[encoding](b"\0" * 20_000_000)
    assert len(bomb) < 100_000
    assert decode_body(bomb, encoding, 1_000_000) == SkipReason.TOO_LARGE


def test_decode_body_identity_and_unknown() -> None:
    assert decode_body(DECODE_PAGE, None, MAX) == DECODE_PAGE
    assert decode_body(DECODE_PAGE, "identity", 10) == SkipReason.TOO_LARGE
    assert decode_body(DECODE_PAGE, "compress", MAX) == SkipReason.ENCODING
