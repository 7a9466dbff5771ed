"""One connection's budget (`decide.guard`): phases, deadlines, byte counts."""

from __future__ import annotations

from types import SimpleNamespace

from auditproxy.decide.admission import MIN_BODY_RATE, Limits, Reason
from auditproxy.decide.guard import IDLE, ConnectionGuard, OriginGuard, Phase

LIMITS = Limits(head_max_bytes=1000, head_timeout=10, idle_timeout=60, body_timeout=30)


def guard(now: float = 100.0) -> ConnectionGuard:
    return ConnectionGuard(LIMITS, now)


def test_a_new_connection_has_the_head_timeout_before_its_first_byte() -> None:
    g = guard()
    assert g.phase is Phase.AWAIT and g.deadline() == 110
    assert g.expired(109.9) is None
    assert g.expired(110) == IDLE  # nothing sent: a quiet close


def test_a_head_has_the_head_timeout_from_its_first_byte_and_a_size_cap() -> None:
    g = guard()
    assert g.received(10, 105) is None
    assert g.deadline() == 115
    assert g.expired(115) is Reason.HEAD_TIMEOUT
    assert g.received(990, 106) is None
    assert g.received(1, 107) is Reason.HEAD_SIZE
    assert g.over_limit() is Reason.HEAD_SIZE


def test_a_body_must_not_fall_silent_and_must_keep_a_minimum_rate() -> None:
    g = guard()
    g.received(100, 100)
    g.request_started("f1", has_body=True, multiplexed=False, now=101)
    assert g.phase is Phase.BODY and g.deadline() == 131  # silence, and the rate's start
    g.received(50_000, 120)
    assert g.deadline() == 150  # 30 s after the last byte (the rate allows 131 + 100)
    assert g.received(10_000_000, 121) is None  # bodies are not capped here
    g.received(1, 149)
    assert g.expired(148) is None and g.expired(179) is Reason.BODY_TIMEOUT
    trickle = guard()
    trickle.request_started("f", has_body=True, multiplexed=False, now=0)
    for second in range(1, 40):  # a byte a second: never silent for 30 s...
        trickle.received(1, second)
    assert trickle.deadline() == 30 + 39 / MIN_BODY_RATE  # ...but far below the rate
    assert trickle.expired(31) is Reason.BODY_TIMEOUT


def test_waiting_for_the_answer_has_no_deadline_but_counts_what_is_sent() -> None:
    g = guard()
    g.request_started("f1", has_body=False, multiplexed=False, now=101)
    assert g.phase is Phase.WAIT and g.deadline() is None
    assert g.received(1001, 102) is Reason.HEAD_SIZE  # pipelined bytes pile up in mitmproxy


def test_between_requests_the_idle_timeout_then_the_head_timeout() -> None:
    g = guard()
    g.request_started("f1", has_body=True, multiplexed=False, now=101)
    g.request_complete("f1", 102)
    assert g.phase is Phase.WAIT
    g.exchange_done("f1", 103)
    assert g.phase is Phase.AWAIT and g.deadline() == 163 and g.counted == 0
    g.received(5, 150)
    assert g.deadline() == 160
    g.exchange_done("unknown", 150)  # not ours: nothing moves
    assert g.deadline() == 160


def test_an_upgrade_a_tunnel_or_a_bypassed_hello_pass_through() -> None:
    g = guard()
    g.request_started("ws", has_body=False, multiplexed=False, now=101)
    g.exchange_done("ws", 102, upgraded=True)
    assert g.phase is Phase.TUNNEL and g.deadline() is None
    assert g.received(10**9, 103) is None
    hello = SimpleNamespace(ignore_connection=False)
    b = guard()
    b.tunnel_requested(101)
    b.hello = hello
    assert b.received(500, 101) is None and b.phase is Phase.AWAIT
    hello.ignore_connection = True  # a later stage decided to bypass it
    assert b.received(10**6, 102) is None and b.phase is Phase.TUNNEL
    assert b.expired(10**6) is None


def test_tls_and_http2() -> None:
    g = guard()
    g.tunnel_requested(100)
    assert g.deadline() == 110  # the handshake is due promptly
    g.received(600, 100.1)
    g.tls_established(multiplexed=True, now=100.2)
    assert g.counted == 0 and g.deadline() == 160.2  # may wait before its first request
    g.received(100, 101)  # SETTINGS, PING: no head started
    assert g.deadline() == 160.2 and g.expired(161) == IDLE
    g.request_started("s1", has_body=True, multiplexed=True, now=102)
    g.request_started("s3", has_body=False, multiplexed=True, now=102)
    assert g.phase is Phase.BUSY and g.deadline() is None
    assert g.received(10**6, 103) is None
    g.exchange_done("s1", 104)
    assert g.phase is Phase.BUSY
    g.exchange_done("s3", 105)
    assert g.phase is Phase.AWAIT and g.received(1001, 106) is Reason.HEAD_SIZE


def test_every_move_tells_the_reader() -> None:
    g, moves = guard(), []
    g.on_change = lambda: moves.append(g.deadline())
    g.request_started("f", has_body=False, multiplexed=False, now=101)
    g.exchange_done("f", 102)
    g.passthrough()
    assert moves == [None, 162, None]


def test_an_origin_head_is_capped_until_its_body() -> None:
    client = guard()
    o = OriginGuard(limit=1000, client=client)
    assert o.deadline() is None and o.expired(10**9) is None
    assert o.received(1000, 1) is None
    assert o.received(1, 1) is Reason.ORIGIN_HEAD_SIZE
    o.head_done()
    assert o.received(10**9, 2) is None
    o.exchange_done()
    assert o.counted == 0 and o.received(999, 3) is None
    client.passthrough()
    assert o.received(10**9, 4) is None
