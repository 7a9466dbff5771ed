"""The access log's hash chain (sinks.seal, sinks.chain, sinks.chainstate): sealing,
resuming, the state file and its lock, dropped records, and the chain in the AccessLog."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest

from auditproxy.decide.decision import Engine
from auditproxy.policy.load import parse_policy
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.chainstate import State, claim, claim_free, read_state, read_tail
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import ALLOWED_FIELDS, Exchange, access_event
from auditproxy.sinks.seal import (
    CHAIN,
    DROPPED,
    HASH,
    PREVIOUS,
    SEQUENCE,
    START,
    Cursor,
    Mac,
    Start,
    derive_key,
    key_id,
    unseal,
)
from auditproxy.sinks.verify import verify_files

SECRET = b"s" * 32
KEY = derive_key(SECRET)
OPEN = LoggingSettings(source_ip=True, url_path=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def engine(small_policy_text: str) -> Engine:
    return Engine(parse_policy(small_policy_text), SECRET)


def exchange() -> Exchange:
    return Exchange("GET", "https", 443, "/p?q=SECRET", "2.0", 200, 123, 5_000, "10.1.2.3")


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lines(chain: LogChain, n: int, start: int = 0) -> list[str]:
    return [
        chain(None, "info", json.dumps({"n": start + i}, separators=(",", ":"))) for i in range(n)
    ]


# --- the MAC and the seal -----------------------------------------------------------------


def test_mac_is_hmac_sha256_and_the_key_is_derived_with_a_purpose():
    assert hmac.new(SECRET, b"auditproxy log chain", hashlib.sha256).digest() == KEY
    assert KEY != SECRET and len(key_id(KEY)) == 12 and key_id(KEY) != key_id(SECRET)
    mac = Mac(KEY)
    expected = hmac.new(KEY, b"prev" + b"body", hashlib.sha256).hexdigest()
    assert mac(b"prev", b"body") == expected
    assert mac(b"prev", b"body") == expected  # the keyed state is copied, never consumed
    long_key = b"x" * 100  # longer than a block: hashed first, as RFC 2104 says
    assert Mac(long_key)(b"", b"b") == hmac.new(long_key, b"b", hashlib.sha256).hexdigest()
    assert mac.seal(b"prev", b"{body") == expected_of(b"prev{body}").encode()


def expected_of(message: bytes) -> str:
    return hmac.new(KEY, message, hashlib.sha256).hexdigest()


def test_seal_covers_the_exact_line_and_chains_to_the_previous_hash():
    chain = LogChain(KEY)
    first, second = lines(chain, 2)
    one, two = json.loads(first), json.loads(second)
    assert (one[SEQUENCE], two[SEQUENCE]) == (1, 2)
    assert one[CHAIN] == two[CHAIN] == chain.chain
    assert one[START] == "new" and START not in two and PREVIOUS not in one
    assert list(one)[-1] == HASH  # the seal is the last member
    body, digest = unseal(second.encode())
    assert digest == two[HASH]
    assert body == (second[: second.rindex(',"event.hash":')] + "}").encode()
    assert Mac(KEY)(one[HASH].encode(), body) == digest
    body1, digest1 = unseal(first.encode())
    assert Mac(KEY)(b"", body1) == digest1  # the first record chains from nothing
    assert chain.sequence == 2 and chain.cursor == Cursor(chain.chain, 2, digest)


def test_seal_of_an_empty_object_is_valid_json():
    line = LogChain(KEY)(None, "info", "{}")
    assert json.loads(line)[SEQUENCE] == 1


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"{}",
        b'{"a":1}',
        b'{"a":1,"event.hash":"' + b"A" * 64 + b'"}',  # upper case: not our form
        b'{"a":1,"event.hash":"' + b"a" * 63 + b'"}',
        b'{"a":1,"event.hash":"' + b"a" * 64 + b'"} ',
        b'{"a":1,"event.hash": "' + b"a" * 64 + b'"}',
    ],
)
def test_unseal_refuses_anything_but_the_exact_seal(line):
    assert unseal(line) is None


# --- composed with the access log as it is -----------------------------------------------


def test_chain_in_the_access_log_and_sink(engine, tmp_path):
    """The chain after the JSON renderer, one per LogSink, shared by `with_settings`
    copies. Privacy still applies, rotation is followed, and the records verify."""
    path = tmp_path / "access.log"
    outcomes: list[str] = []
    chain = LogChain.open(KEY, str(path), tmp_path / "chain.json")
    log = AccessLog(LogSink(str(path), outcomes.append), OPEN, chain)
    decision = engine.decide(host="www.facebook.com", client_address="10.1.2.3")
    log.emit(access_event(decision, exchange()))
    os.rename(path, tmp_path / "access.log.1")  # logrotate
    log.sink.maintain()
    log = log.with_settings(LoggingSettings(source_ip=False, url_path=False))  # a reload
    assert log.chain is chain
    log.emit(access_event(decision, exchange()))
    log.emit(access_event(decision, exchange(), "blocked"))
    log.sink.close()
    chain.close()
    old, new = records(tmp_path / "access.log.1"), records(path)
    assert [r[SEQUENCE] for r in old + new] == [1, 2, 3]
    assert "SECRET" not in path.read_text() and "source.ip" not in new[0]
    for record in old + new:  # the chain's fields come on top of the allow-list
        assert set(record) - ALLOWED_FIELDS <= {SEQUENCE, HASH, CHAIN, START}
    assert outcomes == ["written"] * 3
    report = verify_files([str(path), str(tmp_path / "access.log.1")], [KEY])
    assert report.ok, report.format()


# --- resuming -------------------------------------------------------------------------------


def write(path: Path, text_lines: list[str]) -> None:
    with open(path, "a") as f:
        f.writelines(line + "\n" for line in text_lines)


def test_resumes_from_the_last_record_of_the_file(tmp_path):
    log, state = tmp_path / "access.log", tmp_path / "chain.json"
    first = LogChain.open(KEY, str(log), state)
    write(log, lines(first, 3))
    # a crash: no close(), the state is at most a second old (here: never saved since start)
    again = LogChain.open(KEY, str(log), state)
    assert again.cursor == first.cursor
    write(log, lines(again, 2))
    assert [r[SEQUENCE] for r in records(log)] == [1, 2, 3, 4, 5]
    assert verify_files([str(log)], [KEY]).ok


def test_partial_last_line_is_skipped_when_resuming(tmp_path):
    log = tmp_path / "access.log"
    first = LogChain(KEY)
    write(log, lines(first, 2))
    with open(log, "a") as f:
        f.write('{"cut":')  # a full disk cut the last write
    tail = read_tail(log, Mac(KEY))
    assert tail is not None and tail.cursor == first.cursor and tail.verified is True


def test_tail_only_reads_the_end_of_a_large_file(tmp_path):
    log = tmp_path / "access.log"
    chain = LogChain(KEY)
    write(log, lines(chain, 50))
    tail = read_tail(log, Mac(KEY), limit=300)  # about two lines
    assert tail is not None and tail.cursor.sequence == 50


def test_lone_tail_record_cannot_be_verified_but_is_continued(tmp_path):
    log = tmp_path / "access.log"
    chain = LogChain(KEY)
    lines(chain, 4)  # written to a rotated file
    write(log, lines(chain, 1))
    tail = read_tail(log, Mac(KEY))
    assert tail is not None and tail.verified is None
    assert LogChain.open(KEY, str(log), None).cursor == chain.cursor


def test_clean_stop_then_rotation_resumes_from_the_state_file(tmp_path):
    log, state = tmp_path / "access.log", tmp_path / "chain.json"
    first = LogChain.open(KEY, str(log), state)
    write(log, lines(first, 3))
    first.close()
    assert read_state(state)[0] == State(first.cursor, key_id(KEY), True)
    os.rename(log, tmp_path / "access.log.1")  # the new file is empty (or not there)
    again = LogChain.open(KEY, str(log), state)
    assert again.cursor == first.cursor
    assert read_state(state)[0].clean is False  # marked running at once
    write(log, lines(again, 1))
    assert verify_files([str(tmp_path / "access.log.1"), str(log)], [KEY]).ok


def test_stdout_continues_from_the_state_file(tmp_path):
    state = tmp_path / "chain.json"
    first = LogChain.open(KEY, "-", state)
    lines(first, 2)
    first.close()
    assert LogChain.open(KEY, "-", state).cursor == first.cursor


def test_unclean_stop_without_a_tail_starts_a_new_chain_naming_the_old(tmp_path):
    log, state = tmp_path / "access.log", tmp_path / "chain.json"
    clock = Clock()
    first = LogChain.open(KEY, str(log), state, clock=clock)
    write(log, lines(first, 3))
    clock.now += 2
    first.maintain()  # saved at sequence 3
    write(log, lines(first, 2))  # then a crash: the state is behind the log
    os.rename(log, tmp_path / "access.log.1")
    again = LogChain.open(KEY, str(log), state)
    assert again.chain != first.chain and again.sequence == 0
    record = json.loads(lines(again, 1)[0])
    assert record[START] == "unclean-stop" and record[PREVIOUS] == f"{first.chain}:3"


def test_lost_state_and_empty_file_start_a_new_chain_that_says_so(tmp_path):
    log = tmp_path / "access.log"
    chain = LogChain.open(KEY, str(log), tmp_path / "missing" / "chain.json")
    record = json.loads(lines(chain, 1)[0])
    assert (record[SEQUENCE], record[START]) == (1, "new") and PREVIOUS not in record


def test_unreadable_state_starts_a_new_chain(tmp_path):
    state = tmp_path / "chain.json"
    state.write_text("{not json")
    chain = LogChain.open(KEY, str(tmp_path / "access.log"), state)
    assert json.loads(lines(chain, 1)[0])[START] == "state-unreadable"


def test_tail_under_another_key_starts_a_new_chain(tmp_path):
    log = tmp_path / "access.log"
    old = LogChain(derive_key(b"o" * 32))
    write(log, lines(old, 2))
    chain = LogChain.open(KEY, str(log), None)
    record = json.loads(lines(chain, 1)[0])
    assert record[START] == "tail-unverified" and record[PREVIOUS] == f"{old.chain}:2"


def test_state_under_another_key_starts_a_new_chain(tmp_path):
    state = tmp_path / "chain.json"
    old = LogChain.open(derive_key(b"o" * 32), "-", state)
    lines(old, 2)
    old.close()
    chain = LogChain.open(KEY, "-", state)
    assert json.loads(lines(chain, 1)[0])[START] == "key-changed"


def test_state_ahead_of_the_file_continues_so_the_gap_shows(tmp_path):
    """Records the state saw but the file lost (cut, or dropped by a full disk) stay a gap."""
    log, state = tmp_path / "access.log", tmp_path / "chain.json"
    chain = LogChain.open(KEY, str(log), state)
    write(log, lines(chain, 2))
    lines(chain, 3)  # never reached the file
    chain.close()
    again = LogChain.open(KEY, str(log), state)
    assert again.cursor == chain.cursor
    write(log, lines(again, 1))
    report = verify_files([str(log)], [KEY])
    assert [p.kind for p in report.problems] == ["deleted"]


def test_a_chain_that_never_wrote_keeps_its_start_fields(tmp_path):
    state = tmp_path / "chain.json"
    old = LogChain(derive_key(b"o" * 32))
    lines(old, 1)
    chain = LogChain(KEY, start=Start.KEY_CHANGED, previous=f"{old.chain}:1", state_path=state)
    chain.close()  # stopped before any request
    again = LogChain.open(KEY, "-", state)
    record = json.loads(lines(again, 1)[0])
    assert (record[CHAIN], record[SEQUENCE]) == (chain.chain, 1)
    assert (record[START], record[PREVIOUS]) == ("key-changed", f"{old.chain}:1")


def test_rekey_starts_a_new_chain_naming_the_old():
    chain = LogChain(KEY)
    lines(chain, 2)
    before = chain.cursor
    chain.rekey(KEY)  # same key: nothing happens
    assert chain.cursor == before
    chain.rekey(derive_key(b"n" * 32))
    record = json.loads(lines(chain, 1)[0])
    assert record[START] == "key-changed" and record[PREVIOUS] == str(before)


# --- the state file ------------------------------------------------------------------------


def test_state_is_saved_at_most_once_a_second_and_never_per_record(tmp_path, monkeypatch):
    from auditproxy.sinks import chainstate as module

    saves: list[State] = []
    real = module.write_state

    def counting(path, state, **kw):
        saves.append(state)
        real(path, state, **kw)

    monkeypatch.setattr(module, "write_state", counting)
    clock = Clock()
    state = tmp_path / "chain.json"
    chain = LogChain.open(KEY, "-", state, clock=clock)
    assert len(saves) == 1  # "running", at start
    for _ in range(3):
        lines(chain, 100)
        chain.maintain()
        clock.now += 0.3
    assert len(saves) == 1  # less than a second since the first save
    clock.now += 1
    chain.maintain()
    chain.maintain()
    assert len(saves) == 2 and saves[-1].cursor.sequence == 300
    clock.now += 5
    chain.maintain()  # nothing new: nothing written
    assert len(saves) == 2
    chain.close()
    assert saves[-1].clean and saves[-1].cursor == chain.cursor
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["chain.json"]  # no temporary left


def test_state_that_cannot_be_written_is_a_fault_not_a_failure(tmp_path):
    faults: list[str] = []
    chain = LogChain(KEY, state_path=tmp_path / "no" / "such" / "dir.json", on_fault=faults.append)
    assert json.loads(lines(chain, 1)[0])[SEQUENCE] == 1
    chain.close()
    assert faults and "cannot write log chain state" in faults[0]


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"format": 2}',
        '{"format": 1, "chain": "zz", "sequence": 1, "hash": "", "key_id": "k", "clean": true}',
        '{"format": 1, "chain": "0123456789abcdef", "sequence": true, "hash": "",'
        ' "key_id": "k", "clean": true}',
        '{"format": 1, "chain": "0123456789abcdef", "sequence": 3, "hash": "",'
        ' "key_id": "k", "clean": true}',
        "\xff",
    ],
)
def test_bad_state_files_are_reported_not_trusted(tmp_path, text):
    state = tmp_path / "chain.json"
    state.write_text(text, encoding="latin-1")
    loaded, problem = read_state(state)
    assert loaded is None and problem


# --- the state file's lock ----------------------------------------------------------------


def test_a_state_file_is_held_by_one_process_at_a_time(tmp_path):
    state = tmp_path / "chain.json"
    first = claim(state)
    assert first is not None
    assert claim(state) is None  # flock: another open file description, refused
    slots = [tmp_path / "chain.json", tmp_path / "chain-2.json", tmp_path / "chain-3.json"]
    found = claim_free(slots)
    assert found is not None and found[0] == slots[1]
    first.release()
    again = claim(state)
    assert again is not None
    again.release()
    found[1].release()


def test_close_releases_the_claim(tmp_path):
    state = tmp_path / "chain.json"
    held = claim(state)
    chain = LogChain.open(KEY, "-", state, claim=held)
    assert claim(state) is None
    chain.close()
    assert claim(state) is not None


# --- records the sink dropped -----------------------------------------------------------


def sealed(chain: LogChain, n: int) -> list[bytes]:
    return [line.encode() + b"\n" for line in lines(chain, n)]


def test_dropped_lines_become_ranges_to_declare():
    chain = LogChain(KEY)
    written = sealed(chain, 2)
    lost = sealed(chain, 3)
    for line in lost:
        chain.dropped(line)
    chain.dropped(b"not a sealed line\n")  # ignored
    assert chain.has_dropped
    assert chain.take_dropped() == [(f"{chain.chain}:3-5", 3)]
    assert not chain.has_dropped and written


def test_a_dropped_declaration_is_declared_again():
    """The record declaring 3-5 is itself dropped: its range and its own number come
    back, so nothing is left undeclared."""
    chain = LogChain(KEY)
    sealed(chain, 2)
    for line in sealed(chain, 3):
        chain.dropped(line)
    ((declared, _),) = chain.take_dropped()
    note = chain(None, "info", json.dumps({DROPPED: declared}, separators=(",", ":")))
    chain.dropped(note.encode())
    assert chain.take_dropped() == [(f"{chain.chain}:3-6", 4)]


def test_dropped_ranges_survive_a_restart_in_the_state_file(tmp_path):
    state = tmp_path / "chain.json"
    chain = LogChain.open(KEY, "-", state)
    sealed(chain, 1)
    for line in sealed(chain, 2):
        chain.dropped(line)
    chain.close()
    assert read_state(state)[0].dropped == (f"{chain.chain}:2-3",)
    again = LogChain.open(KEY, "-", state)
    assert again.take_dropped() == [(f"{chain.chain}:2-3", 2)]


def test_sink_hands_dropped_lines_to_the_chain_and_verify_reads_them_as_dropped(tmp_path):
    """A full disk: the sink drops the oldest; the chain declares them in a later record;
    verify-log reports a note, not a deletion. Without the declaration: `deleted`."""
    chain = LogChain(KEY)
    outcomes: list[str] = []
    sink = LogSink("/dev/full", outcomes.append, backlog_limit=2, on_dropped=chain.dropped)
    log = AccessLog(sink, OPEN, chain)
    target = tmp_path / "access.log"
    write(target, lines(chain, 2))  # written before the disk filled
    for i in range(5):
        log.emit({"event.action": "access", "labels.site": f"s{i}"})
    assert outcomes == ["dropped"] * 3 and sink.backlog == 2
    sink.path, sink._fd = str(target), None  # the disk has room again
    sink.maintain()
    assert sink.healthy and not sink.backlog
    without = tmp_path / "without.log"
    without.write_bytes(target.read_bytes())
    ((declared, count),) = chain.take_dropped()
    assert (declared, count) == (f"{chain.chain}:3-5", 3)
    from auditproxy.sinks.records import log_dropped_event

    log.emit(log_dropped_event(declared, count))
    last = records(target)[-1]
    assert last["event.action"] == "log-dropped" and last[DROPPED] == declared
    report = verify_files([str(target)], [KEY])
    assert report.ok, report.format()
    assert report.dropped == 3 and "3 record(s) declared dropped" in report.format()
    assert [n.kind for n in report.notes if n.kind == "dropped"] == ["dropped"]
    assert [p.kind for p in verify_files([str(without)], [KEY]).problems] == ["deleted"]


def test_a_declaration_that_does_not_verify_excuses_nothing(tmp_path):
    """Anyone can write `labels.log_dropped` into a line; only a sealed one counts."""
    chain = LogChain(KEY)
    log = tmp_path / "access.log"
    out = sealed(chain, 5)
    declaration = f"{chain.chain}:3-3"
    forged = LogChain(derive_key(b"w" * 32), resume=chain.cursor, chain_id=chain.chain)
    fake = forged(None, "info", json.dumps({DROPPED: declaration}, separators=(",", ":")))
    log.write_bytes(b"".join(out[:2] + out[3:]) + fake.encode() + b"\n")
    kinds = [p.kind for p in verify_files([str(log)], [KEY]).problems]
    assert kinds == ["deleted", "edited"]


# --- the log file's gaps ----------------------------------------------------------------


def test_a_new_process_does_not_glue_its_first_line_to_a_cut_one(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'{"a":1}\n{"cut":')  # the last process stopped mid-line
    sink = LogSink(str(path), lambda _: None)
    sink.write('{"b":2}')
    sink.write('{"c":3}')
    assert path.read_bytes() == b'{"a":1}\n{"cut":\n{"b":2}\n{"c":3}\n'


def test_a_file_that_ends_with_a_newline_gets_none_added(tmp_path):
    path = tmp_path / "access.log"
    path.write_bytes(b'{"a":1}\n')
    sink = LogSink(str(path), lambda _: None)
    sink.write('{"b":2}')
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'


def test_a_declaration_right_after_its_gap_verifies_by_the_hash_it_names(tmp_path):
    """Records 2-3 were dropped and the next record written declares them: its own
    predecessor is not in the file, so it names that record's hash and is checked on it."""
    from auditproxy.sinks.records import log_dropped_event

    chain = LogChain(KEY)
    log = tmp_path / "access.log"
    out = sealed(chain, 1)
    for line in sealed(chain, 2):
        chain.dropped(line)
    ((declared, count),) = chain.take_dropped()
    fields = log_dropped_event(declared, count, chain.cursor.hash)
    note = chain(None, "info", json.dumps(fields, separators=(",", ":")))
    log.write_bytes(b"".join(out) + note.encode() + b"\n")
    report = verify_files([str(log)], [KEY])
    assert report.ok and report.dropped == 2, report.format()
    wrong = note.replace('"event.reason":"the', '"event.reason":"The', 1)
    log.write_bytes(b"".join(out) + wrong.encode() + b"\n")
    kinds = [p.kind for p in verify_files([str(log)], [KEY]).problems]
    assert kinds == ["edited", "deleted"]  # an edited declaration excuses nothing


def test_the_position_of_a_dropped_line_is_read_without_json_and_cannot_be_faked():
    from auditproxy.sinks.seal import sealed_position

    chain = LogChain(KEY)
    bait = ',"event.sequence":99,"labels.log_chain":"' + "f" * 16 + '"'
    line = chain(None, "info", json.dumps({"url.path": bait}, separators=(",", ":")))
    assert sealed_position(line.encode()) == (chain.chain, 1)
    assert sealed_position(b'{"a":1}') is None
