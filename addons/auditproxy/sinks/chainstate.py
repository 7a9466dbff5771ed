"""Where a log chain resumes from: the last record of its log file, or its state file.

- `read_tail`: the last sealed record in the end of a log file, and whether it verifies.
- `State`, `read_state`, `write_state`: the small JSON file the chain saves at most once a
  second and at shutdown (atomic replace, mode 0600).
- `claim`: an exclusive lock beside the state file, so that two processes never continue
  one chain (which would fork it: two records with each number).

`sinks.chain.LogChain.open` applies the rules. No mitmproxy imports.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from auditproxy.sinks.seal import CHAIN_ID, HEX64, Cursor, Mac, Start, parse_dropped, parse_sealed

STATE_FORMAT = 1
TAIL_BYTES = 1 << 20  # how much of the log's end is read to resume from its last record


@dataclass(frozen=True, slots=True)
class Tail:
    """The last chained record of a log file; `verified`: its MAC checks under our key
    (True), does not (False), or cannot be checked (None: the record before it is not in
    the file)."""

    cursor: Cursor
    verified: bool | None


def read_tail(path: str | Path, mac: Mac, limit: int = TAIL_BYTES) -> Tail | None:
    """The last chained record in the last `limit` bytes of a log file, if any."""
    if not os.path.isfile(path):  # none yet, or a device or pipe (never read from those)
        return None
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - limit)
            f.seek(start)
            block = f.read()
    except OSError:  # gone, or not readable by us: resume from the state file
        return None
    lines = block.split(b"\n")
    lines.pop()  # after the last newline: nothing, or a line cut short
    if start > 0 and lines:
        lines.pop(0)  # began mid-line
    last: tuple[Cursor, bytes] | None = None
    for line in reversed(lines):
        found = parse_sealed(line)
        if found is None:
            continue
        cursor, body, _ = found
        if last is None:
            last = (cursor, body)
            if cursor.sequence == 1:
                return Tail(cursor, mac(b"", body) == cursor.hash)
        elif cursor.chain == last[0].chain and cursor.sequence == last[0].sequence - 1:
            return Tail(last[0], mac(cursor.hash.encode(), last[1]) == last[0].hash)
    return Tail(last[0], None) if last is not None else None


@dataclass(frozen=True, slots=True)
class State:
    """The state file: where the chain stood, under which key, and whether the process
    that wrote it stopped cleanly (then `cursor` is exactly the last record). `dropped`:
    ranges ("ID:FIRST-LAST") the log sink dropped and no `log-dropped` record names yet."""

    cursor: Cursor
    key_id: str
    clean: bool
    start: str | None = None  # a chain with no record yet still owes its start fields
    previous: str | None = None
    dropped: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": STATE_FORMAT,
                "chain": self.cursor.chain,
                "sequence": self.cursor.sequence,
                "hash": self.cursor.hash,
                "key_id": self.key_id,
                "clean": self.clean,
                "start": self.start,
                "previous": self.previous,
                "dropped": list(self.dropped),
                "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> State:
        """Raises ValueError for anything but a state file of this format."""
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            raise ValueError("not a log chain state file of a known format")
        chain, sequence, digest = data.get("chain"), data.get("sequence"), data.get("hash")
        if not (isinstance(chain, str) and CHAIN_ID.fullmatch(chain)):
            raise ValueError("bad chain id")
        if type(sequence) is not int or sequence < 0:
            raise ValueError("bad sequence")
        if not isinstance(digest, str) or not (
            (sequence == 0 and digest == "") or HEX64.fullmatch(digest.encode())
        ):
            raise ValueError("bad hash")
        kid, clean = data.get("key_id"), data.get("clean")
        if not isinstance(kid, str) or not isinstance(clean, bool):
            raise ValueError("bad key id or clean flag")
        start, previous = data.get("start"), data.get("previous")
        if start is not None and start not in set(Start):
            raise ValueError("bad start reason")
        if previous is not None and not isinstance(previous, str):
            raise ValueError("bad previous chain")
        dropped = data.get("dropped", [])
        if not isinstance(dropped, list) or not all(parse_dropped(d) for d in dropped):
            raise ValueError("bad dropped ranges")
        return cls(Cursor(chain, sequence, digest), kid, clean, start, previous, tuple(dropped))


def read_state(path: str | Path) -> tuple[State | None, str | None]:
    """(the state, None), (None, None) when there is no file, (None, why) when unusable."""
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as e:
        return None, f"cannot read {path}: {e.strerror or e}"
    try:
        return State.from_json(text), None
    except ValueError as e:  # includes bad JSON and bad UTF-8
        return None, f"{path}: {e}"


def write_state(path: str | Path, state: State, *, durable: bool = False) -> None:
    """Replace the state file atomically (a temporary file renamed over it)."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, state.to_json().encode() + b"\n")
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, target)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class Claim:
    """An exclusive lock on a state file (`STATE.lock` beside it), held while the chain
    is open; the kernel releases it if the process dies."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None


def claim(path: str | Path) -> Claim | None:
    """Lock a state file for this process; None when another process holds it. Raises
    OSError when the lock file cannot be made (no such folder, no permission)."""
    lock = Path(f"{path}.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError:
        os.close(fd)
        raise
    return Claim(fd, lock)


def claim_free(candidates: list[Path]) -> tuple[Path, Claim] | None:
    """The first of several state files no other process holds, locked."""
    for candidate in candidates:
        held = claim(candidate)
        if held is not None:
            return candidate, held
    return None
