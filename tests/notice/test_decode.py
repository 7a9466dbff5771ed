"""Decoding bodies strictly and with bounded output."""

from __future__ import annotations

import gzip
import sys
import time
import zlib

import brotli
import pytest

from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.decode import MAX_ZSTD_FRAMES, decode_body
from auditproxy.notice.reasons import SkipReason
from support import zstd
from support.inject import (
    MAX,
)

if sys.version_info >= (3, 14):
    from compression import zstd as backports_zstd
else:
    from backports import zstd as backports_zstd

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


# --- linear and bounded, whatever the bytes (issue #13) --------------------------------------


def test_gzip_of_many_empty_members_is_linear() -> None:
    """Once quadratic (the rest of the body copied once per member): 4 MB took minutes."""
    empty = gzip.compress(b"", mtime=0)
    many = empty * (4_000_000 // len(empty))
    start = time.monotonic()
    assert decode_body(many + gzip.compress(DECODE_PAGE), "gzip", MAX) == DECODE_PAGE
    assert decode_body(many + empty[:-3], "gzip", MAX) == SkipReason.DECODE_ERROR  # truncated
    assert time.monotonic() - start < 10  # ~0.6 s each here; quadratic would be minutes


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_the_bound_holds_inside_a_step(encoding: str) -> None:
    """A bomb is stopped at most one step past the bound, whatever the bound."""
    bomb = ENCODERS[encoding](b"\0" * 5_000_000)
    for bound in (1, 1000, 300_000):
        assert decode_body(bomb, encoding, bound) == SkipReason.TOO_LARGE


def test_zstd_frames_of_every_size_decode_whole() -> None:
    """Frames back to back, of sizes around every power of two (a frame that ends on a slice
    boundary once lost the rest of the page), and skippable frames between them."""
    skippable = b"\x50\x2a\x4d\x18" + (5).to_bytes(4, "little") + b"12345"
    pieces = [bytes([65 + i % 26]) * (2**i + i % 3) for i in range(17)]
    body = b"".join(zstd.compress(p) + skippable for p in pieces)
    assert decode_body(body, "zstd", MAX) == b"".join(pieces)
    assert decode_body(body[:-1], "zstd", MAX) == SkipReason.DECODE_ERROR


def test_too_many_zstd_frames_are_too_much_work() -> None:
    frame = zstd.compress(b"x")
    assert decode_body(frame * MAX_ZSTD_FRAMES, "zstd", MAX) == b"x" * MAX_ZSTD_FRAMES
    assert decode_body(frame * (MAX_ZSTD_FRAMES + 1), "zstd", MAX) == SkipReason.TOO_LARGE


def test_zstd_window_over_8_mib_is_refused() -> None:
    """RFC 9659's limit, as browsers enforce it: a decoder never allocates more."""
    compressor = backports_zstd.ZstdCompressor(
        options={backports_zstd.CompressionParameter.window_log: 25}
    )
    big = compressor.compress(b"\0" * 100) + compressor.flush()  # streamed: size unknown
    assert decode_body(big, "zstd", MAX) == SkipReason.DECODE_ERROR


@pytest.mark.parametrize("encoding", sorted(ENCODERS))
def test_an_abandoned_decode_stops(encoding: str) -> None:
    budget = Budget()
    budget.cancel()
    with pytest.raises(DeadlineExceeded):
        decode_body(ENCODERS[encoding](DECODE_PAGE), encoding, MAX, budget)
