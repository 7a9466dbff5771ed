from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from auditproxy.notice.resilient import Resilient
from auditproxy.notice.store import MemoryState, SQLiteState
from support.clock import ManualClock

TODAY = date(2026, 11, 22)
TOMORROW = date(2026, 11, 23)
DAY = TODAY


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryState() if request.param == "memory" else SQLiteState(tmp_path / "state.db")
    yield s
    s.close()


def test_claim_once_per_day_user_scope(store):
    assert not store.seen(TODAY, "u1", "site:facebook")
    assert store.claim(TODAY, "u1", "site:facebook") is True
    assert store.claim(TODAY, "u1", "site:facebook") is False
    assert store.seen(TODAY, "u1", "site:facebook")
    assert store.claim(TODAY, "u2", "site:facebook") is True
    assert store.claim(TODAY, "u1", "site:x") is True
    assert store.claim(TOMORROW, "u1", "site:facebook") is True


def test_release_lets_the_next_page_try_again(store):
    assert store.claim(TODAY, "u", "s")
    store.release(TODAY, "u", "s")
    assert not store.seen(TODAY, "u", "s")
    assert store.claim(TODAY, "u", "s")


def test_prune_forgets_past_days(store):
    store.claim(date(2026, 11, 20), "u", "s")
    store.claim(date(2026, 11, 21), "u", "s")
    store.claim(TODAY, "u", "s")
    assert store.prune(TODAY) == 2
    assert store.seen(TODAY, "u", "s")
    assert not store.seen(date(2026, 11, 21), "u", "s")


def test_concurrent_claims_have_one_winner(store):
    wins = []
    barrier = threading.Barrier(8)

    def race():
        barrier.wait()
        wins.append(store.claim(TODAY, "u", "s"))

    threads = [threading.Thread(target=race) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1


def test_sqlite_survives_restart(tmp_path):
    path = tmp_path / "state.db"
    first = SQLiteState(path)
    first.claim(TODAY, "u", "s")
    first.close()
    again = SQLiteState(path)
    assert again.seen(TODAY, "u", "s")
    assert again.claim(TODAY, "u", "s") is False
    again.close()


def test_sqlite_corrupt_file_raises(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(sqlite3.DatabaseError):
        SQLiteState(path)


# --- Resilient: faults never block, and recover ------------------------------------------


class Faults(list):
    def __call__(self, what: str, error: Exception) -> None:
        self.append((what, type(error).__name__))


def test_corrupt_store_falls_back_to_memory_and_recovers(tmp_path):
    path = tmp_path / "state.db"
    path.write_bytes(b"garbage" * 1000)
    faults, clock = Faults(), ManualClock()
    state = Resilient(lambda: SQLiteState(path), faults, retry_after=5, clock=clock)
    assert state.degraded and faults == [("open", "DatabaseError")]
    assert state.claim(TODAY, "u", "s") is True  # from memory
    assert state.claim(TODAY, "u", "s") is False
    path.unlink()  # IT removes the broken file
    clock.now = 6
    assert state.claim(TODAY, "u2", "s") is True
    assert not state.degraded
    assert state.seen(TODAY, "u", "s")  # remembered across the fault
    assert state.claim(TODAY, "u", "s") is False  # no second banner after recovery
    state.close()


def test_locked_store_does_not_hold_traffic(tmp_path):
    """Another process holds the file (a second proxy, an admin's sqlite3 shell)."""
    import time

    path = tmp_path / "state.db"
    SQLiteState(path).close()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    faults = Faults()
    try:
        start = time.monotonic()
        state = Resilient(lambda: SQLiteState(path), faults, retry_after=0)
        assert state.claim(TODAY, "u", "s") is True  # answered from memory
        assert time.monotonic() - start < 1.0
        assert state.degraded and faults[0][:2] == ("open", "OperationalError")
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert state.claim(TODAY, "u3", "s") is True  # back on the file
    assert not state.degraded
    assert state.claim(TODAY, "u", "s") is False  # the claim made meanwhile was kept
    state.close()


def test_the_file_is_ours_while_we_run(tmp_path):
    """Exclusive locking: no -shm mapping (no SIGBUS if the files turn read-only)."""
    path = tmp_path / "state.db"
    state = SQLiteState(path)
    state.claim(TODAY, "u", "s")
    assert not (tmp_path / "state.db-shm").exists()
    other = sqlite3.connect(path, timeout=0.05)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("SELECT count(*) FROM notice_seen").fetchone()
    other.close()
    state.close()


def test_unopenable_path(tmp_path):
    (tmp_path / "file").write_text("x")
    faults = Faults()
    state = Resilient(lambda: SQLiteState(tmp_path / "file" / "state.db"), faults)
    assert state.degraded and faults[0][0] == "open"
    assert state.claim(TODAY, "u", "s") is True
    state.release(TODAY, "u", "s")
    assert state.prune(TOMORROW) == 0
    state.close()


def test_claims_made_during_a_fault_are_handed_back_to_the_store(tmp_path):
    """After a restart on the same file, nobody sees the notice twice because of the fault."""
    path = tmp_path / "state.db"
    SQLiteState(path).close()
    faults, clock = Faults(), ManualClock()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    state = Resilient(lambda: SQLiteState(path), faults, retry_after=5, clock=clock)
    assert state.backend == "memory"
    assert state.claim(TODAY, "during", "s") is True  # memory
    blocker.execute("ROLLBACK")
    blocker.close()
    clock.now = 6
    state.poll()  # no traffic needed to go back
    assert state.backend == "sqlite"
    state.close()
    again = SQLiteState(path)
    assert again.seen(TODAY, "during", "s")
    assert again.adopt([(TODAY, "during", "s"), (TODAY, "new", "s")]) == 1
    again.close()


def test_a_due_retry_happens_even_for_people_memory_knows(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a folder")
    faults, clock = Faults(), ManualClock()
    state = Resilient(
        lambda: SQLiteState(tmp_path / "ok.db" if clock.now else path / "x"), faults, clock=clock
    )
    assert state.claim(TODAY, "u", "s") is True and state.degraded
    clock.now = 6
    assert state.seen(TODAY, "u", "s") is True
    assert not state.degraded
    state.close()


# --- a store that loses its data while running (removed, replaced, overwritten) ----------


def test_sqlite_notices_its_file_removed_replaced_or_overwritten(tmp_path):
    path = tmp_path / "state.db"
    store = SQLiteState(path)
    assert store.lost() is None
    path.write_bytes(path.read_bytes()[:16] + b"\0" * 100)  # damaged past its header
    assert store.lost() is None
    path.write_bytes(b"garbage" * 100)  # the same file, overwritten
    assert store.lost() == "corrupt"
    other = tmp_path / "other.db"
    SQLiteState(other).close()
    os.replace(other, path)
    assert store.lost() == "replaced"
    path.unlink()
    assert store.lost() == "removed"
    store.close()


def test_sqlite_never_opens_a_fifo(tmp_path):
    from auditproxy.policy.files import FileRefused

    path = tmp_path / "state.db"
    os.mkfifo(path)
    with pytest.raises(FileRefused, match="FIFO"):
        SQLiteState(path)  # would wait forever for a writer in sqlite3.connect


def test_todays_claims_are_kept_bounded_and_for_today_only():
    from auditproxy.notice.store import TodayClaims

    today = TodayClaims(limit=3)
    for n in range(5):
        today.add(DAY, f"u{n}", "s")
    assert len(today) == 3 and today.overflowed
    today.discard(DAY, "u0", "s")
    today.add(DAY - timedelta(days=1), "late", "s")  # yesterday's: not kept
    assert sorted(c[1] for c in today.snapshot()) == ["u1", "u2"]
    today.add(DAY + timedelta(days=1), "tomorrow", "s")  # a new day starts afresh
    assert today.snapshot() == [(DAY + timedelta(days=1), "tomorrow", "s")]
    assert not today.overflowed


@pytest.mark.parametrize("damage", ["removed", "replaced", "corrupt"])
def test_a_lost_file_is_recreated_with_todays_claims(tmp_path, damage):
    path = tmp_path / "state.db"
    faults, lost = Faults(), []
    state = Resilient(
        lambda: SQLiteState(path),
        faults,
        set_aside=lambda whole: SQLiteState.set_aside(path, whole),
        on_lost=lost.append,
    )
    assert state.claim(DAY, "alice", "s") and state.claim(DAY, "bob", "s")
    state.release(DAY, "bob", "s")  # the banner did not go out after all
    if damage == "removed":
        path.unlink()
    elif damage == "replaced":
        path.unlink()
        path.write_bytes(b"not a database" * 100)  # another file, and not even SQLite
    else:
        path.write_bytes(b"not a database" * 100)
    assert state.probe() == damage
    state.lose(damage)
    assert lost == [damage] and state.backend == "memory" and state.lost == damage
    assert state.claim(DAY, "carol", "s")  # memory answers meanwhile
    assert state.rebuild_due()
    store, written = state.rebuild()  # off the loop in the proxy
    state.install(store, written)
    assert state.backend == "sqlite" and state.lost is None and state.losses == 1
    assert state.probe() is None
    assert not state.claim(DAY, "alice", "s") and not state.claim(DAY, "carol", "s")
    assert state.claim(DAY, "bob", "s")
    state.close()
    reopened = SQLiteState(path)
    assert {u for u in ("alice", "bob", "carol") if reopened.seen(DAY, u, "s")} == {
        "alice",
        "bob",
        "carol",
    }
    reopened.close()
    if damage != "removed":
        assert list(tmp_path.glob("state.db.lost-*")), "the damaged file was not set aside"
    assert faults == []


def test_a_failed_rebuild_is_retried_later(tmp_path):
    path = tmp_path / "state.db"
    opens = []

    def opener() -> SQLiteState:
        opens.append(1)
        if len(opens) == 2:
            raise sqlite3.OperationalError("disk I/O error")
        return SQLiteState(path)

    faults, clock = Faults(), ManualClock()
    state = Resilient(opener, faults, retry_after=5, clock=clock)
    state.claim(DAY, "alice", "s")
    state.lose("removed")
    path.unlink()
    with pytest.raises(sqlite3.OperationalError):
        state.rebuild()
    state.rebuild_failed(sqlite3.OperationalError("disk I/O error"))
    assert [f[0] for f in faults] == ["re-create"] and not state.rebuild_due()
    assert state.claim(DAY, "bob", "s") and state.backend == "memory"  # no lazy reopen
    clock.now = 6
    assert state.rebuild_due()
    state.install(*state.rebuild())
    assert state.backend == "sqlite" and not state.claim(DAY, "alice", "s")
    assert not state.claim(DAY, "bob", "s")
    state.close()


# ---------------------------------------------------------------------- remembered answers
# (Two instances sharing a store, which SQLite's file never is: tests/notice/test_store_redis.py.)


class CountingSQLite(SQLiteState):
    """The SQLite store, counting the reads that reach it."""

    reads = 0

    def seen(self, day: date, user: str, scope: str) -> bool:
        CountingSQLite.reads += 1
        return super().seen(day, user, scope)


def _restarted(tmp_path, clock: ManualClock, *claims: tuple[str, str]) -> Resilient:
    """A proxy started on a state file that a previous run of it wrote `claims` to."""
    path = tmp_path / "state.db"
    before = SQLiteState(path)
    for user, scope in claims:
        assert before.claim(TODAY, user, scope)
    before.close()
    CountingSQLite.reads = 0
    return Resilient(lambda: CountingSQLite(path), Faults(), clock=clock)


def test_a_person_seen_is_not_asked_of_the_store_again_for_a_while(tmp_path):
    from auditproxy.notice.seen_memo import SEEN_FOR

    clock = ManualClock()
    state = _restarted(tmp_path, clock, ("u", "s"))
    assert state.seen(TODAY, "u", "s") and CountingSQLite.reads == 1
    for _ in range(5):
        assert state.seen(TODAY, "u", "s")
    assert CountingSQLite.reads == 1  # the next pages asked nothing
    assert state.seen(TODAY, "u", "other scope") is False  # by person and scope
    assert state.seen(TOMORROW, "u", "s") is False  # and by period
    reads = CountingSQLite.reads
    clock.now = SEEN_FOR + 1
    assert state.seen(TODAY, "u", "s") and CountingSQLite.reads == reads + 1  # asked again
    state.close()


def test_a_claim_made_here_is_remembered_as_seen(tmp_path):
    state = _restarted(tmp_path, ManualClock())
    assert state.claim(TODAY, "u", "s")
    assert state.seen(TODAY, "u", "s") and CountingSQLite.reads == 0
    state.close()


def test_a_release_counts_at_once(tmp_path):
    """A page that carried the notice failed: the next page shows it again."""
    state = _restarted(tmp_path, ManualClock(), ("u", "s"))
    assert state.seen(TODAY, "u", "s")
    state.release(TODAY, "u", "s")
    assert state.seen(TODAY, "u", "s") is False
    assert state.claim(TODAY, "u", "s")
    state.close()


def test_a_lost_store_forgets_every_remembered_answer(tmp_path):
    state = _restarted(tmp_path, ManualClock(), ("u", "s"))
    assert state.seen(TODAY, "u", "s")  # remembered from the file
    state.lose("removed")
    (tmp_path / "state.db").unlink()
    store, _ = state.rebuild()  # today's claims made by this run: none
    state.install(store, 0)
    assert state.seen(TODAY, "u", "s") is False  # the new store's answer
    state.close()


class ReleasedDuringRead(SQLiteState):
    """The store's answer goes out, and the event loop releases the claim before the
    reading thread is back (a worker thread's read, the loop's release)."""

    during_read: Callable[[], None] | None = None

    def seen(self, day: date, user: str, scope: str) -> bool:
        answer = super().seen(day, user, scope)
        if ReleasedDuringRead.during_read is not None:
            ReleasedDuringRead.during_read()
        return answer


def test_an_answer_read_while_it_was_released_is_not_remembered(tmp_path):
    path = tmp_path / "state.db"
    before = SQLiteState(path)  # claimed by the previous run: not remembered yet
    assert before.claim(TODAY, "u", "s")
    before.close()
    state = Resilient(lambda: ReleasedDuringRead(path), Faults(), clock=ManualClock())
    ReleasedDuringRead.during_read = lambda: state.release(TODAY, "u", "s")
    try:
        assert state.seen(TODAY, "u", "s") is True  # what the store said when asked
    finally:
        ReleasedDuringRead.during_read = None
    assert state.seen(TODAY, "u", "s") is False  # not remembered: the store is asked
    state.close()


class Breakable(SQLiteState):
    broken = False

    def _check(self) -> None:
        if Breakable.broken:
            raise sqlite3.OperationalError("disk I/O error")

    def seen(self, day: date, user: str, scope: str) -> bool:
        self._check()
        return super().seen(day, user, scope)

    def claim(self, day: date, user: str, scope: str) -> bool:
        self._check()
        return super().claim(day, user, scope)

    def release(self, day: date, user: str, scope: str) -> None:
        self._check()
        super().release(day, user, scope)


def test_a_release_while_the_store_is_down_reaches_it_when_it_is_back(tmp_path):
    """The page that carried the notice failed while the store was down: once the store
    is back, the person's next page shows the notice (the store's claim was given back),
    and claims made in memory meanwhile are kept."""
    path, clock = tmp_path / "state.db", ManualClock()
    faults = Faults()
    state = Resilient(lambda: Breakable(path), faults, retry_after=5, clock=clock)
    try:
        assert state.claim(TODAY, "u", "s")  # in the store
        assert state.claim(TODAY, "v", "s")
        Breakable.broken = True
        state.release(TODAY, "u", "s")  # the page failed; the store is down
        assert faults == [("release", "OperationalError")] and state.degraded
        assert state.claim(TODAY, "w", "s")  # in memory meanwhile
        state.release(TODAY, "v", "s")
        assert state.claim(TODAY, "v", "s")  # released, then claimed again, in memory
        Breakable.broken = False
        clock.now = 6
        assert state.seen(TODAY, "u", "s") is False and not state.degraded
        assert state.seen(TODAY, "v", "s") and state.seen(TODAY, "w", "s")
    finally:
        Breakable.broken = False
    state.close()
    store = SQLiteState(path)  # what the store itself holds now
    assert not store.seen(TODAY, "u", "s") and store.seen(TODAY, "v", "s")
    assert store.seen(TODAY, "w", "s")
    store.close()
