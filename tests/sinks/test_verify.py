"""`auditproxy verify-log`: a day of rotated files from two instances, and every way of
changing them that the chain must show."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditproxy.cli import main
from auditproxy.decide.decision import Engine
from auditproxy.policy.load import load_policy
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import Exchange, access_event, notice_event, tunnel_event
from auditproxy.sinks.seal import Mac, derive_key, unseal
from auditproxy.sinks.verify import Report, Verifier, verify_files
from support.fuzz import fuzz
from support.paths import POLICIES

SECRET = bytes(range(32))
KEY = derive_key(SECRET)
SETTINGS = LoggingSettings(source_ip=True, url_path=True)


# ---------------------------------------------------------------------------------------
# A day of logs, written by the real access log and sink with the chain plugged in


class Instance:
    """One proxy process after another on one log directory, as systemd and logrotate
    would run them: start, write, rotate, stop cleanly or crash."""

    def __init__(self, folder: Path, engine: Engine) -> None:
        self.folder = folder
        folder.mkdir()
        self.engine = engine
        self.log = folder / "access.log"
        self.state = folder / "log-chain.json"
        self.rotations = 0
        self.count = 0
        self.start()

    def start(self) -> None:
        self.chain = LogChain.open(KEY, str(self.log), self.state)
        self.access = AccessLog(LogSink(str(self.log), lambda _: None), SETTINGS, self.chain)

    def emit(self, n: int) -> None:
        for _ in range(n):
            self.count += 1
            decision = self.engine.decide(
                host=f"www{self.count % 3}.facebook.com",
                client_address="10.1.2.3",
                proxyauth_user=f"user{self.count % 5}",
            )
            kind = self.count % 4
            if kind == 0:
                self.access.emit(tunnel_event(decision, 443, "10.1.2.3"))
            elif kind == 1:
                self.access.emit(notice_event(decision, "notice-shown", "site:facebook"))
            else:
                ex = Exchange(
                    "GET", "https", 443, f"/p/{self.count}", "2.0", 200, 99, 7, "10.1.2.3"
                )
                self.access.emit(access_event(decision, ex))

    def rotate(self) -> None:
        """logrotate: move the file aside (the running sink notices within a second)."""
        self.rotations += 1
        os.rename(self.log, self.folder / f"access.log-{self.rotations}")
        self.access.sink.maintain()

    def stop(self) -> None:
        self.access.sink.close()
        self.chain.close()

    def crash(self) -> None:
        self.access.sink.close()  # the lines are in the file; the chain's state is not saved

    def compress_old(self) -> None:
        """logrotate's compress + delaycompress: all but the newest rotated file."""
        for n in range(1, self.rotations):
            path = self.folder / f"access.log-{n}"
            if path.exists():
                with gzip.open(str(path) + ".gz", "wb") as f:
                    f.write(path.read_bytes())
                path.unlink()

    def files(self) -> list[Path]:
        """Oldest first: access.log-1.gz, access.log-2.gz, access.log-3, access.log."""
        rotated = sorted(p for p in self.folder.iterdir() if p.name.startswith("access.log-"))
        return [*rotated, self.log]


@dataclass
class Day:
    files: list[Path]
    key_file: Path

    def names(self) -> list[str]:
        return [str(p) for p in self.files]


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Day:
    root = tmp_path_factory.mktemp("day")
    engine = Engine(load_policy(POLICIES / "small.yaml"), SECRET)

    a = Instance(root / "a", engine)
    a.emit(6)
    a.rotate()
    a.emit(6)
    a.stop()  # clean stop, then a restart resumes from the file's last record
    a.start()
    a.emit(4)
    a.rotate()
    a.emit(3)
    a.crash()  # a crash; then logrotate moves the file and the state file is lost
    a.rotate()
    a.state.unlink()
    a.start()  # a new chain, `new`
    a.emit(5)
    a.stop()
    a.compress_old()

    b = Instance(root / "b", engine)
    b.emit(5)
    b.rotate()
    b.emit(5)
    b.stop()
    b.rotate()  # rotated while stopped: the next start continues from the state file
    b.start()
    b.emit(5)
    b.crash()  # the state says "running" at sequence 10
    b.rotate()
    b.start()  # a new chain, `unclean-stop`, after b's first chain at 10 (it reached 15)
    b.emit(4)
    b.stop()
    b.compress_old()

    key_file = root / "pseudonym.key"
    key_file.write_text(SECRET.hex() + "\n")
    key_file.chmod(0o600)
    files = a.files() + b.files()
    return Day(files, key_file)


def read(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def copy_day(day: Day, folder: Path) -> list[Path]:
    """The day's files, decompressed, under folder (for editing)."""
    folder.mkdir(exist_ok=True)
    out = []
    for path in day.files:
        target = folder / f"{path.parent.name}-{path.name.removesuffix('.gz')}"
        target.write_bytes(read(path))
        out.append(target)
    return out


def verify(paths: list[Path], keys: tuple[bytes, ...] = (KEY,)) -> Report:
    return verify_files([str(p) for p in paths], list(keys))


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def kinds(report: Report) -> list[str]:
    return [p.kind for p in report.problems]


def at(report: Report) -> list[str]:
    return [f"{Path(p.file).name}:{p.line}:{p.kind}" for p in report.problems]


# ---------------------------------------------------------------------------------------
# A clean day


def test_clean_day_from_two_instances_passes(day):
    report = verify(day.files)
    assert report.ok, report.format()
    assert len(day.files) == 8 and any(p.suffix == ".gz" for p in day.files)
    assert report.records == 6 + 6 + 4 + 3 + 5 + 5 + 5 + 5 + 4
    assert len(report.chains) == 4
    restarts = [n.reason for n in report.notes if n.kind == "restart"]
    assert sum("(new: first start, or the state file was lost)" in r for r in restarts) == 3
    assert sum("unclean-stop" in r and ":10)" in r for r in restarts) == 1


def test_files_in_any_order(day):
    assert verify(list(reversed(day.files))).ok


def test_cli_human_and_json_output(day, capsys):
    assert main(["verify-log", "--key", str(day.key_file), *day.names()]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("verify-log: OK: 43 records in 4 chain(s), 8 file(s)")
    assert main(["verify-log", "--json", "--key", str(day.key_file), *day.names()]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["problems"] == [] and len(report["chains"]) == 4


def test_cli_usage_errors_exit_2(day, tmp_path, capsys):
    assert main(["verify-log", *day.names()]) == 2
    assert "no key" in capsys.readouterr().err
    assert main(["verify-log", "--key", str(day.key_file), str(tmp_path / "nope.log")]) == 2
    loose = tmp_path / "loose.key"
    loose.write_text(SECRET.hex())
    loose.chmod(0o644)
    assert main(["verify-log", "--key", str(loose), *day.names()]) == 2
    assert "readable by others" in capsys.readouterr().err


def test_the_installed_command(day, tmp_path):
    """The one subprocess: the real entry point, exit statuses 0 and 1."""
    command = [sys.executable, "-m", "auditproxy.cli", "verify-log", "--key", str(day.key_file)]
    clean = subprocess.run([*command, *day.names()], capture_output=True, text=True, timeout=60)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    files = copy_day(day, tmp_path / "copy")
    data = lines_of(files[1])
    files[1].write_bytes(b"".join(data[:2] + data[3:]))
    broken = subprocess.run(
        [*command, *map(str, files)], capture_output=True, text=True, timeout=60
    )
    assert broken.returncode == 1
    assert f"{files[1]}:3: deleted: sequence 9 (1 record) missing" in broken.stdout


# ---------------------------------------------------------------------------------------
# Each kind of change


def test_one_line_edited(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[2])
    data[1] = data[1].replace(b'"user.name":"user', b'"user.name":"usex')
    files[2].write_bytes(b"".join(data))
    report = verify(files)
    assert at(report) == [f"{files[2].name}:2:edited"]
    assert report.problems[0].reason.startswith("event.hash does not match the line")


def test_one_line_removed(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    files[0].write_bytes(b"".join(data[:3] + data[4:]))
    report = verify(files)
    assert at(report) == [f"{files[0].name}:4:deleted"]
    assert "sequence 4 (1 record) missing" in report.problems[0].reason


def test_one_line_duplicated(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    files[0].write_bytes(b"".join([*data[:3], data[2], *data[3:]]))
    assert at(verify(files)) == [f"{files[0].name}:4:duplicate"]


def test_two_lines_swapped(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    data[2], data[3] = data[3], data[2]
    files[0].write_bytes(b"".join(data))
    report = verify(files)
    assert at(report) == [f"{files[0].name}:4:out-of-order"]
    assert "sequence 3 after sequence 4 (line 3)" in report.problems[0].reason


def test_a_whole_file_missing(day, tmp_path):
    files = copy_day(day, tmp_path)
    missing = files.pop(1)  # a's second file, between two others of the same chain
    report = verify(files)
    assert kinds(report) == ["missing-file"]
    assert Path(report.problems[0].file).name == files[1].name
    assert "sequences 7..16 (10 records) missing between the end of" in report.problems[0].reason
    assert missing.name not in report.format()


def test_a_line_moved_to_another_file(day, tmp_path):
    files = copy_day(day, tmp_path)
    first, other = lines_of(files[0]), lines_of(files[5])  # a's oldest, b's second
    files[0].write_bytes(b"".join(first[:2] + first[3:]))
    files[5].write_bytes(b"".join([*other[:2], first[2], *other[2:]]))
    report = verify(files)
    assert at(report) == [f"{files[5].name}:3:misplaced"]
    assert f"sequences 3..3 belong in {files[0]} between lines 2 and 3" in report.format()


def test_a_line_moved_later_in_the_next_file(day, tmp_path):
    files = copy_day(day, tmp_path)
    first, second = lines_of(files[0]), lines_of(files[1])
    files[0].write_bytes(b"".join(first[:2] + first[3:]))
    files[1].write_bytes(b"".join([*second, first[2]]))
    report = verify(files)
    assert at(report) == [f"{files[1].name}:11:out-of-order"]
    assert "sequence 3 after sequence 16 (line 10)" in report.problems[0].reason


def test_a_file_copied_under_another_name(day, tmp_path):
    files = copy_day(day, tmp_path)
    copy = tmp_path / "copy.log"
    copy.write_bytes(files[0].read_bytes())
    report = verify([*files, copy])
    assert at(report) == ["copy.log:1:duplicate"]


def test_one_file_named_twice_is_not_a_duplicate(day, capsys):
    names = day.names()
    assert main(["verify-log", "--key", str(day.key_file), *names, names[0]]) == 0


def test_a_forged_line_with_a_wrong_key(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    body, _ = unseal(data[2].rstrip(b"\n"))
    previous = json.loads(data[1])["event.hash"].encode()
    forged_body = body.replace(b'"user.name":"user', b'"user.name":"mallory')
    digest = Mac(derive_key(b"w" * 32))(previous, forged_body)
    data[2] = forged_body[:-1] + b',"event.hash":"' + digest.encode() + b'"}\n'
    files[0].write_bytes(b"".join(data))
    report = verify(files)
    assert at(report) == [f"{files[0].name}:3:edited", f"{files[0].name}:4:edited"]
    assert "does not chain from the record before it" in report.problems[1].reason


def test_a_forged_file_with_a_wrong_key(day, tmp_path):
    forged = tmp_path / "forged.log"
    chain = LogChain(derive_key(b"w" * 32))
    forged.write_text("".join(chain(None, "info", '{"user.name":"x"}') + "\n" for _ in range(3)))
    report = verify([*day.files, forged])
    assert at(report) == ["forged.log:1:unknown-key"]


def test_a_made_up_line_of_a_made_up_chain(day, tmp_path):
    forged = tmp_path / "forged.log"
    forged.write_text(
        '{"user.name":"x","event.sequence":7,"labels.log_chain":"0123456789abcdef",'
        '"event.hash":"' + "ab" * 32 + '"}\n'
    )
    assert at(verify([*day.files, forged])) == ["forged.log:1:unauthenticated"]


def test_a_second_key_verifies_logs_written_under_an_older_one(day, tmp_path):
    old = tmp_path / "old.log"
    chain = LogChain(derive_key(b"o" * 32))
    old.write_text("".join(chain(None, "info", '{"a":1}') + "\n" for _ in range(3)))
    assert kinds(verify([*day.files, old])) == ["unknown-key"]
    assert verify([*day.files, old], (KEY, derive_key(b"o" * 32))).ok


def test_a_restart_after_a_crash_that_names_a_truncated_chain(day, tmp_path):
    """b's second chain says b's first reached sequence 10: cutting it shorter shows."""
    files = copy_day(day, tmp_path)
    crashed = next(p for p in files if p.name == "b-access.log-3")
    data = lines_of(crashed)  # sequences 11..15 of b's first chain
    assert [json.loads(line)["event.sequence"] for line in data] == [11, 12, 13, 14, 15]
    crashed.unlink()  # the end of the chain is gone...
    before = next(p for p in files if p.name == "b-access.log-2")
    data = lines_of(before)
    before.write_bytes(b"".join(data[:-2]))  # ...and two more lines before it
    report = verify([p for p in files if p != crashed])
    assert kinds(report) == ["truncated"]
    assert "sequences 9..10 missing" in report.problems[0].reason


def test_a_day_that_starts_mid_chain_is_fine(day, tmp_path):
    report = verify(day.files[1:])  # without a's oldest file
    assert report.ok
    assert any(n.kind == "begins" and "sequence 7" in n.reason for n in report.notes)


def test_restart_without_the_state_file_is_a_restart_not_tampering(day):
    report = verify(day.files)
    new_chain = [
        n for n in report.notes if n.kind == "restart" and "state file was lost" in n.reason
    ]
    assert new_chain and report.ok


def test_bad_lines_are_reported_in_runs_not_crashed_on(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    old = b'{"@timestamp":"2026-01-01T00:00:00.000Z","event.action":"access"}\n'
    junk = [b"not json\n", b"[1,2]\n", b"\xff\xfe\n", b"\n", old, old, old]
    files[0].write_bytes(b"".join([*junk, *data]))
    report = verify(files)
    assert at(report) == [
        f"{files[0].name}:1:not-json",
        f"{files[0].name}:4:not-json",
        f"{files[0].name}:5:unchained",
    ]
    assert "(3 lines from here)" in report.problems[0].reason
    assert "(3 lines from here)" in report.problems[2].reason


def test_malformed_chain_fields(day, tmp_path):
    files = copy_day(day, tmp_path)
    data = lines_of(files[0])
    data[1] = data[1].replace(b'"event.sequence":2', b'"event.sequence":"2"')
    data[3] = data[3][:-2] + b',"x":1}\n'  # the seal no longer last
    files[0].write_bytes(b"".join(data))
    assert at(verify(files)) == [
        f"{files[0].name}:2:malformed",
        f"{files[0].name}:3:deleted",
        f"{files[0].name}:4:malformed",
        f"{files[0].name}:5:deleted",
    ]


def test_cut_short_files(day, tmp_path):
    files = copy_day(day, tmp_path)
    files[0].write_bytes(files[0].read_bytes()[:-1])  # the last newline
    compressed = day.files[1].read_bytes()
    assert compressed[:2] == b"\x1f\x8b"
    files[1] = tmp_path / "cut.gz"
    files[1].write_bytes(compressed[: len(compressed) // 2])
    report = verify(files)
    assert kinds(report)[:2] == ["incomplete", "damaged"]


# ---------------------------------------------------------------------------------------
# Any single change is reported


class Contents(dict):
    """File name -> lines; a short repr for Hypothesis' reports."""

    def __repr__(self) -> str:
        return f"<{len(self)} files>"


@pytest.fixture(scope="module")
def contents(day: Day) -> dict[str, list[bytes]]:
    return Contents({str(p): read(p).splitlines(keepends=True) for p in day.files})


def check(contents: dict[str, list[bytes]]) -> Report:
    verifier = Verifier([KEY])
    for name, data in contents.items():
        verifier.add(name, io.BytesIO(b"".join(data)))
    return verifier.finish()


def chain_edges(contents: dict[str, list[bytes]]) -> set[tuple[str, int]]:
    """Each chain's first and last given record: what no file can tell missing or moved."""
    first: dict[str, tuple[int, str, int]] = {}
    last: dict[str, tuple[int, str, int]] = {}
    for name, data in contents.items():
        for i, line in enumerate(data):
            record = json.loads(line)
            chain, sequence = record["labels.log_chain"], record["event.sequence"]
            if chain not in first or sequence < first[chain][0]:
                first[chain] = (sequence, name, i)
            if chain not in last or sequence > last[chain][0]:
                last[chain] = (sequence, name, i)
    return {(n, i) for _, n, i in (*first.values(), *last.values())}


@st.composite
def edits(draw: st.DrawFn, contents: dict[str, list[bytes]]) -> tuple[str, dict]:
    names = sorted(contents)
    edges = chain_edges(contents)
    out = {name: list(data) for name, data in contents.items()}
    kind = draw(
        st.sampled_from(["replace", "insert", "delete", "line", "dup", "swap", "move", "file"])
    )
    name = draw(st.sampled_from(names))
    data = out[name]
    if kind in ("replace", "insert", "delete"):
        blob = bytearray(b"".join(data))
        at = draw(st.integers(0, len(blob) - (0 if kind == "insert" else 1)))
        if kind == "replace":
            blob[at] = draw(st.integers(0, 255).filter(lambda b: b != blob[at]))
        elif kind == "insert":
            blob.insert(at, draw(st.integers(0, 255)))
        else:
            del blob[at]
        out[name] = bytes(blob).splitlines(keepends=True)
    elif kind == "line":
        inner = [i for i in range(len(data)) if (name, i) not in edges]
        if not inner:
            return "none", contents
        del data[draw(st.sampled_from(inner))]
    elif kind == "dup":
        line = data[draw(st.integers(0, len(data) - 1))]
        target = out[draw(st.sampled_from(names))]
        target.insert(draw(st.integers(0, len(target))), line)
    elif kind == "swap":  # two records of one chain, in any files (the order across
        i = draw(st.integers(0, len(data) - 1))  # chains is not kept: see the docs)
        chain = json.loads(data[i])["labels.log_chain"]
        same = [
            (other, j)
            for other in names
            for j, line in enumerate(out[other])
            if json.loads(line)["labels.log_chain"] == chain and (other, j) != (name, i)
        ]
        other, j = draw(st.sampled_from(same))
        data[i], out[other][j] = out[other][j], data[i]
    elif kind == "move":  # a record elsewhere in its file (across files: see the docs)
        i = draw(st.integers(0, len(data) - 1))
        line = data.pop(i)
        position = draw(st.integers(0, len(data)).filter(lambda j: j != i))
        data.insert(position, line)
    else:  # a whole file that holds no chain's first or last record
        if any(n == name for n, _ in edges):
            return "none", contents
        del out[name]
    return kind, out


@fuzz(300)
@given(data=st.data())
def test_any_single_change_is_reported(contents, data):
    kind, edited = data.draw(edits(contents))
    if kind == "none" or edited == contents:
        return
    report = check(edited)
    assert not report.ok, f"{kind} not detected:\n{report.format()}"


def test_the_unedited_contents_pass(contents):
    assert check(contents).ok
