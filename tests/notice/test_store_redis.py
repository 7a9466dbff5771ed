"""The shared notice state on a real `redis-server` (Debian package `redis-server`).

Each test that needs a server starts its own on a free loopback port, without persistence,
and stops it. Faults are real: SIGSTOP makes Redis hang (a slow server), stopping it makes
it unreachable, starting it again on the same port is a restart. URL parsing and the day's
end need no server.

"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from mitmproxy import exceptions

from auditproxy.cli import build_parser, mitmproxy_arguments
from auditproxy.notice.resilient import Resilient
from auditproxy.notice.store_redis import (
    EXPIRY_GRACE,
    RedisSettings,
    RedisState,
    end_of_day,
    is_state_url,
    notice_key,
    parse_state_url,
)
from support.clock import ManualClock
from support.harness import harness_for
from support.redis import RedisServer

TORONTO = ZoneInfo("America/Toronto")
DAY = date(2026, 11, 22)  # for what needs no server
# Redis expires a claim at the end of its day by the server's own, real clock: a day far
# ahead keeps claims alive whatever the hour (or the shifted test clock, support.clock).
TODAY = date(2099, 11, 23)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    pytest.importorskip("redis", reason="pip install 'auditproxy[redis]'")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


def toronto_end(day: date) -> float:
    return end_of_day(day, TORONTO)


def store_for(server: RedisServer, **options: float) -> RedisState:
    return RedisState(parse_state_url(server.url(**options)), toronto_end)


class Faults(list):
    def __call__(self, what: str, error: Exception) -> None:
        self.append((what, type(error).__name__, str(error)))


# --------------------------------------------------------------------------- URL


def test_state_urls_are_told_from_files() -> None:
    assert is_state_url("redis://cache:6379/0")
    assert is_state_url("REDISS://cache/1")
    assert not is_state_url("/var/lib/auditproxy/notices.sqlite3")
    assert not is_state_url("redis.sqlite3")


def test_parse_state_url_defaults_and_options() -> None:
    assert parse_state_url("redis://cache.internal", environ={}) == RedisSettings(
        "cache.internal", 6379, 0
    )
    settings = parse_state_url("rediss://[::1]:6380/3?timeout=0.05&retry_after=2", environ={})
    assert (settings.host, settings.port, settings.db, settings.tls) == ("::1", 6380, 3, True)
    assert (settings.timeout, settings.retry_after) == (0.05, 2.0)
    assert settings.describe() == "rediss://[::1]:6380/3"


def test_password_from_url_env_or_file_and_never_shown(tmp_path: Path) -> None:
    in_url = parse_state_url("redis://auditproxy:s%40cret@h:1/0", environ={})
    assert (in_url.username, in_url.password) == ("auditproxy", "s@cret")
    secret_file = tmp_path / "redis-password"
    secret_file.write_text("from-file\n")
    env = {"REDIS_PASSWORD_FILE": str(secret_file)}
    assert parse_state_url("redis://h/0", environ=env).password == "from-file"
    env["REDIS_PASSWORD"] = "from-env"
    assert parse_state_url("redis://h/0", environ=env).password == "from-env"
    assert parse_state_url("redis://:url@h/0", environ=env).password == "url"  # the URL wins
    for settings in (in_url, parse_state_url("redis://h/0", environ=env)):
        shown = repr(settings) + settings.describe()
        assert "cret" not in shown and "from-" not in shown


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://cache:6379/0", "not a Redis URL"),
        ("redis:///0", "no host"),
        ("redis://:s3cret@cache:99999/0", "port"),
        ("redis://:s3cret@cache:port/0", "port"),
        ("redis://cache:0/0", "port"),
        ("redis://cache/one", "database must be a number"),
        ("redis://cache/0/1", "database must be a number"),
        ("redis://cache/\u00b2", "database must be a number"),
        ("redis://cache/0?ssl=1", "unknown Redis URL option 'ssl'"),
        ("redis://cache/0?timeout=30", "between"),
        ("redis://cache/0?timeout=nan", "between"),
        ("redis://cache/0?timeout=soon", "in seconds"),
        ("redis://cache/0?timeout=1&timeout=2", "once"),
        ("redis://cache/0?timeout", "malformed"),
        ("redis://cache/0#x", "fragment"),
    ],
)
def test_parse_state_url_errors_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_state_url(url, environ={})
    assert "s3cret" not in str(info.value)


def test_unreadable_or_empty_password_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ValueError, match="cannot read the Redis password file"):
        parse_state_url("redis://h/0", environ={"REDIS_PASSWORD_FILE": str(missing)})
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        parse_state_url("redis://h/0", environ={"REDIS_PASSWORD_FILE": str(empty)})


def test_cli_passes_a_redis_url_through_and_resolves_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def state_option(value: str) -> str:
        argv = mitmproxy_arguments(build_parser().parse_args(["run", "--state", value]))
        (setting,) = [a for a in argv if a.startswith("auditproxy_state=")]
        return setting.split("=", 1)[1]

    url = "redis://cache.internal:6379/2?timeout=0.05"
    assert state_option(url) == url
    assert state_option("rediss://cache/0") == "rediss://cache/0"
    monkeypatch.chdir(tmp_path)
    assert state_option("state.sqlite3") == str(tmp_path.resolve() / "state.sqlite3")


# --------------------------------------------------------------------------- the day


def test_the_day_ends_at_midnight_in_the_policy_timezone() -> None:
    assert datetime.fromtimestamp(end_of_day(DAY, TORONTO), TORONTO) == datetime(
        2026, 11, 23, tzinfo=TORONTO
    )
    tokyo = ZoneInfo("Asia/Tokyo")
    assert end_of_day(DAY, TORONTO) - end_of_day(DAY, tokyo) == 14 * 3600


def test_a_daylight_saving_day_is_23_or_25_hours_long() -> None:
    def length(day: date) -> float:
        return end_of_day(day, TORONTO) - end_of_day(day - timedelta(days=1), TORONTO)

    assert length(date(2026, 3, 8)) == 23 * 3600  # clocks go forward
    assert length(date(2026, 11, 1)) == 25 * 3600  # clocks go back
    assert length(DAY) == 24 * 3600


# --------------------------------------------------------------------------- the store


def test_claim_once_per_day_user_and_scope(redis_server: RedisServer) -> None:
    store = store_for(redis_server)
    assert not store.seen(TODAY, "u1", "site:facebook")
    assert store.claim(TODAY, "u1", "site:facebook") is True
    assert store.claim(TODAY, "u1", "site:facebook") is False
    assert store.seen(TODAY, "u1", "site:facebook")
    assert store.claim(TODAY, "u2", "site:facebook") is True
    assert store.claim(TODAY, "u1", "site:x") is True
    assert store.claim(TODAY + timedelta(days=1), "u1", "site:facebook") is True
    store.close()


def test_a_claim_expires_after_its_day_ends_in_the_policy_timezone(
    redis_server: RedisServer,
) -> None:
    store = store_for(redis_server)
    today = TODAY
    assert store.claim(today, "u", "site:facebook")
    raw = redis_server.client()
    key = notice_key(today, "u", "site:facebook")
    midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(), TORONTO)
    # A relative TTL by this host's clock (Redis's own clock may differ, as under the
    # shifted clocks of CI): the key lives until the day's end plus the grace.
    left = midnight.timestamp() + EXPIRY_GRACE - time.time()
    assert abs(raw.ttl(key) - left) <= 5
    assert raw.ttl(key) > EXPIRY_GRACE
    # A policy in another timezone ends the same calendar day at another instant.
    tokyo = RedisState(store.settings, lambda day: end_of_day(day, ZoneInfo("Asia/Tokyo")))
    assert tokyo.claim(today, "v", "site:facebook")
    tokyo_left = raw.ttl(notice_key(today, "v", "site:facebook"))
    tokyo_end = end_of_day(today, ZoneInfo("Asia/Tokyo")) + EXPIRY_GRACE
    assert abs(tokyo_left - (tokyo_end - time.time())) <= 5
    store.close()
    tokyo.close()


def test_keys_are_namespaced_and_carry_no_identity(redis_server: RedisServer) -> None:
    store = store_for(redis_server, timeout=0.5)
    user = hashlib.sha256(b"alice").hexdigest()[:32]  # what NoticeKeys.user gives
    store.claim(TODAY, user, "site:facebook")
    keys = [k.decode() for k in redis_server.client().keys("*")]
    assert keys == [f"auditproxy:notice:{TODAY.toordinal()}:site:facebook:{user}"]
    assert "alice" not in keys[0]
    store.close()


def test_release_lets_the_next_page_try_again(redis_server: RedisServer) -> None:
    store = store_for(redis_server)
    assert store.claim(TODAY, "u", "s")
    store.release(TODAY, "u", "s")
    assert not store.seen(TODAY, "u", "s")
    assert store.claim(TODAY, "u", "s")
    store.close()


def test_prune_leaves_it_to_expiry(redis_server: RedisServer) -> None:
    store = store_for(redis_server)
    store.claim(TODAY, "u", "s")
    assert store.prune(TODAY + timedelta(days=1)) == 0
    assert store.seen(TODAY, "u", "s")
    store.close()


def test_racing_instances_have_exactly_one_winner(redis_server: RedisServer) -> None:
    """Eight stores (eight proxy instances, each with its own connection) race 20 times."""
    stores = [store_for(redis_server, timeout=2) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    wins: dict[int, list[bool]] = {n: [] for n in range(20)}

    def race(store: RedisState) -> None:
        for n in range(20):
            barrier.wait(timeout=10)
            wins[n].append(store.claim(TODAY, f"user-{n}", "site:facebook"))

    threads = [threading.Thread(target=race, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(w.count(True) == 1 and len(w) == len(stores) for w in wins.values()), wins
    for store in stores:
        store.close()


def test_adopt_adds_missing_claims_and_skips_finished_days(redis_server: RedisServer) -> None:
    store = store_for(redis_server)
    assert store.claim(TODAY, "a", "s")
    claims = [(TODAY, "a", "s"), (TODAY, "b", "s"), (date(2020, 1, 1), "c", "s")]
    now = end_of_day(TODAY, TORONTO) - 60
    assert store.adopt(claims, now=now) == 1
    assert store.seen(TODAY, "b", "s")
    assert not store.seen(date(2020, 1, 1), "c", "s")
    store.close()


# --------------------------------------------------------------------------- faults


def test_a_paused_server_fails_within_the_timeout(redis_server: RedisServer) -> None:
    import redis

    store = store_for(redis_server, timeout=0.1)
    assert store.claim(TODAY, "u", "s")
    redis_server.pause()
    started = time.monotonic()
    with pytest.raises(redis.RedisError):
        store.claim(TODAY, "v", "s")
    # Bounded: without a socket timeout and with redis-py's default retries it would wait
    # until the server came back. The bound is generous; the point is that it ends.
    assert time.monotonic() - started < 2.0
    redis_server.resume()
    store.close()


def test_falls_back_to_memory_while_paused_and_hands_claims_back(
    redis_server: RedisServer,
) -> None:
    faults, clock = Faults(), ManualClock()
    settings = parse_state_url(redis_server.url(timeout=0.1))
    state = Resilient(
        lambda: RedisState(settings, toronto_end), faults, retry_after=5, clock=clock, name="redis"
    )
    other = RedisState(settings, toronto_end)  # another proxy instance
    assert state.backend == "redis"
    assert state.claim(TODAY, "before", "s") is True
    redis_server.pause()
    assert state.claim(TODAY, "during", "s") is True  # from memory: the page goes on
    assert state.backend == "memory" and faults[0][:2] == ("claim", "TimeoutError")
    started = time.monotonic()
    for n in range(20):  # on memory until the retry is due: no more waits for Redis
        assert state.claim(TODAY, f"more-{n}", "s") is True
    assert time.monotonic() - started < 1.0
    assert state.claim(TODAY, "during", "s") is False  # still once a day on this instance
    redis_server.resume()
    clock.now = 6
    assert state.seen(TODAY, "before", "s")  # back on Redis
    assert state.backend == "redis" and len(faults) == 1
    assert other.seen(TODAY, "during", "s"), "the claim made in memory was not handed back"
    assert other.claim(TODAY, "more-3", "s") is False
    state.close()
    other.close()


def test_stopped_then_restarted_server(redis_server: RedisServer) -> None:
    faults, clock = Faults(), ManualClock()
    settings = parse_state_url(redis_server.url())
    state = Resilient(
        lambda: RedisState(settings, toronto_end), faults, retry_after=5, clock=clock, name="redis"
    )
    redis_server.stop()
    assert state.claim(TODAY, "u", "s") is True
    assert state.degraded and faults[0][:2] == ("claim", "ConnectionError")
    clock.now = 6
    assert state.claim(TODAY, "v", "s") is True  # still down: the retry fails, memory answers
    assert [f[0] for f in faults] == ["claim", "open"]
    redis_server.start()  # same port, empty store
    clock.now = 12
    assert state.claim(TODAY, "w", "s") is True
    assert state.backend == "redis"
    other = RedisState(settings, toronto_end)
    assert {other.claim(TODAY, user, "s") for user in ("u", "v", "w")} == {False}
    state.close()
    other.close()


def test_server_down_at_start_is_not_fatal(tmp_path: Path) -> None:
    pytest.importorskip("redis")
    server = RedisServer(tmp_path)  # not started yet
    faults, clock = Faults(), ManualClock()
    settings = parse_state_url(server.url())
    state = Resilient(
        lambda: RedisState(settings, toronto_end), faults, retry_after=5, clock=clock, name="redis"
    )
    assert state.degraded and faults[0][0] == "open"
    assert state.claim(TODAY, "u", "s") is True
    server.start()
    try:
        clock.now = 6
        assert state.claim(TODAY, "v", "s") is True and not state.degraded
    finally:
        state.close()
        server.stop()


def test_password_protected_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redis")
    server = RedisServer(tmp_path, "--requirepass", "pw-not-in-logs").start()
    try:
        faults = Faults()
        monkeypatch.delenv("REDIS_PASSWORD", raising=False)
        monkeypatch.delenv("REDIS_PASSWORD_FILE", raising=False)
        no_password = parse_state_url(server.url())
        state = Resilient(lambda: RedisState(no_password, toronto_end), faults)
        assert state.degraded and faults[0][1] == "AuthenticationError"
        state.close()
        monkeypatch.setenv("REDIS_PASSWORD", "pw-not-in-logs")
        with_password = parse_state_url(server.url())
        store = RedisState(with_password, toronto_end)
        assert store.claim(TODAY, "u", "s")
        store.close()
        faults.clear()
        wrong = parse_state_url(server.url().replace("redis://", "redis://:wrong@"))
        Resilient(lambda: RedisState(wrong, toronto_end), faults).close()
        assert faults and all("wrong" not in f[2] for f in faults)
    finally:
        server.stop()


# --------------------------------------------------------------------------- the add-on


def test_two_addons_share_the_notice_through_redis(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Two add-ons (two instances) with one key and one Redis: one notice between them.

    mitmproxy's test context holds one add-on at a time, so instance B starts after A
    stops; tests/e2e/test_scaleout.py runs two at once.
    """
    key = tmp_path / "shared.key"
    key.write_text(os.urandom(32).hex())
    key.chmod(0o600)
    url = redis_server.url(timeout=0.1, retry_after=0.1)
    (tmp_path / "a").mkdir()
    for a in harness_for(tmp_path / "a"):
        a.configure(auditproxy_state=url, auditproxy_pseudonym_key=str(key))
        assert a.metric("auditproxy_state_backend", backend="redis") == 1
        assert a.metric("auditproxy_state_backend", backend="sqlite") == 0
        assert has_notice(a.page("http://www.facebook.com/", client="10.1.1.1"))
        assert not has_notice(a.page("http://www.facebook.com/", client="10.1.1.1"))
        redis_server.pause()
        try:
            page = a.page("http://www.facebook.com/", client="10.2.2.2")
            assert page.response.status_code == 200 and has_notice(page)  # from memory
            assert a.metric("auditproxy_errors_total", stage="state") >= 1
            assert a.metric("auditproxy_state_backend", backend="memory") == 1
            assert a.metric("auditproxy_state_backend", backend="redis") == 0
        finally:
            redis_server.resume()
        time.sleep(0.3)  # retry_after=0.1
        assert not has_notice(a.page("http://www.facebook.com/", client="10.2.2.2"))
        assert a.metric("auditproxy_state_backend", backend="redis") == 1
    (tmp_path / "b").mkdir()
    for b in harness_for(tmp_path / "b"):
        b.configure(auditproxy_state=url, auditproxy_pseudonym_key=str(key))
        assert not has_notice(b.page("http://www.facebook.com/", client="10.1.1.1"))
        # handed back after the fault: B knows that 10.2.2.2 had it today
        assert not has_notice(b.page("http://www.facebook.com/", client="10.2.2.2"))
        assert has_notice(b.page("http://x.com/", client="10.1.1.1"))  # another site


def test_a_bad_redis_url_stops_the_start(tmp_path: Path) -> None:
    for h in harness_for(tmp_path):
        with pytest.raises(exceptions.OptionsError, match="unknown Redis URL option"):
            h.configure(auditproxy_state="redis://127.0.0.1:1/0?tiemout=1")


def test_a_missing_redis_client_stops_the_start_saying_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "redis" else real_find_spec(name, *a),
    )
    for h in harness_for(tmp_path):
        with pytest.raises(exceptions.OptionsError, match=r"pip install 'auditproxy\[redis\]'"):
            h.configure(auditproxy_state="redis://127.0.0.1:1/0")


def test_the_sqlite_store_reports_its_backend(tmp_path: Path) -> None:
    for h in harness_for(tmp_path):
        assert h.metric("auditproxy_state_backend", backend="sqlite") == 1
        assert h.metric("auditproxy_state_backend", backend="memory") == 0


def has_notice(flow) -> bool:
    return b'id="auditproxy-notice"' in (flow.response.content or b"")


# --- Redis that loses its data (restarted without persistence, flushed) ------------------


def test_the_sentinel_tells_a_flushed_redis(redis_server: RedisServer) -> None:
    from auditproxy.notice.store_redis import sentinel_key

    settings = parse_state_url(redis_server.url())
    store = RedisState(settings, toronto_end, sentinel=sentinel_key("test"))
    assert store.was_empty  # a new process: its sentinel is new
    assert store.lost() is None
    again = RedisState(settings, toronto_end, sentinel=sentinel_key("test"))
    assert not again.was_empty
    redis_server.client().flushall()
    assert store.lost() == "flushed"
    assert store.lost() is None  # it is back: one loss, noticed once
    store.close()
    again.close()


def test_redis_restarted_empty_gets_todays_claims_back(redis_server: RedisServer) -> None:
    from auditproxy.notice.store_redis import sentinel_key

    faults, clock, lost = Faults(), ManualClock(), []
    settings = parse_state_url(redis_server.url(timeout=0.2))
    state = Resilient(
        lambda: RedisState(settings, toronto_end, sentinel=sentinel_key("me")),
        faults,
        retry_after=5,
        clock=clock,
        name="redis",
        on_lost=lost.append,
    )
    assert state.claim(TODAY, "before", "s")
    redis_server.stop()
    redis_server.start()  # same port, no persistence: empty
    assert state.claim(TODAY, "during", "s")  # redis-py reconnects: no error at all...
    cause = state.probe()  # ...but the upkeep's check finds our sentinel gone
    assert cause == "flushed"
    state.lose(cause)
    assert lost == ["flushed"] and state.backend == "memory" and state.rebuild_due()
    state.install(*state.rebuild())
    assert state.backend == "redis"
    other = RedisState(settings, toronto_end)
    assert not other.claim(TODAY, "before", "s") and not other.claim(TODAY, "during", "s")
    other.close()
    state.close()


# ------------------------------------------------------------- answers remembered by instances


def test_instances_remember_only_that_a_person_was_seen(redis_server: RedisServer) -> None:
    """Two instances on one Redis. A "not seen" is asked every time (the other instance's
    claim counts at once); a "seen" is remembered `SEEN_FOR` seconds, so the other
    instance's release (its page with the notice failed) counts here once that is over."""
    from auditproxy.notice.seen_memo import SEEN_FOR

    clock = ManualClock()
    here, there = (
        Resilient(lambda: store_for(redis_server), Faults(), clock=clock) for _ in range(2)
    )
    assert here.seen(TODAY, "u", "s") is False
    assert there.claim(TODAY, "u", "s")
    assert here.seen(TODAY, "u", "s") is True  # not remembered as unseen
    there.release(TODAY, "u", "s")
    assert there.seen(TODAY, "u", "s") is False  # at once where it was released
    assert here.seen(TODAY, "u", "s") is True  # remembered here
    clock.now = SEEN_FOR + 0.1
    assert here.seen(TODAY, "u", "s") is False
    assert here.claim(TODAY, "u", "s")  # the next page here shows it
    here.close()
    there.close()
