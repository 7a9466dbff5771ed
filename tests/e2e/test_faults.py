"""Faults survived, against a real `auditproxy run`: traffic keeps flowing, the fault is
logged (stderr) and counted (metrics), and the proxy recovers by itself when it clears.

    notice state   locked by another process, corrupt, read-only (chattr +i)
    access log     disk full (a real full tmpfs when `mount` is allowed, and /dev/full),
                   the file removed
    policy file    deleted, truncated, replaced with garbage, then fixed
    origin         resetting connections, hanging, a client giving up on it
    clients        sending their headers one byte at a time

What tests/e2e/test_core.py already proves (an invalid policy edit, logrotate, an origin
reset's record) is not repeated. The notice state tries its file again 5 s after a fault
(`state.Resilient`), so each state test waits that long once or twice.

Some faults need root (chattr, mount): those tests are skipped, with the reason, where it
is not available.
"""

from __future__ import annotations

import collections
import contextlib
import json
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from auditproxy.decide.identity import load_key
from auditproxy.notice.keys import NoticeKeys
from support import ProxyClient, Reply, Response
from support.notice import DOCUMENT, NOTICE
from support.proxy import AuditProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

STATE_RETRY = 5.0  # state.Resilient's retry_after: how long the memory fallback lasts


# ---------------------------------------------------------------------------------------
# Helpers


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.05)


def health(proxy: AuditProxyProcess) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(proxy.metrics_url("/healthz"), timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:  # 503 carries the same JSON
        return json.load(e)


def visit(proxy: AuditProxyProcess, user: str, path: str = "/") -> Response:
    """A person opening a monitored page (proxy authentication: `--set proxyauth=any`)."""
    client = ProxyClient("127.0.0.1", proxy.port, proxy_auth=(user, "pw"))
    return client.get(f"http://www.facebook.com{path}", headers=DOCUMENT)


def read_log(path: Path) -> tuple[list[dict], list[str]]:
    """(records, lines that are not JSON) of an access log, without failing on either."""
    records, broken = [], []
    if not path.exists():
        return records, broken
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            broken.append(line)
    return records, broken


def paths(records: list[dict]) -> collections.Counter:
    return collections.Counter(r["url.path"] for r in records if "url.path" in r)


def state_rows(db: Path, person: str | None = None, proxy: AuditProxyProcess | None = None) -> int:
    """Rows in the notice state (of one person, given the proxy whose key hashes them),
    read without taking any write lock."""
    query, args = "SELECT count(*) FROM notice_seen", ()
    if person is not None:
        assert proxy is not None
        keys = NoticeKeys(load_key(proxy.confdir / "auditproxy-pseudonym.key"))
        query, args = query + " WHERE user = ?", (keys.user(person),)
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
        return c.execute(query, args).fetchone()[0]


def errors(proxy: AuditProxyProcess, stage: str) -> float:
    return proxy.metric("auditproxy_errors_total", stage=stage)


class Traffic:
    """Requests to a logged site in the background, each path unique, while a fault is on.

    `failures` lists every request that did not get an answer: the proof that traffic
    kept flowing is that it stays empty.
    """

    def __init__(self, proxy: AuditProxyProcess, host: str = "news.example") -> None:
        self.proxy, self.host = proxy, host
        self.sent: list[str] = []
        self.statuses: collections.Counter = collections.Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def _run(self) -> None:
        with ProxyClient("127.0.0.1", self.proxy.port, timeout=10).session() as session:
            n = 0
            while not self._stop.is_set():
                path = f"/traffic/{n}"
                n += 1
                try:
                    response = session.get(f"http://{self.host}{path}")
                except Exception as e:
                    self.failures.append(f"{path}: {e!r}")
                else:
                    self.statuses[response.status] += 1
                self.sent.append(path)
                time.sleep(0.01)

    def wait_for(self, count: int, timeout: float = 10) -> None:
        """Wait until `count` more requests have been answered."""
        target = len(self.sent) + count
        wait_until(lambda: len(self.sent) >= target, f"{count} more requests", timeout)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def can_chattr(folder: Path) -> str | None:
    """Why `chattr +i` cannot make a file read-only for root here, or None if it can."""
    if shutil.which("chattr") is None:
        return "chattr not installed (Debian package e2fsprogs)"
    probe = folder / "chattr-probe"
    probe.write_text("x")
    try:
        result = subprocess.run(["chattr", "+i", str(probe)], capture_output=True, timeout=10)
        if result.returncode != 0:
            return f"chattr +i not permitted here: {result.stderr.decode().strip()}"
        try:
            with probe.open("a") as f:
                f.write("y")
        except OSError:
            return None
        return "chattr +i does not stop writes here"
    finally:
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True, timeout=10)
        probe.unlink()


def chattr(flag: str, *files: Path) -> None:
    existing = [str(f) for f in files if f.exists()]
    if existing:
        subprocess.run(["chattr", flag, *existing], check=True, timeout=10)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[None]:
    """A small tmpfs at `folder` (needs CAP_SYS_ADMIN); skips the test where not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("mount not installed (Debian package mount)")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        timeout=10,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=10)


def fill(folder: Path) -> Path:
    """Fill the file system holding `folder` until it refuses; returns the filler file."""
    filler = folder / "filler"
    with contextlib.suppress(OSError), filler.open("wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    with contextlib.suppress(OSError), filler.open("ab", buffering=0) as f:
        while True:  # the last partial page
            f.write(b"\0")
    return filler


@pytest.fixture
def stopped_proxy(
    start_proxy: Callable[..., AuditProxyProcess], e2e_policy: Path
) -> Callable[..., AuditProxyProcess]:
    """An `auditproxy run` that is not started yet, for faults that exist before start."""
    return lambda *args: start_proxy(*args, policy=e2e_policy, start=False)


# ---------------------------------------------------------------------------------------
# The notice state


def check_memory_fallback(proxy: AuditProxyProcess, message: str) -> None:
    """With the store unusable: the notice still shows once (from memory), the page is
    served, the fault is counted and logged."""
    first = visit(proxy, "alice", "/first")
    assert first.status == 200 and NOTICE in first.body
    again = visit(proxy, "alice", "/again")
    assert again.status == 200 and NOTICE not in again.body  # memory remembers the day
    wait_until(lambda: errors(proxy, "state") >= 1, "errors_total{stage=state}")
    assert message in proxy.stderr()
    assert "using memory until it works again" in proxy.stderr()
    assert len(proxy.wait_for_records(1, lambda r: r["event.action"] == "notice-shown")) == 1


def check_back_on_the_store(proxy: AuditProxyProcess, db: Path) -> None:
    """After the fault cleared (and the retry delay): back on the file by itself, even
    with no traffic; new first visits land in it, and a person who saw the notice during
    the fault does not see it again. The proxy holds the file exclusively while it runs,
    so the file is read once it has stopped (this ends the test's proxy)."""
    wait_until(
        lambda: proxy.metric("auditproxy_state_backend", backend="sqlite") == 1,
        "the state to be back on its file",
        timeout=STATE_RETRY + 5,
    )
    # The backend switches first, then the claims are handed back and the line is logged.
    wait_until(
        lambda: "notice state is back on its store" in proxy.stderr(),
        "the recovery to be logged",
        timeout=10,
    )
    bob = visit(proxy, "bob", "/bob")
    assert bob.status == 200 and NOTICE in bob.body
    assert NOTICE not in visit(proxy, "alice", "/later").body
    proxy.stop()
    assert state_rows(db, "bob", proxy) == 1
    assert state_rows(db, "alice", proxy) == 1  # handed back from memory


def test_state_store_locked_then_fixed(stopped_proxy):
    """Locked by another process when the proxy opens it (a second instance pointed at the
    same file by mistake, a backup tool, an sqlite3 shell): memory takes over; when the
    lock goes, the proxy moves back to the file by itself."""
    from auditproxy.notice.store import SQLiteState

    proxy = stopped_proxy("--set", "proxyauth=any")
    db = proxy.workdir / "state.sqlite3"
    SQLiteState(db).close()
    locker = sqlite3.connect(db, timeout=2, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        proxy.start()
        check_memory_fallback(proxy, "notice state open failed (OperationalError: database is")
        assert proxy.metric("auditproxy_state_backend", backend="memory") == 1
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    check_back_on_the_store(proxy, db)


def test_state_store_corrupt_then_fixed(stopped_proxy):
    """A bad restore or a disk error left garbage: the proxy starts anyway, on memory,
    counts and logs it; the operator removes the file and it moves to a new one."""
    proxy = stopped_proxy("--set", "proxyauth=any")
    db = proxy.workdir / "state.sqlite3"
    db.write_bytes(b"this is not a database\0" * 512)
    proxy.start()
    check_memory_fallback(proxy, "notice state open failed (DatabaseError")
    db.unlink()  # the operator removes the damaged file; nothing else is needed
    check_back_on_the_store(proxy, db)


def test_metrics_port_in_use_at_start_still_serves(stopped_proxy):
    """The README: "Metrics port in use. Traffic goes on; the error is logged and counted,
    and the proxy retries the port every second"."""
    proxy = stopped_proxy()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", proxy.metrics_port))
        squatter.listen()
        proxy.start(health=False)  # fails with its stderr if it exits instead of listening
        assert ProxyClient("127.0.0.1", proxy.port).get("http://news.example/").status == 200


def test_state_store_read_only(stopped_proxy, tmp_path):
    if why := can_chattr(tmp_path):
        pytest.skip(why)
    from auditproxy.notice.store import SQLiteState

    proxy = stopped_proxy("--set", "proxyauth=any")
    db = proxy.workdir / "state.sqlite3"
    SQLiteState(db).close()
    chattr("+i", db)  # immutable: even root cannot write it
    try:
        proxy.start()
        check_memory_fallback(proxy, "notice state open failed")
    finally:
        chattr("-i", db)
    check_back_on_the_store(proxy, db)


@pytest.mark.clock
def test_state_files_frozen_while_running(start_proxy, e2e_policy, upstream, tmp_path):
    if why := can_chattr(tmp_path):
        pytest.skip(why)
    proxy = start_proxy("--set", "proxyauth=any", policy=e2e_policy)
    db = proxy.workdir / "state.sqlite3"
    files = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    assert NOTICE in visit(proxy, "alice").body
    chattr("+i", *files)  # an operator "freezing" the state folder
    try:
        try:
            page: Response | None = visit(proxy, "bob")
        except OSError:
            page = None
        assert proxy.process is not None
        assert proxy.process.poll() is None, f"the proxy died: status {proxy.process.returncode}"
        assert page is not None and page.status == 200
    finally:
        chattr("-i", *files)


# ---------------------------------------------------------------------------------------
# The access log


def check_backlog_flushed(proxy: AuditProxyProcess, log: Path, sent: list[str]) -> None:
    """Once the disk takes writes again: every request has exactly one record, the
    backlog is empty and every record was counted as written."""
    wait_until(lambda: health(proxy)["access_log_ok"], "the access log to recover")
    wait_until(lambda: health(proxy)["access_log_backlog"] == 0, "the backlog to drain")
    records, _ = read_log(log)
    found = paths(records)
    assert {p: found[p] for p in sent if found[p] != 1} == {}, "records lost or doubled"
    order = [r["url.path"] for r in records if r.get("url.path") in set(sent)]
    assert order == sent, "the backlog was not written in order"
    assert proxy.metric("auditproxy_log_records_total", outcome="written") == len(records)
    assert proxy.metric("auditproxy_log_records_total", outcome="dropped") == 0
    assert "is writable again after" in proxy.stderr()


def send(proxy: AuditProxyProcess, prefix: str, count: int) -> list[str]:
    """`count` requests, one after the other on one connection; all must be answered."""
    sent = []
    with ProxyClient("127.0.0.1", proxy.port).session() as session:
        for n in range(count):
            path = f"/{prefix}/{n}"
            assert session.get(f"http://news.example{path}").status == 200
            sent.append(path)
    return sent


def test_access_log_disk_full(start_proxy, e2e_policy, upstream, tmp_path):
    """A real full disk: the log on a 256 KiB tmpfs that another file fills up."""
    logs = tmp_path / "logs"
    with tmpfs(logs, "256k"):
        log = logs / "access.log"
        proxy = start_proxy("--access-log", str(log), policy=e2e_policy)
        proxy.access_log = log
        sent = send(proxy, "before", 3)
        filler = fill(logs)
        sent += send(proxy, "during", 20)  # traffic flows on a full disk
        status = health(proxy)
        assert status["access_log_ok"] is False and status["access_log_backlog"] > 0
        written = proxy.metric("auditproxy_log_records_total", outcome="written")
        assert written + status["access_log_backlog"] == len(sent)  # held, not lost
        assert "No space left on device" in proxy.stderr()
        assert "holding up to 10000 records in memory" in proxy.stderr()
        filler.unlink()
        check_backlog_flushed(proxy, log, sent)


def test_access_log_on_dev_full(start_proxy, e2e_policy, upstream):
    """The same without mount: the log's path becomes /dev/full (every write ENOSPC),
    then a plain file again."""
    proxy = start_proxy(policy=e2e_policy)
    log, old = proxy.access_log, proxy.access_log.with_suffix(".log.1")
    sent = send(proxy, "before", 3)
    log.rename(old)
    log.symlink_to("/dev/full")
    reopened = "access log reopened: " + str(log)
    wait_until(lambda: reopened in proxy.stderr(), "the sink to follow the path")
    sent += send(proxy, "during", 20)
    status = health(proxy)
    assert status["access_log_ok"] is False and status["access_log_backlog"] == 20
    assert "No space left on device" in proxy.stderr()
    log.unlink()  # space again: the sink makes a new file and writes the backlog
    wait_until(lambda: health(proxy)["access_log_backlog"] == 0, "the backlog to drain")
    before, _ = read_log(old)
    assert [r["url.path"] for r in before] == sent[:3]
    assert proxy.metric("auditproxy_log_records_total", outcome="written") == len(sent)
    records, broken = read_log(log)
    assert broken == [] and [r["url.path"] for r in records] == sent[3:]


def test_access_log_write_failure_is_counted(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    log = proxy.access_log
    send(proxy, "before", 1)
    log.unlink()
    log.symlink_to("/dev/full")
    wait_until(lambda: "access log reopened: " + str(log) in proxy.stderr(), "the reopen")
    send(proxy, "during", 3)
    # 3, or 4 when the record sent before the removal is written again (see LogSink).
    wait_until(lambda: health(proxy)["access_log_backlog"] >= 3, "the backlog")
    assert errors(proxy, "log") >= 1


def test_access_log_disk_full_leaves_no_broken_line(start_proxy, e2e_policy, upstream, tmp_path):
    logs = tmp_path / "logs"
    with tmpfs(logs, "256k"):
        log = logs / "access.log"
        proxy = start_proxy("--access-log", str(log), policy=e2e_policy)
        proxy.access_log = log
        send(proxy, "before", 3)
        filler = fill(logs)
        for attempt in range(5):  # a short write needs room left in the last block
            for n in range(40):
                send(proxy, f"during-{attempt}-{n}", 1)
                if health(proxy)["access_log_backlog"]:
                    break
            if not log.read_bytes().endswith(b"\n"):
                break  # a line was cut where the space ran out
            with filler.open("r+b") as f:  # the lines ended on a block: give one block
                f.truncate(max(0, filler.stat().st_size - 4096))
        filler.unlink()
        wait_until(lambda: health(proxy)["access_log_backlog"] == 0, "the backlog to drain")
        _, broken = read_log(log)
        assert broken == []


def test_access_log_removed_while_running(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    with Traffic(proxy) as traffic:
        traffic.wait_for(5)
        proxy.access_log.unlink()
        wait_until(proxy.access_log.exists, "the sink to make a new file")
        traffic.wait_for(10)
    assert traffic.failures == [] and set(traffic.statuses) == {200}
    assert "access log reopened: " + str(proxy.access_log) in proxy.stderr()
    records, broken = read_log(proxy.access_log)
    assert broken == [] and len(records) >= 10  # the log goes on in the new file


def test_access_log_removed_loses_nothing(stopped_proxy):
    proxy = stopped_proxy()
    interval = proxy.command.index("auditproxy_reload_interval=0.2")
    proxy.command[interval] = "auditproxy_reload_interval=1"  # the default: a tick a second
    proxy.start()
    log, kept, after = proxy.access_log, [], []
    send(proxy, "before", 2)
    for attempt in range(3):  # each round loses unless a tick falls in a ~10 ms window
        log.unlink()
        after += send(proxy, f"after-{attempt}", 5)
        wait_until(log.exists, "the sink to make a new file", timeout=5)
        kept.append(log.with_suffix(f".log.{attempt}"))
        log.rename(kept[-1])  # rotate it away: what it holds is kept
        wait_until(log.exists, "the sink to follow the rotation", timeout=5)
    time.sleep(0.3)
    found = sum((paths(read_log(f)[0]) for f in [*kept, log]), collections.Counter())
    assert [p for p in after if found[p] != 1] == []


# ---------------------------------------------------------------------------------------
# The policy file


def test_policy_deleted_truncated_garbage_then_fixed(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    original = e2e_policy.read_text()
    client = ProxyClient("127.0.0.1", proxy.port)
    steps = [
        ("deleted", lambda: e2e_policy.unlink(), "is missing"),
        ("empty", lambda: e2e_policy.write_bytes(b""), "policy is empty"),
        ("truncated", lambda: e2e_policy.write_text(original[: len(original) // 2]), ":27:"),
        ("garbage", lambda: e2e_policy.write_bytes(bytes(range(256)) * 8), "not valid UTF-8"),
    ]
    with Traffic(proxy) as traffic:
        for failures, (what, damage, message) in enumerate(steps, start=1):
            damage()
            proxy.wait_for_metric("auditproxy_policy_reloads_total", failures, result="failure")
            assert proxy.metric("auditproxy_policy_last_reload_successful") == 0, what
            # A write truncates the file first: the reloader may read it empty in between (one
            # more failure, "policy is empty") before the damaged content's own message.
            wait_until(
                lambda m=message: m in proxy.stderr(), f"the {what} policy's message", timeout=5
            )
            # The last good policy stays in force: blocked is blocked, monitored monitored.
            assert client.get("http://malware.test/").status == 403, what
            traffic.wait_for(3)
        e2e_policy.write_text(
            original.replace("bad: [malware.test]", "bad: [malware.test, z.test]")
        )
        proxy.wait_for_metric("auditproxy_policy_reloads_total", 1, result="success")
        assert proxy.metric("auditproxy_policy_last_reload_successful") == 1
        assert client.get("http://z.test/").status == 403  # the fixed policy applies
        traffic.wait_for(3)
    assert traffic.failures == [] and set(traffic.statuses) == {200}
    assert proxy.stderr().count("policy reload failed; keeping Test Policy") >= len(steps)
    assert proxy.metric("auditproxy_errors_total", stage="reload") == 0  # handled, not a crash


# ---------------------------------------------------------------------------------------
# The origin


def test_origin_resets_and_hangs(start_proxy, e2e_policy, upstream):
    upstream.route("flaky.example", "/", Reply.reset(), prefix=True)
    upstream.route("slow.example", "/", Reply.hang(3), prefix=True)
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, timeout=20)
    hung: list[Response] = []
    waiting = threading.Thread(target=lambda: hung.append(client.get("http://slow.example/h")))
    with Traffic(proxy) as traffic:
        waiting.start()
        assert client.get("http://flaky.example/r1").status == 502
        assert client.get("http://flaky.example/r2").status == 502
        traffic.wait_for(20)  # others are served while one origin hangs
        waiting.join(15)
    assert hung and hung[0].status == 502
    assert traffic.failures == [] and set(traffic.statuses) == {200}
    records = proxy.wait_for_records(
        3, lambda r: r["url.domain"].endswith(("flaky.example", "slow.example"))
    )
    assert len(records) == 3  # one each
    for record in records:
        assert record["event.outcome"] == "failure" and record["error.message"]
        assert "http.response.status_code" not in record
    labels = dict(category="other", site="other", action="log", status_class="none")
    assert proxy.metric("auditproxy_requests_total", **labels) == 3
    # The fault clears: the same origin answers again.
    upstream.route("flaky.example", "/", Reply.html("<p>back</p>"), prefix=True)
    assert client.get("http://flaky.example/r3").status == 200


def test_client_giving_up_on_a_hanging_origin_gets_one_record(start_proxy, e2e_policy, upstream):
    upstream.route("stuck.example", "/", Reply.hang(20), prefix=True)
    proxy = start_proxy(policy=e2e_policy)
    impatient = ProxyClient("127.0.0.1", proxy.port, timeout=1)
    with pytest.raises(TimeoutError):
        impatient.get("http://stuck.example/wait")
    (record,) = proxy.wait_for_records(1, lambda r: r["url.domain"] == "stuck.example")
    assert record["event.outcome"] == "failure" and record["error.message"]
    time.sleep(0.5)
    assert len([r for r in proxy.records() if r["url.domain"] == "stuck.example"]) == 1
    assert ProxyClient("127.0.0.1", proxy.port).get("http://news.example/").status == 200


# ---------------------------------------------------------------------------------------
# Clients


def test_clients_sending_headers_a_byte_at_a_time(start_proxy, page_policy, upstream):
    """Ten slow clients (one an outsider, refused with the page) hold connections open for
    seconds, within the head timeout; everyone else is served meanwhile, and each slow
    request is answered and logged once."""
    proxy = start_proxy(policy=page_policy)
    results: list = []

    def slow(n: int, source: str | None) -> None:
        client = ProxyClient("127.0.0.1", proxy.port, source_address=source, timeout=15)
        results.append(
            (n, client.slow_request(f"http://news.example/slow/{n}", delay=0.05, max_duration=3))
        )

    threads = [
        threading.Thread(target=slow, args=(n, "127.0.0.2" if n == 0 else None)) for n in range(10)
    ]
    with Traffic(proxy) as traffic:
        for thread in threads:
            thread.start()
        traffic.wait_for(30, timeout=15)
        for thread in threads:
            thread.join(20)
    assert traffic.failures == [] and set(traffic.statuses) == {200}
    assert len(results) == 10
    for n, result in results:
        assert result.error is None and result.bytes_sent == result.bytes_total
        assert result.response.status == (403 if n == 0 else 200)
    found = paths(proxy.wait_for_records(10, lambda r: "/slow/" in r.get("url.path", "")))
    assert found == {f"/slow/{n}": 1 for n in range(10)}
    assert sum(errors(proxy, s) for s in ("classify", "enforce", "log", "notice")) == 0
