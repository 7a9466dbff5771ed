# Over 300 lines: one verifier whose reading pass and checking pass share its state.
"""`auditproxy verify-log`'s checks: access-log files against their hash chains.

Give it a day of files as logrotate leaves them (plain or gzip, from any number of
instances, in any order). Records are grouped by chain (`labels.log_chain`), ordered by
`event.sequence` and checked against their MAC (`sinks.seal` has the format). Every
problem is reported as `FILE:LINE: KIND: reason` at the first bad line; notes say what is
fine but worth knowing (a restart, where each chain begins and ends, records the proxy
declared dropped).

What no file can show (docs/log-chain.md): records cut from the very end of a chain's
newest file, or from the very start of its oldest given file, look like files not given.
The anchors for those are the SIEM's copy and the `auditproxy_log_sequence` gauge.

Memory: about 12 bytes per record (line number and a hash prefix), plus a little per run
of consecutive records in one file. The command itself (keys, usage) is in `cli.py`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, BinaryIO

from auditproxy.sinks.seal import (
    DROPPED,
    DROPPED_AFTER,
    FIELDS,
    HEX64,
    PREVIOUS,
    START,
    Mac,
    Start,
    chained_fields,
    parse_dropped,
    unseal,
)

# Problem kinds (exit 1). Notes use: restart, begins, ends, dropped.
PROBLEM_KINDS = (
    "not-json",  # a line that is not one JSON object (also: empty line)
    "incomplete",  # the file does not end with a newline: its last line was cut short
    "damaged",  # a gzip file that ends early or is corrupt
    "unchained",  # a record without chain fields (written by an older version?)
    "malformed",  # chain fields present but wrong, or event.hash not sealed at the end
    "edited",  # the MAC does not match: the line was edited or forged
    "unknown-key",  # no record of a chain verifies under any given key
    "unauthenticated",  # a chain with no record that can be checked (forged, or a fragment)
    "deleted",  # records missing inside a run of one file
    "missing-file",  # records missing between two files: a rotated file not given
    "duplicate",  # a record that appears twice, byte for byte
    "conflict",  # two different records with one sequence number
    "out-of-order",  # a record before one it should follow, in one file
    "misplaced",  # records in a file where the chain's neighbours are in another
    "truncated",  # a chain ends before the sequence its successor says it reached
)

_PENDING_LIMIT = 1000  # MAC failures kept per chain until a key is found for it


@dataclass(frozen=True, slots=True)
class Finding:
    file: str
    line: int
    kind: str
    reason: str
    chain: str | None = None
    sequence: int | None = None

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.kind}: {self.reason}"


@dataclass(slots=True)
class Segment:
    """A run of consecutive records of one chain in one file (sequence start, start+1...)."""

    chain: str
    file: int
    start: int
    first_body: bytes  # what the first record's MAC covers, checked once its predecessor is known
    first_hash: str
    last_hash: str
    lines: array = field(default_factory=lambda: array("L"))
    prefixes: array = field(default_factory=lambda: array("Q"))  # first 8 bytes of each hash
    unchecked: bool = True  # the first record's MAC is still to be checked
    reported: bool = False  # already reported as out of order, duplicate or conflict
    failed_last: bool = False
    declares: tuple[str, int, int] | None = None  # the first record's `labels.log_dropped`
    after: str | None = None  # and its `labels.log_dropped_after`: the hash it follows

    @property
    def end(self) -> int:
        return self.start + len(self.lines) - 1

    def add(self, line: int, digest: str) -> None:
        self.lines.append(line)
        self.prefixes.append(int(digest[:16], 16))
        self.last_hash = digest


@dataclass(slots=True)
class ChainInfo:
    chain: str
    order: int
    mac: Mac | None = None
    segments: list[Segment] = field(default_factory=list)
    pending: list[Finding] = field(default_factory=list)
    pending_dropped: int = 0
    checked: int = 0  # MAC checks made
    records: int = 0
    first_seen: tuple[int, int] = (0, 0)
    start: tuple[int, int, str | None, str | None] | None = None  # file, line, why, previous


@dataclass(slots=True)
class Report:
    files: list[str]
    problems: list[Finding]
    notes: list[Finding]
    chains: list[dict[str, Any]]
    records: int
    lines: int
    dropped: int = 0  # records the proxy declared dropped (log-dropped records)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": self.files,
            "lines": self.lines,
            "records": self.records,
            "dropped": self.dropped,
            "chains": self.chains,
            "problems": [asdict(p) for p in self.problems],
            "notes": [asdict(n) for n in self.notes],
        }

    def format(self) -> str:
        out = [p.format() for p in self.problems]
        out += [f"note: {n.format()}" for n in self.notes]
        for c in self.chains:
            out.append(
                f"chain {c['chain']}: sequences {c['first']}..{c['last']}, {c['records']} "
                f"records in {len(c['files'])} file(s), key {c['key_id'] or 'none verifies'}"
            )
        summary = (
            f"{self.records} records in {len(self.chains)} chain(s), {len(self.files)} file(s)"
        )
        if self.dropped:
            summary += f"; {self.dropped} record(s) declared dropped by the proxy (notes)"
        if self.ok:
            out.append(f"verify-log: OK: {summary}")
        else:
            out.append(f"verify-log: {len(self.problems)} problem(s): {summary}")
        return "\n".join(out)


def open_log(path: str) -> BinaryIO:
    """A log file for reading, gzip or plain (told by its first bytes, not its name)."""
    f = open(path, "rb")  # noqa: SIM115 - handed to the caller
    magic = f.peek(2)[:2] if hasattr(f, "peek") else b""
    if magic == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=f, mode="rb")  # type: ignore[return-value]
    return f


class Verifier:
    """Feed it files with `add`, then `finish()` for the report."""

    def __init__(self, keys: Iterable[bytes]) -> None:
        self.macs = [Mac(k) for k in keys]
        self.files: list[str] = []
        self.problems: list[Finding] = []
        self.notes: list[Finding] = []
        self.chains: dict[str, ChainInfo] = {}
        self.records = 0
        self.lines = 0
        # Ranges the proxy declared dropped, from records that verify: chain -> [(a, b)].
        self.declared: dict[str, list[tuple[int, int]]] = {}
        self._gaps: list[tuple[ChainInfo, Segment, Segment, int, list[Segment]]] = []

    # ----------------------------------------------------------------- reading

    def add(self, name: str, lines: Iterable[bytes]) -> None:
        """One file's lines (as read from it, with their newlines)."""
        index = len(self.files)
        self.files.append(name)
        open_segments: dict[str, Segment] = {}
        run: list[Any] | None = None  # [kind, Finding index, count] of bad lines in a row
        number = 0
        try:
            for raw in lines:
                number += 1
                line = raw[:-1] if raw.endswith(b"\n") else raw
                if line is raw:
                    self._problem(
                        index,
                        number,
                        "incomplete",
                        "no newline at the end of the file: the last line was cut short "
                        "(or is still being written)",
                    )
                kind = self._line(index, number, line, open_segments)
                if kind is None:
                    run = None
                elif run is None or run[0] != kind:
                    run = [kind, len(self.problems) - 1, 1]
                else:  # the same problem as the line before: one finding for the run
                    self.problems.pop()
                    run[2] += 1
                    first = self.problems[run[1]]
                    reason = first.reason.split(" (", 1)[0] + f" ({run[2]} lines from here)"
                    self.problems[run[1]] = Finding(first.file, first.line, kind, reason)
        except (EOFError, OSError, zlib.error) as e:
            self._problem(
                index,
                number + 1,
                "damaged",
                f"cannot read on after line {number}: {e} (a compressed file cut short?)",
            )
        finally:
            self.lines += number
            for segment in open_segments.values():
                self.chains[segment.chain].segments.append(segment)

    def _line(
        self,
        file: int,
        number: int,
        line: bytes,
        open_segments: dict[str, Segment],
    ) -> str | None:
        """Check one line; returns the kind of a problem that may repeat on the next lines
        (reported once per run), or None."""
        if not line.strip():
            self._problem(file, number, "not-json", "empty line")
            return None
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict):
            self._problem(file, number, "not-json", "not a JSON object")
            return "not-json"
        cursor = chained_fields(record)
        if cursor is None:
            if not any(name in record for name in FIELDS):
                reason = "a record without chain fields, from an older version?"
                self._problem(file, number, "unchained", reason)
                return "unchained"
            self._problem(file, number, "malformed", "chain fields missing or malformed")
            return None
        sealed = unseal(line)
        if sealed is None or sealed[1] != cursor.hash:
            self._problem(
                file,
                number,
                "malformed",
                "event.hash is not the last member of the line in the sealed form",
                cursor.chain,
                cursor.sequence,
            )
            return None
        body = sealed[0]
        self.records += 1
        info = self.chains.get(cursor.chain)
        if info is None:
            info = self.chains[cursor.chain] = ChainInfo(cursor.chain, len(self.chains))
            info.first_seen = (file, number)
        info.records += 1
        chain, sequence, digest = cursor.chain, cursor.sequence, cursor.hash
        if sequence == 1:
            why, previous = record.get(START), record.get(PREVIOUS)
            info.start = (file, number, why, previous if isinstance(previous, str) else None)
        declares = parse_dropped(record.get(DROPPED)) if DROPPED in record else None

        segment = open_segments.get(chain)
        if segment is not None and sequence == segment.end + 1:
            reason = (
                "does not chain from the record before it (whose event.hash was changed?), "
                "or changed itself"
                if segment.failed_last
                else None
            )
            ok = self._check(info, file, number, segment.last_hash, body, digest, sequence, reason)
            segment.failed_last = not ok
            segment.add(number, digest)
            if ok and declares is not None:
                self._declared(file, number, declares)
            return None

        reported = False
        if segment is not None and sequence <= segment.end:
            reported = True
            self._repeat(info, segment, file, number, sequence, digest)
        if segment is not None:
            info.segments.append(segment)
        segment = Segment(chain, file, sequence, body, digest, digest, reported=reported)
        segment.add(number, digest)
        segment.declares = declares
        after = record.get(DROPPED_AFTER) if declares is not None else None
        if isinstance(after, str) and HEX64.fullmatch(after.encode()):
            segment.after = after
        if sequence == 1:
            segment.unchecked = False
            segment.failed_last = not self._check(info, file, number, "", body, digest, 1)
            if not segment.failed_last and declares is not None:
                self._declared(file, number, declares)
        open_segments[chain] = segment
        return None

    def _declared(self, file: int, number: int, declares: tuple[str, int, int]) -> None:
        """A record that verifies says the proxy dropped a range: a note, and its gap is
        not a deletion."""
        chain, first, last = declares
        self.declared.setdefault(chain, []).append((first, last))
        count = last - first + 1
        self._note(
            file,
            number,
            "dropped",
            f"the proxy declares sequences {first}..{last} of chain {chain} ({count} "
            "record(s)) dropped: the log could not take them (a full disk?)",
            chain,
        )

    def _repeat(
        self, info: ChainInfo, segment: Segment, file: int, number: int, sequence: int, digest: str
    ) -> None:
        """A sequence at or below the last one of its chain in this file: a copy of a record
        seen before, a different record with its number, or a record out of order."""
        prefix = int(digest[:16], 16)
        for other in (segment, *reversed(info.segments)):
            if other.start <= sequence <= other.end:
                at = sequence - other.start
                where = (
                    f"line {other.lines[at]}"
                    if other.file == file
                    else (f"{self.files[other.file]}:{other.lines[at]}")
                )
                if other.prefixes[at] == prefix:
                    self._problem(
                        file, number, "duplicate", f"a copy of {where}", info.chain, sequence
                    )
                else:
                    self._problem(
                        file,
                        number,
                        "conflict",
                        f"sequence {sequence} again, unlike {where}",
                        info.chain,
                        sequence,
                    )
                return
        self._problem(
            file,
            number,
            "out-of-order",
            f"sequence {sequence} after sequence {segment.end} (line {segment.lines[-1]}): "
            "lines moved or swapped",
            info.chain,
            sequence,
        )

    def _check(
        self,
        info: ChainInfo,
        file: int,
        number: int,
        previous: str,
        body: bytes,
        digest: str,
        sequence: int,
        reason: str | None = None,
    ) -> bool:
        """Whether the record's MAC matches; a failure is a problem once the chain has a key
        (the first key that verifies one of its records)."""
        previous_bytes = previous.encode("ascii")
        info.checked += 1
        if info.mac is not None:
            if info.mac(previous_bytes, body) == digest:
                return True
        else:
            for mac in self.macs:
                if mac(previous_bytes, body) == digest:
                    info.mac = mac
                    return True
        finding = Finding(
            self.files[file],
            number,
            "edited",
            reason or "event.hash does not match the line: changed, or forged without the key",
            info.chain,
            sequence,
        )
        if info.mac is not None:
            self.problems.append(finding)
        elif len(info.pending) < _PENDING_LIMIT:
            info.pending.append(finding)
        else:
            info.pending_dropped += 1
        return False

    def _problem(
        self,
        file: int,
        line: int,
        kind: str,
        reason: str,
        chain: str | None = None,
        sequence: int | None = None,
    ) -> None:
        self.problems.append(Finding(self.files[file], line, kind, reason, chain, sequence))

    def _note(self, file: int, line: int, kind: str, reason: str, chain: str | None) -> None:
        self.notes.append(Finding(self.files[file], line, kind, reason, chain))

    # ----------------------------------------------------------------- checking

    def finish(self) -> Report:
        summaries = []
        ends: dict[str, tuple[int, Segment]] = {}
        for info in sorted(self.chains.values(), key=lambda c: c.order):
            segments = sorted(info.segments, key=lambda s: (s.start, s.file, s.lines[0]))
            self._walk(info, segments)
            self._misplaced(info, segments)
            self._settle_key(info)
            last = max(segments, key=lambda s: s.end)
            ends[info.chain] = (last.end, last)
            files = sorted(
                {s.file for s in segments},
                key=lambda f: min(s.start for s in segments if s.file == f),
            )
            summaries.append(
                {
                    "chain": info.chain,
                    "key_id": info.mac.key_id if info.mac else None,
                    "first": segments[0].start,
                    "last": last.end,
                    "records": info.records,
                    "files": [self.files[f] for f in files],
                }
            )
            self._note(
                last.file,
                last.lines[-1],
                "ends",
                f"chain {info.chain} ends here at sequence {last.end}: whether records "
                "followed cannot be told from the files (compare auditproxy_log_sequence or "
                "the SIEM)",
                info.chain,
            )
        for gap in self._gaps:
            self._gap(*gap)
        for info in self.chains.values():
            self._restart(info, ends)
        order = {name: i for i, name in enumerate(self.files)}
        self.problems.sort(key=lambda p: (order[p.file], p.line))
        self.notes.sort(key=lambda n: (order[n.file], n.line))
        dropped = sum(b - a + 1 for ranges in self.declared.values() for a, b in _merged(ranges))
        return Report(
            self.files, self.problems, self.notes, summaries, self.records, self.lines, dropped
        )

    def _undeclared(self, chain: str, first: int, last: int) -> int:
        """How many of sequences first..last the proxy did not declare dropped."""
        missing = last - first + 1
        for a, b in _merged(self.declared.get(chain, [])):
            missing -= max(0, min(b, last) - max(a, first) + 1)
        return missing

    def _settle_key(self, info: ChainInfo) -> None:
        """A chain no key verifies is one problem, not one per record."""
        if info.mac is None and not info.checked:
            # Anyone can write a line with a made-up chain id and sequence: a chain with
            # nothing to check is a problem, not a note.
            file, line = info.first_seen
            self._problem(
                file,
                line,
                "unauthenticated",
                f"chain {info.chain} has no record whose predecessor is in the input, so "
                "none can be checked: forged, or give the file before this one too",
                info.chain,
            )
            return
        if info.mac is None:
            file, line = info.first_seen
            keys = ", ".join(m.key_id for m in self.macs)
            self._problem(
                file,
                line,
                "unknown-key",
                f"no record of chain {info.chain} verifies under the given key(s) ({keys}): "
                "forged, or written under another key",
                info.chain,
            )
            return
        self.problems.extend(info.pending)
        if info.pending_dropped:
            last = info.pending[-1]
            self._problem(
                self.files.index(last.file),
                last.line,
                "edited",
                f"and {info.pending_dropped} more edited records of this chain not listed",
                info.chain,
            )

    def _walk(self, info: ChainInfo, segments: list[Segment]) -> None:
        """In sequence order: gaps, duplicates and conflicts, and the MAC of each run's first
        record against the record before it."""
        done: list[Segment] = []
        end = 0
        end_hash = ""
        end_segment: Segment | None = None
        for segment in segments:
            first_line = segment.lines[0]
            if end_segment is None:
                if segment.start > 1:
                    self._note(
                        segment.file,
                        first_line,
                        "begins",
                        f"chain {info.chain} begins here at sequence {segment.start}: the "
                        "record before it is not in the input, so this one is not "
                        "authenticated",
                        info.chain,
                    )
            elif segment.start == end + 1:
                if segment.unchecked:
                    ok = self._check(
                        info,
                        segment.file,
                        first_line,
                        end_hash,
                        segment.first_body,
                        segment.first_hash,
                        segment.start,
                    )
                    segment.unchecked = False
                    if ok and segment.declares is not None:
                        self._declared(segment.file, first_line, segment.declares)
            elif segment.start > end + 1:  # judged once every declaration is known
                self._gaps.append((info, end_segment, segment, end, segments))
                if segment.unchecked and segment.after is not None:
                    # A `log-dropped` record right after the records it declares: it names
                    # the hash it follows, so it is checked on its own.
                    segment.unchecked = False
                    if self._check(
                        info,
                        segment.file,
                        first_line,
                        segment.after,
                        segment.first_body,
                        segment.first_hash,
                        segment.start,
                    ):
                        self._declared(segment.file, first_line, segment.declares)
            elif not segment.reported:
                self._overlap(info, segment, done, end)
            done.append(segment)
            if segment.end > end:
                end, end_hash, end_segment = segment.end, segment.last_hash, segment

    def _gap(
        self, info: ChainInfo, before: Segment, after: Segment, end: int, segments: list[Segment]
    ) -> None:
        count = after.start - 1 - end
        undeclared = self._undeclared(info.chain, end + 1, after.start - 1)
        if not undeclared:
            return  # dropped by the proxy, which said so in a record that verifies (a note)
        missing = f"sequence {end + 1} (1 record)"
        if count > 1:
            missing = f"sequences {end + 1}..{after.start - 1} ({count} records)"
        if undeclared < count:
            missing += f", {count - undeclared} of them declared dropped by the proxy"
        last_of_file = all(s.start <= before.start for s in segments if s.file == before.file)
        first_of_file = all(s.start >= after.start for s in segments if s.file == after.file)
        if before.file != after.file and last_of_file and first_of_file:
            reason = (
                f"{missing} missing between the end of {self.files[before.file]} (line "
                f"{before.lines[-1]}) and this file: a rotated file not given or deleted (or "
                "lines cut from those ends)"
            )
            kind = "missing-file"
        else:
            reason = f"{missing} missing before this line (deleted, or unreadable above)"
            kind = "deleted"
        self._problem(after.file, after.lines[0], kind, reason, info.chain, end + 1)

    def _overlap(self, info: ChainInfo, segment: Segment, done: list[Segment], end: int) -> None:
        """Sequences this run shares with earlier ones: copies, or different records."""
        for sequence in range(segment.start, min(segment.end, end) + 1):
            mine = segment.prefixes[sequence - segment.start]
            for other in done:
                if other.start <= sequence <= other.end:
                    theirs = other.prefixes[sequence - other.start]
                    where = f"{self.files[other.file]}:{other.lines[sequence - other.start]}"
                    line = segment.lines[sequence - segment.start]
                    if mine != theirs:
                        self._problem(
                            segment.file,
                            line,
                            "conflict",
                            f"sequence {sequence} also at {where}, with different content",
                            info.chain,
                            sequence,
                        )
                        return
                    if sequence == segment.start:
                        last = min(segment.end, end)
                        self._problem(
                            segment.file,
                            line,
                            "duplicate",
                            f"sequences {sequence}..{last} repeat records from {where} "
                            "(copied lines, or one file given twice)",
                            info.chain,
                            sequence,
                        )
                    break

    def _misplaced(self, info: ChainInfo, segments: list[Segment]) -> None:
        """Each file should hold one run of a chain; a run whose neighbours in sequence are
        both in another file was moved there."""
        segments = [s for s in segments if not s.reported]  # reported as out of order
        blamed: set[int] = set()
        for i in range(1, len(segments) - 1):
            before, segment, after = segments[i - 1], segments[i], segments[i + 1]
            if segment.file == before.file:
                continue
            if before.file == after.file and segment.end < after.start:
                blamed.add(i)
                self._problem(
                    segment.file,
                    segment.lines[0],
                    "misplaced",
                    f"sequences {segment.start}..{segment.end} belong in "
                    f"{self.files[before.file]} between lines {before.lines[-1]} and "
                    f"{after.lines[0]}",
                    info.chain,
                    segment.start,
                )
        seen: set[int] = set()
        previous: Segment | None = None
        for i, segment in enumerate(segments):
            if i in blamed:
                continue
            if previous is not None and segment.file != previous.file and segment.file in seen:
                self._problem(
                    segment.file,
                    segment.lines[0],
                    "misplaced",
                    f"sequence {segment.start} comes after sequences in "
                    f"{self.files[previous.file]}, but this file also holds earlier ones: "
                    "records moved between files",
                    info.chain,
                    segment.start,
                )
            seen.add(segment.file)
            previous = segment

    def _restart(self, info: ChainInfo, ends: dict[str, tuple[int, Segment]]) -> None:
        """A chain's first record says why it is new; check what it says it follows."""
        if info.start is None:
            return
        file, line, why, previous = info.start
        follows = f", after {previous}" if previous else ""
        detail = ": first start, or the state file was lost" if why == Start.NEW else ""
        self._note(
            file,
            line,
            "restart",
            f"chain {info.chain} begins ({why or 'no reason given'}{detail}{follows})",
            info.chain,
        )
        if not previous or ":" not in previous:
            return
        name, _, number = previous.rpartition(":")
        if not number.isdigit() or name not in ends:
            if name not in ends:
                self._note(
                    file,
                    line,
                    "restart",
                    f"the chain it follows, {name}, is not in the input",
                    info.chain,
                )
            return
        reached, segment = ends[name]
        if reached < int(number) and self._undeclared(name, reached + 1, int(number)):
            self._problem(
                segment.file,
                segment.lines[-1],
                "truncated",
                f"chain {name} ends here at sequence {reached}, but chain {info.chain} "
                f"({self.files[file]}:{line}) began after {name}:{number}: sequences "
                f"{reached + 1}..{number} missing (cut from the end of a file, or a file "
                "not given)",
                name,
                reached + 1,
            )


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sequence ranges, sorted and joined where they touch or overlap."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def read_lines(f: BinaryIO) -> Iterator[bytes]:
    yield from f


def verify_files(paths: list[str], keys: list[bytes]) -> Report:
    """Verify files (opened here; OSError for one that cannot be opened)."""
    verifier = Verifier(keys)
    for path in paths:
        with open_log(path) as f:
            verifier.add(path, read_lines(f))
    return verifier.finish()
