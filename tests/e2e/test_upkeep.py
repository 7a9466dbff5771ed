"""Nothing blocks the loop, lost state is noticed, readiness says what is wrong: against a
real `auditproxy run` (issue #13, items 3 and 4).

    files        the policy or the key turned into a FIFO, a policy over its size limit,
                 a large policy: read and parsed off the event loop, traffic flows
    state        the SQLite file removed, replaced, overwritten while running; Redis
                 restarted empty or flushed: noticed within seconds, counted, re-created
                 with today's claims
    readiness    /readyz names what is degraded (a failing reload, the state re-created)
                 and the recovery is logged; /healthz stays as it was
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from auditproxy.decide.identity import load_key
from auditproxy.notice.keys import NoticeKeys
from support import ProxyClient
from support.notice import DOCUMENT, NOTICE
from support.proxy import AuditProxyProcess
from support.redis import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def wait_until(predicate: Callable[[], object], what: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout}s for {what}")
        time.sleep(0.05)


def endpoint(proxy: AuditProxyProcess, path: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(proxy.metrics_url(path), timeout=5) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class Latency:
    """Requests to a logged site, one after another, while something happens: the
    slowest answer, and any that failed."""

    def __init__(self, proxy: AuditProxyProcess) -> None:
        self.proxy = proxy
        self.times: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = ProxyClient("127.0.0.1", self.proxy.port, timeout=10)
        n = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                assert client.get(f"http://news.example/latency/{n}").status == 200
            except Exception as e:
                self.failures.append(repr(e))
            self.times.append(time.monotonic() - started)
            n += 1
            self._stop.wait(0.02)

    def __enter__(self) -> Latency:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)


def visit(proxy: AuditProxyProcess, user: str, path: str = "/") -> bytes:
    client = ProxyClient("127.0.0.1", proxy.port, proxy_auth=(user, "pw"))
    response = client.get(f"http://www.facebook.com{path}", headers=DOCUMENT)
    assert response.status == 200
    return response.body


# ---------------------------------------------------------------------------------------
# Files


def test_a_policy_turned_into_a_fifo_freezes_nothing(start_proxy, e2e_policy, upstream):
    """Before: the whole proxy froze until a writer opened the FIFO."""
    proxy = start_proxy(policy=e2e_policy)
    original = e2e_policy.read_bytes()
    with Latency(proxy) as latency:
        time.sleep(0.5)
        e2e_policy.unlink()
        os.mkfifo(e2e_policy)
        wait_until(lambda: "is a FIFO, not a regular file" in proxy.stderr(), "the refusal")
        status, ready = endpoint(proxy, "/readyz")
        assert status == 200 and ready["status"] == "degraded" and ready["degraded"] == ["policy"]
        assert "is a FIFO" in ready["checks"]["policy"]["last_reload"]
        assert endpoint(proxy, "/healthz")[0] == 200  # liveness: as it was
        time.sleep(1)
        e2e_policy.unlink()
        e2e_policy.write_bytes(original)  # the same policy back: nothing to reload, but
        wait_until(lambda: "policy reload recovered after" in proxy.stderr(), "the recovery")
    assert latency.failures == [] and max(latency.times) < 2, max(latency.times)
    assert endpoint(proxy, "/readyz")[1]["status"] == "ready"
    assert proxy.metric("auditproxy_policy_last_reload_successful") == 1


def test_a_key_turned_into_a_fifo_on_sighup_freezes_nothing(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    key = proxy.confdir / "auditproxy-pseudonym.key"
    saved = key.read_bytes()
    with Latency(proxy) as latency:
        time.sleep(0.3)
        key.unlink()
        os.mkfifo(key, 0o600)
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: "reload failed" in proxy.stderr(), "the failed reload")
        assert "is a FIFO" in proxy.stderr()
        key.unlink()
        key.write_bytes(saved)
        key.chmod(0o600)
        proxy.signal(signal.SIGHUP)
        wait_until(lambda: "policy reload recovered after" in proxy.stderr(), "the recovery")
    assert latency.failures == [] and max(latency.times) < 2


def test_a_policy_over_the_size_limit_is_refused(start_proxy, e2e_policy, upstream):
    proxy = start_proxy("--set", "auditproxy_policy_max_bytes=100000", policy=e2e_policy)
    e2e_policy.write_bytes(e2e_policy.read_bytes() + b"# padding\n" * 20_000)
    wait_until(lambda: "over the limit of 100000 bytes" in proxy.stderr(), "the refusal")
    assert proxy.metric("auditproxy_policy_last_reload_successful") == 0
    assert ProxyClient("127.0.0.1", proxy.port).get("http://news.example/").status == 200


def test_a_large_policy_is_read_hashed_and_parsed_off_the_loop(start_proxy, e2e_policy, upstream):
    """A 40 MB policy file (mostly comments: cheap to parse, costly to read and hash):
    reloading it holds nobody up."""
    proxy = start_proxy(policy=e2e_policy)
    big = e2e_policy.read_bytes().replace(b"bad: [malware.test]", b"bad: [malware.test, z.test]")
    padding = (b"# " + b"padding " * 12 + b"\n") * 400_000
    with Latency(proxy) as latency:
        time.sleep(0.5)
        e2e_policy.write_bytes(big + padding)
        proxy.wait_for_metric("auditproxy_policy_reloads_total", 1, timeout=30, result="success")
        time.sleep(0.3)
    assert latency.failures == [] and max(latency.times) < 1, max(latency.times)
    assert ProxyClient("127.0.0.1", proxy.port).get("http://z.test/").status == 403


def test_an_access_log_turned_into_a_fifo_freezes_nothing(start_proxy, e2e_policy, upstream):
    """Opening a FIFO to write waits for a reader: the log is opened without blocking, the
    failure is reported, records go on to the file still open, and to a new file once the
    path is one again. Nothing waits, nothing is lost."""
    proxy = start_proxy(policy=e2e_policy)
    log, moved = proxy.access_log, proxy.access_log.with_suffix(".log.1")
    with Latency(proxy) as latency:
        time.sleep(0.5)
        log.rename(moved)
        os.mkfifo(log)
        wait_until(lambda: "cannot write access log" in proxy.stderr(), "the failure")
        time.sleep(1)
        log.unlink()
        wait_until(log.is_file, "a new log file")
        time.sleep(0.5)
    assert latency.failures == [] and max(latency.times) < 2
    time.sleep(0.5)
    records = [json.loads(line) for f in (moved, log) for line in f.read_text().splitlines()]
    paths = [r["url.path"] for r in records if r.get("url.path", "").startswith("/latency/")]
    assert len(paths) == len(set(paths)) == len(latency.times), "a record lost or doubled"


# ---------------------------------------------------------------------------------------
# The notice state


def rows(db: Path, proxy: AuditProxyProcess, person: str) -> int:
    keys = NoticeKeys(load_key(proxy.confdir / "auditproxy-pseudonym.key"))
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)) as c:
        query = "SELECT count(*) FROM notice_seen WHERE user = ?"
        return c.execute(query, (keys.user(person),)).fetchone()[0]


def lost(proxy: AuditProxyProcess, cause: str) -> float:
    return proxy.metric("auditproxy_state_lost_total", cause=cause)


def test_a_state_file_removed_replaced_or_overwritten_is_recreated(
    start_proxy, e2e_policy, upstream
):
    """Before: the proxy went on writing to the deleted file, and the claims vanished at
    the next restart. Now each loss is noticed within seconds, counted, logged, shown by
    /readyz, and the file re-created with today's claims."""
    proxy = start_proxy("--set", "proxyauth=any", policy=e2e_policy)
    db = proxy.workdir / "state.sqlite3"
    assert NOTICE in visit(proxy, "alice", "/a")

    db.unlink()
    wait_until(lambda: lost(proxy, "removed") == 1, "the removal to be noticed", 5)
    wait_until(db.exists, "a new state file", 5)
    assert "notice state re-created after it was removed" in proxy.stderr()
    assert NOTICE in visit(proxy, "bob", "/b")

    other = proxy.workdir / "other.sqlite3"
    sqlite3.connect(other).close()
    os.replace(other, db)  # an old backup restored over it, say
    wait_until(lambda: lost(proxy, "replaced") == 1, "the replacement to be noticed", 5)

    db.write_bytes(b"garbage " * 1000)  # overwritten where it is: the same inode
    wait_until(lambda: lost(proxy, "corrupt") == 1, "the damage to be noticed", 5)
    wait_until(lambda: list(db.parent.glob("state.sqlite3.lost-*")), "set aside", 5)
    wait_until(lambda: "re-created after it was corrupt" in proxy.stderr(), "re-created", 5)
    status, ready = endpoint(proxy, "/readyz")
    assert status == 200 and ready["checks"]["state"]["losses"] == 3
    assert ready["checks"]["state"]["backend"] == "sqlite"
    assert NOTICE not in visit(proxy, "alice", "/a2") and NOTICE not in visit(proxy, "bob", "/b2")
    proxy.stop()
    assert rows(db, proxy, "alice") == 1 and rows(db, proxy, "bob") == 1


def test_redis_restarted_empty_or_flushed_gets_todays_claims_back(
    start_proxy, e2e_policy, upstream, tmp_path
):
    pytest.importorskip("redis")
    server = RedisServer(tmp_path).start()
    try:
        state = server.url(timeout=0.1, retry_after=1)
        proxy = start_proxy("--set", "proxyauth=any", "--state", state, policy=e2e_policy)
        proxy.wait_for_metric("auditproxy_state_backend", 1, backend="redis")
        assert NOTICE in visit(proxy, "alice", "/a")
        client = server.client()

        def keys() -> list[bytes]:
            return [k for k in client.keys("auditproxy:notice:*") if b"sentinel" not in k]

        assert len(keys()) == 1

        client.close()
        server.stop()
        server.start()  # same port, empty: no persistence
        client = server.client()
        wait_until(lambda: lost(proxy, "flushed") == 1, "the empty Redis to be noticed", 15)
        wait_until(lambda: len(keys()) == 1, "alice's claim written back", 5)

        client.flushall()
        wait_until(lambda: lost(proxy, "flushed") == 2, "the flush to be noticed", 5)
        wait_until(lambda: len(keys()) == 1, "alice's claim written back again", 5)
        assert NOTICE not in visit(proxy, "alice", "/a2")
        assert "re-created after it was flushed" in proxy.stderr()
    finally:
        server.stop()
