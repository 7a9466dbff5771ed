"""A keyed hash chain over the access log, so that an edited, removed, repeated or moved
record shows (`auditproxy verify-log`; the format and its limits: docs/log-chain.md).

`LogChain` is the access log's last structlog processor, after the JSON renderer: it
numbers each rendered line (`event.sequence`), names its chain (`labels.log_chain`) and
seals it (`event.hash`, `sinks.seal`). One per log sink, whatever the policy's logging
settings. It resumes from the log's last record or its state file (`sinks.chainstate`);
a chain that cannot be continued exactly is replaced by a new one whose first record
says why. Records the sink had to drop are remembered and declared by a `log-dropped`
record once the log takes writes again, so verify-log reads them as dropped, not
deleted. No mitmproxy imports.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auditproxy.sinks import chainstate
from auditproxy.sinks.chainstate import Claim, State, read_state, read_tail
from auditproxy.sinks.seal import (
    DROPPED,
    PREVIOUS,
    START,
    Cursor,
    Mac,
    Start,
    parse_dropped,
    parse_sealed,
    sealed_position,
)

logger = logging.getLogger(__name__)


def new_chain_id() -> str:
    return secrets.token_hex(8)


class LogChain:
    """Numbers and seals access-log lines: a structlog processor placed after the JSON
    renderer (`processors=[..., render_json, chain]`), one instance per log sink.

    Upkeep: call `maintain()` periodically (it writes the state file when something
    changed since the last save, at most every `SAVE_INTERVAL` seconds) and `close()` at
    shutdown, after the sink (marks the state clean: the next start continues exactly).
    A state file that cannot be written is reported through `on_fault` and never stops
    the log. Not thread-safe, like the sink: the proxy calls it from its event loop.
    """

    SAVE_INTERVAL = 1.0

    def __init__(
        self,
        key: bytes,
        *,
        resume: Cursor | None = None,
        chain_id: str | None = None,
        start: Start | str = Start.NEW,
        previous: str | None = None,
        dropped: tuple[str, ...] = (),
        state_path: str | Path | None = None,
        claim: Claim | None = None,
        on_fault: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mac = Mac(key)
        self.state_path = Path(state_path) if state_path is not None else None
        self._claim = claim
        self._on_fault = on_fault
        self._clock = clock
        self._last_save = float("-inf")
        self._dirty = True
        self._dropped: list[list[Any]] = []  # [chain, first, last], in order
        for declared in dropped:
            self._note_dropped(*parse_dropped(declared))  # type: ignore[misc]
        if resume is not None:
            self._begin(resume.chain, resume.sequence, resume.hash, None, None)
        else:
            self._begin(chain_id or new_chain_id(), 0, "", str(start), previous)

    def _begin(
        self, chain: str, sequence: int, digest: str, start: str | None, previous: str | None
    ) -> None:
        self.chain = chain
        self._sequence = sequence
        self._previous_hash = digest.encode("ascii")
        self._chain_field = f',"labels.log_chain":"{chain}"'.encode()
        self._start, self._previous = start, previous
        first = f',"{START}":{json.dumps(start)}' if start is not None else ""
        if start is not None and previous is not None:
            first += f',"{PREVIOUS}":{json.dumps(previous)}'
        self._first = first.encode()
        self._dirty = True

    # ----------------------------------------------------------------- construction

    @classmethod
    def open(
        cls,
        key: bytes,
        log_path: str,
        state_path: str | Path | None,
        *,
        claim: Claim | None = None,
        on_fault: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> LogChain:
        """Continue the chain of `log_path` (`-`: stdout) where it stopped, or begin a new
        one that says why. The rules, in order:

        1. The log file ends with a chained record (and the state file, if any, is of the
           same chain): continue from it, unless its MAC fails under our key (new chain,
           `tail-unverified`) or the state shows another key (`key-changed`). A state
           *ahead* of the file (records lost from it) continues from the state, so that
           the verifier reports the missing records as a gap.
        2. Otherwise (new or empty file, stdout, or a file of another chain) the state
           file: written at a clean stop, continue from it exactly; written by a process
           that did not stop cleanly (it may have written more since), or under another
           key: a new chain naming the state's chain and sequence as `previous`.
        3. No usable state: a new chain, `new` (or `state-unreadable`), naming nothing.

        The state file is then marked "running" at once, so that a crash before the next
        save is not mistaken for a clean stop. `claim`: the state file's lock, released
        by `close()`.
        """
        mac = Mac(key)
        tail = None if log_path == "-" else read_tail(log_path, mac)
        state, problem = read_state(state_path) if state_path is not None else (None, None)
        if problem:
            logger.warning("access log chain state unusable: %s", problem)
        options: dict[str, Any] = {
            "state_path": state_path,
            "claim": claim,
            "on_fault": on_fault,
            "clock": clock,
            "dropped": state.dropped if state is not None else (),
        }

        def new(why: Start, previous: str | None, chain_id: str | None = None) -> LogChain:
            chain = cls(key, chain_id=chain_id, start=why, previous=previous, **options)
            after = f", after {previous}" if previous else ""
            logger.info("access log chain %s begins (%s%s)", chain.chain, why, after)
            return chain

        def resume(cursor: Cursor, source: str) -> LogChain:
            logger.info(
                "access log chain %s continues after sequence %d, from %s",
                cursor.chain,
                cursor.sequence,
                source,
            )
            return cls(key, resume=cursor, **options)

        if tail is not None and (state is None or state.cursor.chain == tail.cursor.chain):
            cursor = tail.cursor
            if tail.verified is False:
                chain = new(Start.TAIL_UNVERIFIED, str(cursor))
            elif state is not None and state.key_id != mac.key_id:
                chain = new(Start.KEY_CHANGED, str(cursor))
            elif state is not None and state.cursor.sequence > cursor.sequence:
                chain = resume(state.cursor, "the state file (the log lost records)")
            else:
                chain = resume(cursor, "the log's last record")
        elif state is not None:
            cursor = state.cursor
            named = str(cursor) if cursor.sequence else state.previous
            if state.key_id != mac.key_id:
                chain = new(Start.KEY_CHANGED, named)
            elif not state.clean:
                chain = new(Start.UNCLEAN_STOP, named)
            elif cursor.sequence == 0:  # a chain that never wrote: it still owes its start
                chain = new(Start(state.start or Start.NEW), state.previous, cursor.chain)
            else:
                chain = resume(cursor, "the state file")
        else:
            chain = new(Start.STATE_UNREADABLE if problem else Start.NEW, None)
        chain.save(clean=False)
        return chain

    # ----------------------------------------------------------------- the processor

    def __call__(self, _logger: Any, _method: str, line: str) -> str:
        return self.seal(line.encode()).decode()  # the processor: str in, str out

    def seal(self, line: bytes) -> bytes:
        """Seal one rendered record, as the bytes written (ASCII JSON on one line)."""
        sequence = self._sequence = self._sequence + 1
        body = b'%b,"event.sequence":%d' % (line[:-1], sequence) + self._chain_field + self._first
        if self._first:
            self._first = b""
            self._start = self._previous = None
        if len(line) == 2:  # "{}": no member before ours
            body = b"{" + body[2:]
        digest = self._previous_hash = self._mac.seal(self._previous_hash, body)
        self._dirty = True
        return b'%b,"event.hash":"%b"}' % (body, digest)

    @property
    def sequence(self) -> int:
        """The last sequence sealed (the `auditproxy_log_sequence` gauge)."""
        return self._sequence

    @property
    def cursor(self) -> Cursor:
        return Cursor(self.chain, self._sequence, self._previous_hash.decode("ascii"))

    @property
    def key_id(self) -> str:
        return self._mac.key_id

    def rekey(self, key: bytes) -> bool:
        """A new secret (key file replaced): a new chain under it, naming this one.
        False when the key is the same (nothing changes)."""
        mac = Mac(key)
        if mac.key_id == self._mac.key_id:
            return False
        previous = str(self.cursor) if self._sequence else self._previous
        self._mac = mac
        self._begin(new_chain_id(), 0, "", Start.KEY_CHANGED, previous)
        logger.info("access log chain %s begins (key-changed, after %s)", self.chain, previous)
        self.save(clean=False)
        return True

    # ----------------------------------------------------------------- dropped records

    def dropped(self, line: bytes) -> None:
        """The sink could not write this sealed line and gave up on it: remember its
        sequence (and, for a `log-dropped` record, the range it declared) for the next
        `log-dropped` record."""
        line = line.strip(b"\n")
        if b'"labels.log_dropped":' in line:  # rare: read it whole
            found = parse_sealed(line)
            declared = parse_dropped(found[2].get(DROPPED)) if found is not None else None
            if declared is not None:
                self._note_dropped(*declared)
        position = sealed_position(line)  # every record dropped on a full disk: no JSON
        if position is not None:
            self._note_dropped(position[0], position[1], position[1])

    def _note_dropped(self, chain: str, first: int, last: int) -> None:
        ranges = self._dropped
        if ranges and ranges[-1][0] == chain and ranges[-1][2] + 1 == first:
            ranges[-1][2] = last
        else:
            ranges.append([chain, first, last])
        self._dirty = True

    @property
    def has_dropped(self) -> bool:
        return bool(self._dropped)

    def take_dropped(self) -> list[tuple[str, int]]:
        """The ranges to declare, as (`labels.log_dropped` value, record count); forgotten
        here (a declaration that is dropped in turn is remembered again by `dropped`)."""
        taken = [(f"{c}:{first}-{last}", last - first + 1) for c, first, last in self._dropped]
        self._dropped = []
        self._dirty = True
        return taken

    # ----------------------------------------------------------------- the state file

    def state(self, *, clean: bool) -> State:
        dropped = tuple(f"{c}:{first}-{last}" for c, first, last in self._dropped)
        return State(self.cursor, self.key_id, clean, self._start, self._previous, dropped)

    def save(self, *, clean: bool, durable: bool = False) -> bool:
        """Write the state file now; False (and a fault reported) when it cannot be."""
        if self.state_path is None:
            return True
        try:
            chainstate.write_state(self.state_path, self.state(clean=clean), durable=durable)
        except OSError as e:
            message = f"cannot write log chain state {self.state_path}: {e.strerror or e}"
            if self._on_fault is not None:
                self._on_fault(message)
            else:
                logger.warning(message)
            return False
        self._last_save = self._clock()
        self._dirty = False
        return True

    def maintain(self) -> None:
        """Periodic upkeep: save the state if anything changed since the last save and
        the last save is at least SAVE_INTERVAL old (never once per record)."""
        if self._dirty and self._clock() - self._last_save >= self.SAVE_INTERVAL:
            self.save(clean=False)

    def close(self) -> None:
        """At shutdown, after the sink has written (or dropped) everything."""
        self.save(clean=True, durable=True)
        if self._claim is not None:
            self._claim.release()
            self._claim = None
