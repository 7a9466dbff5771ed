"""`SeenMemo`: the "seen" answers a notice state store gave recently (its use by the store
wrapper: tests/notice/test_store.py)."""

from __future__ import annotations

from datetime import date

import pytest

from auditproxy.notice import seen_memo
from auditproxy.notice.seen_memo import SEEN_FOR, SeenMemo
from support.clock import ManualClock

DAY = date(2026, 11, 22)


def test_an_answer_is_remembered_for_seen_for_only() -> None:
    clock = ManualClock()
    memo = SeenMemo(clock)
    memo.remember((DAY, "u", "s"), memo.generation())
    assert memo.seen((DAY, "u", "s"))
    assert not memo.seen((DAY, "u", "other")) and not memo.seen((DAY, "v", "s"))
    clock.now = SEEN_FOR - 0.1
    assert memo.seen((DAY, "u", "s"))
    clock.now = SEEN_FOR
    assert not memo.seen((DAY, "u", "s"))


def test_an_answer_read_before_anything_was_forgotten_is_not_kept() -> None:
    memo = SeenMemo(ManualClock())
    before = memo.generation()
    memo.forget((DAY, "someone else", "s"))  # any give-back while the store was read
    memo.remember((DAY, "u", "s"), before)
    assert not memo.seen((DAY, "u", "s"))
    before = memo.generation()
    memo.clear()
    memo.remember((DAY, "u", "s"), before)
    assert not memo.seen((DAY, "u", "s")) and len(memo) == 0


def test_forget_and_clear() -> None:
    memo = SeenMemo(ManualClock())
    for user in ("u", "v"):
        memo.remember((DAY, user, "s"), memo.generation())
    memo.forget((DAY, "u", "s"))
    assert not memo.seen((DAY, "u", "s")) and memo.seen((DAY, "v", "s"))
    memo.clear()
    assert len(memo) == 0


def test_upkeep_sweeps_what_is_over() -> None:
    clock = ManualClock()
    memo = SeenMemo(clock)
    for n in range(3):
        memo.remember((DAY, f"u{n}", "s"), memo.generation())
    clock.now = SEEN_FOR / 2
    memo.remember((DAY, "late", "s"), memo.generation())
    memo.remember((DAY, "u0", "s"), memo.generation())  # seen again: remembered anew
    memo.sweep()
    assert len(memo) == 4  # nothing over yet
    clock.now = SEEN_FOR + 1
    memo.sweep()
    assert len(memo) == 2 and memo.seen((DAY, "late", "s")) and memo.seen((DAY, "u0", "s"))
    clock.now = 2 * SEEN_FOR
    memo.sweep()
    assert len(memo) == 0


def test_the_bound_forgets_the_expired_first_then_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seen_memo, "SEEN_LIMIT", 3)
    clock = ManualClock()
    memo = SeenMemo(clock)
    memo.remember((DAY, "old", "s"), memo.generation())
    clock.now = SEEN_FOR / 2
    memo.remember((DAY, "u1", "s"), memo.generation())
    memo.remember((DAY, "u2", "s"), memo.generation())
    clock.now = SEEN_FOR + 1  # "old" is over, u1 and u2 are not
    memo.remember((DAY, "u3", "s"), memo.generation())
    assert len(memo) == 3 and memo.seen((DAY, "u1", "s")) and memo.seen((DAY, "u3", "s"))
    memo.remember((DAY, "u4", "s"), memo.generation())  # none over: all forgotten
    assert len(memo) == 1 and memo.seen((DAY, "u4", "s"))
