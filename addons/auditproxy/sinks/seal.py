"""The access log's seal: the chain's fields, its key, its MAC, and how a line is cut.

Every record ends, as written, with

    ...,"event.sequence":N,"labels.log_chain":"ID"[,START FIELDS],"event.hash":"H"}

where H is the hex HMAC-SHA256, under the chain key, of the previous record's `event.hash`
(64 ASCII hex digits; nothing for sequence 1) followed by the line exactly as written
minus its `,"event.hash":"H"` member. The verifier cuts that fixed-size suffix off: no JSON
canonicalisation, every byte of the line covered. The format and its limits:
docs/log-chain.md. Written by `sinks.chain`, checked by `sinks.verify`. Pure: no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

KEY_PURPOSE = b"auditproxy log chain"

SEQUENCE = "event.sequence"
HASH = "event.hash"
CHAIN = "labels.log_chain"
START = "labels.log_chain_start"
PREVIOUS = "labels.log_chain_previous"
DROPPED = "labels.log_dropped"  # on a `log-dropped` record: "ID:FIRST-LAST"
DROPPED_AFTER = "labels.log_dropped_after"  # and the event.hash of the record before it
FIELDS = (SEQUENCE, HASH, CHAIN, START, PREVIOUS)

SEAL_PREFIX = b',"event.hash":"'
SEAL_LENGTH = len(SEAL_PREFIX) + 64 + len(b'"}')
HEX64 = re.compile(rb"[0-9a-f]{64}")
CHAIN_ID = re.compile(r"[0-9a-f]{16}")
DROPPED_RANGE = re.compile(r"([0-9a-f]{16}):([1-9][0-9]*)-([1-9][0-9]*)")


class Start(StrEnum):
    """Why a chain is new (`labels.log_chain_start` on its first record)."""

    NEW = "new"  # no record and no state to continue: first start, or the state was lost
    UNCLEAN_STOP = "unclean-stop"  # the state is from a process that did not stop cleanly
    KEY_CHANGED = "key-changed"  # the last chain was written under another key
    TAIL_UNVERIFIED = "tail-unverified"  # the log's last record does not verify
    STATE_UNREADABLE = "state-unreadable"  # a state file that cannot be read or parsed


BLOCK_SIZE = 64  # SHA-256's block, in bytes
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def derive_key(secret: bytes) -> bytes:
    """The chain key: the proxy's secret (pseudonym key file) under a purpose label."""
    return hmac.new(secret, KEY_PURPOSE, hashlib.sha256).digest()


def key_id(key: bytes) -> str:
    """A fingerprint of a chain key, to tell keys apart without revealing them."""
    return hashlib.sha256(b"auditproxy-log-chain-key-id\0" + key).hexdigest()[:12]


class Mac:
    """HMAC-SHA256 under one key (RFC 2104): the inner and outer hashes are keyed once and
    copied per record, so the key's pads are not hashed again for every line. (Not
    `hmac.HMAC.copy`: a Python object around OpenSSL's HMAC context, copied, which cost
    more than hashing the record; two `hashlib` copies cost less. The same digest:
    tests/sinks/test_chain.py checks it against `hmac`.)"""

    __slots__ = ("_inner", "_outer", "key_id")

    def __init__(self, key: bytes) -> None:
        self.key_id = key_id(key)
        if len(key) > BLOCK_SIZE:
            key = hashlib.sha256(key).digest()
        key = key.ljust(BLOCK_SIZE, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))

    def __call__(self, previous: bytes, body: bytes) -> str:
        inner = self._inner.copy()
        inner.update(previous)
        inner.update(body)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def seal(self, previous: bytes, body: bytes) -> bytes:
        """The MAC of `previous`, `body` and b"}" (a record's line without its seal), as
        ASCII hex."""
        inner = self._inner.copy()
        inner.update(previous)
        inner.update(body)
        inner.update(b"}")
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest().encode("ascii")


def unseal(line: bytes) -> tuple[bytes, str] | None:
    """A sealed line (without its newline) -> (the bytes its MAC covers, its event.hash);
    None when the line does not end with a seal."""
    cut = len(line) - SEAL_LENGTH
    if cut < 1 or not line.endswith(b'"}') or line[cut : cut + len(SEAL_PREFIX)] != SEAL_PREFIX:
        return None
    digest = line[cut + len(SEAL_PREFIX) : -2]
    if not HEX64.fullmatch(digest):
        return None
    return line[:cut] + b"}", digest.decode("ascii")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a chain stands: its id, the last sequence written and that record's hash."""

    chain: str
    sequence: int
    hash: str

    def __str__(self) -> str:
        return f"{self.chain}:{self.sequence}"


def chained_fields(record: dict[str, Any]) -> Cursor | None:
    """A parsed record's chain position, or None when its chain fields are missing/bad."""
    chain, sequence, digest = record.get(CHAIN), record.get(SEQUENCE), record.get(HASH)
    if not (isinstance(chain, str) and CHAIN_ID.fullmatch(chain)):
        return None
    if type(sequence) is not int or sequence < 1:
        return None
    if not (isinstance(digest, str) and HEX64.fullmatch(digest.encode())):
        return None
    return Cursor(chain, sequence, digest)


def parse_sealed(line: bytes) -> tuple[Cursor, bytes, dict[str, Any]] | None:
    """A sealed record's position, the bytes its MAC covers, and its fields; None for a
    line that is not one (not JSON, no seal, bad chain fields)."""
    sealed = unseal(line)
    if sealed is None:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    cursor = chained_fields(record) if isinstance(record, dict) else None
    if cursor is None or cursor.hash != sealed[1]:
        return None
    return cursor, sealed[0], record


_POSITION = re.compile(rb',"event\.sequence":([1-9][0-9]*),"labels\.log_chain":"([0-9a-f]{16})"')


def sealed_position(line: bytes) -> tuple[str, int] | None:
    """(chain, sequence) of a line this proxy sealed, without parsing its JSON: our members
    follow the last `,"event.sequence":` (in a string that text is escaped: \\")."""
    at = line.rfind(b',"event.sequence":')
    match = _POSITION.match(line, at) if at >= 0 else None
    return (match[2].decode("ascii"), int(match[1])) if match is not None else None


def parse_dropped(value: object) -> tuple[str, int, int] | None:
    """`labels.log_dropped` ("ID:FIRST-LAST") -> (chain, first, last), or None."""
    match = DROPPED_RANGE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        return None
    first, last = int(match[2]), int(match[3])
    return (match[1], first, last) if first <= last else None
