"""The access log's hash chain through the real `auditproxy run` and `auditproxy verify-log`.

One day of two instances sharing one key: traffic, a logrotate-style rename with SIGHUP in
the middle, a clean restart (rotated while stopped), logrotate's compression; then
`verify-log` over every file (plain and .gz, in any order) passes, and copies with one
line edited, removed, duplicated or swapped, or a file missing, each fail at the right
FILE:LINE. `auditproxy_log_sequence` on /metrics is the last sequence written.
"""

from __future__ import annotations

import gzip
import json
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import ProxyClient
from support.paths import FIXTURES
from support.proxy import AuditProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.05)


def read(path: Path) -> list[dict]:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    # Only whole lines: the proxy may be appending one while it is read (one write(2), but
    # a reader of a regular file can see part of it). `auditproxy verify-log` sees the rest.
    return [json.loads(line) for line in data.split(b"\n")[:-1] if line]


@dataclass
class Instance:
    """One `auditproxy run` and its rotated files, oldest first."""

    name: str
    proxy: AuditProxyProcess
    rotated: list[Path]
    sent: int = 0

    def send(self, n: int) -> None:
        client = ProxyClient("127.0.0.1", self.proxy.port)
        for _ in range(n):
            self.sent += 1
            assert client.get(f"http://{self.name}-{self.sent}.example/").status == 200
        wait_until(lambda: self.written() >= self.sent, f"{self.sent} records of {self.name}")

    def written(self) -> int:
        return sum(1 for f in self.files() for r in read(f) if r["event.action"] == "access")

    def rotate(self, *, sighup: bool) -> None:
        """logrotate: rename the file; `sighup`: `systemctl reload` reopens at once."""
        log = self.proxy.access_log
        target = log.with_name(f"access.log-{len(self.rotated) + 1}")
        log.rename(target)
        self.rotated.append(target)
        if sighup:
            self.proxy.signal(signal.SIGHUP)
            wait_until(log.exists, "the new access log after SIGHUP", timeout=5)

    def compress_old(self) -> None:
        """logrotate's compress + delaycompress: every rotated file but the newest."""
        for i, path in enumerate(self.rotated[:-1]):
            if path.suffix != ".gz":
                packed = path.with_name(path.name + ".gz")
                packed.write_bytes(gzip.compress(path.read_bytes()))
                path.unlink()
                self.rotated[i] = packed

    def files(self) -> list[Path]:
        log = self.proxy.access_log
        return [*self.rotated, *([log] if log.exists() else [])]

    def last(self) -> dict:
        return read(self.files()[-1])[-1]


def verify_log(key: Path, files: list[Path]) -> tuple[int, dict, str]:
    """The real command: (exit status, its --json report, its human report)."""
    command = [sys.executable, "-m", "auditproxy.cli", "verify-log", "--key", str(key)]
    names = [str(f) for f in files]
    human = subprocess.run([*command, *names], capture_output=True, text=True, timeout=60)
    as_json = subprocess.run(
        [*command, "--json", *names], capture_output=True, text=True, timeout=60
    )
    assert human.returncode == as_json.returncode, human.stderr + as_json.stderr
    return human.returncode, json.loads(as_json.stdout), human.stdout


@pytest.fixture
def day(start_proxy, e2e_policy, upstream, tmp_path) -> tuple[Path, list[Instance]]:
    key = tmp_path / "pseudonym.key"  # one key for every instance, as auditproxy@.service
    key.write_text(secrets.token_hex(32) + "\n")
    key.chmod(0o600)
    instances = [
        Instance(
            name,
            start_proxy("--pseudonym-key", str(key), policy=e2e_policy, name=name),
            [],
        )
        for name in ("a", "b")
    ]
    a, b = instances
    a.send(4)
    b.send(3)
    a.rotate(sighup=True)  # in the middle of the traffic
    b.rotate(sighup=True)
    a.send(4)
    b.send(3)
    for instance in instances:  # the anchor: the gauge is the last sequence written
        last = instance.last()
        proxy = instance.proxy
        assert proxy.metric("auditproxy_log_sequence") == last["event.sequence"]
        chain = last["labels.log_chain"]
        assert proxy.metric("auditproxy_log_chain_info", chain=chain) == 1
    a.proxy.stop()  # a clean stop (SIGTERM), rotated while stopped, then a new process
    a.rotate(sighup=False)
    a.proxy.start()
    a.send(4)
    a.rotate(sighup=False)  # noticed within the reload interval, no SIGHUP
    wait_until(a.proxy.access_log.exists, "the new access log after a rename", timeout=5)
    a.send(2)
    b.rotate(sighup=True)
    b.send(2)
    assert a.proxy.metric("auditproxy_log_sequence") == a.last()["event.sequence"] == 14
    assert b.proxy.metric("auditproxy_log_sequence") == b.last()["event.sequence"] == 8
    for instance in instances:
        instance.proxy.stop()
        instance.compress_old()
    return key, instances


def test_a_day_of_two_instances_verifies_and_every_change_fails_at_its_line(day, tmp_path):
    key, (a, b) = day
    records_a = [r for f in a.files() for r in read(f)]
    assert [r["event.sequence"] for r in records_a] == list(range(1, 15))
    assert len({r["labels.log_chain"] for r in records_a}) == 1  # across SIGHUP and restart
    records_b = [r for f in b.files() for r in read(f)]
    assert [r["event.sequence"] for r in records_b] == list(range(1, 9))
    assert {r["labels.log_chain"] for r in records_b}.isdisjoint(
        {r["labels.log_chain"] for r in records_a}
    )
    files = a.files() + b.files()
    assert sum(f.suffix == ".gz" for f in files) == 3
    ecs = json.loads((FIXTURES / "ecs" / "ecs_flat.json").read_text())["fields"]
    for record in records_a + records_b:  # what the real proxy wrote: ECS names or labels
        assert {n for n in record if not n.startswith("labels.")} <= set(ecs), record

    status, report, human = verify_log(key, list(reversed(files)))
    assert status == 0, human
    assert report["ok"] and report["records"] == 22 and len(report["chains"]) == 2
    assert human.rstrip().endswith("verify-log: OK: 22 records in 2 chain(s), 7 file(s)")

    # Tampered copies, decompressed: a's files are access.log-1.gz (1-4), access.log-2.gz
    # (5-8), access.log-3 (9-12, after the restart), access.log (13-14).
    copies = tmp_path / "copies"
    copies.mkdir()

    def copy_all() -> list[Path]:
        out = []
        for instance in (a, b):
            for f in instance.files():
                target = copies / f"{instance.name}-{f.name.removesuffix('.gz')}"
                data = f.read_bytes()
                target.write_bytes(gzip.decompress(data) if f.suffix == ".gz" else data)
                out.append(target)
        return out

    def tamper(change: Callable[[list[bytes]], list[bytes]]) -> list[Path]:
        out = copy_all()
        victim = copies / "a-access.log-3"
        victim.write_bytes(b"".join(change(victim.read_bytes().splitlines(keepends=True))))
        return out

    def edited(lines: list[bytes]) -> list[bytes]:
        lines[2] = lines[2].replace(b'"url.domain":"a-', b'"url.domain":"x-')
        return lines

    def swapped(lines: list[bytes]) -> list[bytes]:
        lines[1], lines[2] = lines[2], lines[1]
        return lines

    cases = {
        "edited": (edited, "a-access.log-3:3: edited: event.hash does not match the line"),
        "removed": (
            lambda lines: lines[:2] + lines[3:],
            "a-access.log-3:3: deleted: sequence 11 (1 record) missing",
        ),
        "duplicated": (
            lambda lines: [*lines[:2], lines[1], *lines[2:]],
            "a-access.log-3:3: duplicate: a copy of line 2",
        ),
        "swapped": (swapped, "a-access.log-3:3: out-of-order: sequence 10 after sequence 11"),
    }
    for name, (change, expected) in cases.items():
        status, report, human = verify_log(key, tamper(change))
        assert status == 1, f"{name}: {human}"
        assert [p["kind"] for p in report["problems"]] != [], name
        first = report["problems"][0]
        assert f"{Path(first['file']).name}:{first['line']}: {first['kind']}: " in expected
        assert expected in human, f"{name}: {human}"
        assert len(report["problems"]) == 1, f"{name}: {human}"

    files = copy_all()
    files.remove(copies / "a-access.log-2")  # a whole rotated file missing
    status, report, human = verify_log(key, files)
    assert status == 1
    (problem,) = report["problems"]
    assert (Path(problem["file"]).name, problem["line"], problem["kind"]) == (
        "a-access.log-3",
        1,
        "missing-file",
    )
    assert "sequences 5..8 (4 records) missing between the end of" in problem["reason"]
