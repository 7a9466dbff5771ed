"""One client connection's budget in bytes and seconds, as data. Pure.

mitmproxy 12 reads a request head until it ends, however long that takes and however large
it grows (its `# FIXME: protect against header size DoS`), and closes a connection only
after 600 s without a byte (`tcp_timeout`). The add-on counts what each connection sends
(`gate.GuardedReader` calls `received` for every read) and learns from the hooks where it
stands:

    AWAIT   a request head is due: bytes count against `head_max_bytes`; the head must be
            complete `head_timeout` after its first byte. Before the first byte the
            connection may wait: `head_timeout` on a new connection or a new tunnel,
            `idle_timeout` between requests and after a TLS handshake (a quiet close then,
            nothing refused: it sent nothing).
    BODY    a request body is coming: it must not fall silent for `body_timeout`, and must
            average `MIN_BODY_RATE` bytes/s after the first `body_timeout` seconds.
    WAIT    the request is in, its answer is due: HTTP/1 sends nothing now (mitmproxy
            buffers whatever comes, so it counts against `head_max_bytes`); no time limit
            (origins may be slow, long polls are long).
    BUSY    HTTP/2 with requests in flight: frames of every stream mix; nothing counted.
    TUNNEL  bytes pass through untouched (a bypassed TLS tunnel, raw TCP, a WebSocket):
            mitmproxy's own idle timeout applies.

HTTP/2 between requests is AWAIT with the size cap and the idle window only: its control
frames (SETTINGS, PING) say nothing about a head starting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from auditproxy.decide.admission import MIN_BODY_RATE, Limits, Reason

IDLE = "idle"  # `expired`: a quiet close, nothing to refuse or record


class Phase(Enum):
    AWAIT = "await"
    BODY = "body"
    WAIT = "wait"
    BUSY = "busy"
    TUNNEL = "tunnel"


@dataclass(slots=True)
class ConnectionGuard:
    limits: Limits
    since: float  # when the current phase (or AWAIT window) began
    phase: Phase = Phase.AWAIT
    window: float | None = None  # AWAIT: seconds allowed before a first byte
    counted: int = 0  # AWAIT and WAIT: bytes since the phase began
    first_byte: float | None = None  # AWAIT: when the head's first byte came
    body_bytes: int = 0
    last_byte: float = 0.0
    multiplexed: bool = False  # HTTP/2 (or 3): several requests at once
    inflight: set[str] = field(default_factory=set)  # flow ids
    hello: Any = None  # the TLS ClientHello's data: a tunnel once `ignore_connection` is set
    on_change: Callable[[], None] | None = None  # the reader's pending deadline moves

    def __post_init__(self) -> None:
        if self.window is None:
            self.window = self.limits.head_timeout

    # ------------------------------------------------------------------ bytes and time

    def deadline(self) -> float | None:
        """When this connection must have moved on (monotonic seconds), or None."""
        if self.phase is Phase.AWAIT:
            if self.first_byte is not None and not self.multiplexed:
                return self.first_byte + self.limits.head_timeout
            assert self.window is not None
            return self.since + self.window
        if self.phase is Phase.BODY:
            silence = self.last_byte + self.limits.body_timeout
            rate = self.since + self.limits.body_timeout + self.body_bytes / MIN_BODY_RATE
            return min(silence, rate)
        return None

    def received(self, size: int, now: float) -> Reason | None:
        """`size` bytes arrived; a reason when they break a limit."""
        phase = self.phase
        if phase is Phase.TUNNEL or phase is Phase.BUSY or self.passing_through():
            return None
        if phase is Phase.BODY:
            self.body_bytes += size
            self.last_byte = now
            return None
        if size and self.first_byte is None:
            self.first_byte = now
        self.counted += size
        return self.over_limit()

    def over_limit(self) -> Reason | None:
        """HEAD_SIZE while the bytes counted since the phase began are over the cap."""
        counting = self.phase is Phase.AWAIT or self.phase is Phase.WAIT
        if counting and self.counted > self.limits.head_max_bytes and not self.passing_through():
            return Reason.HEAD_SIZE
        return None

    def expired(self, now: float) -> Reason | str | None:
        """At the deadline: why the connection goes (a Reason, or IDLE), or None."""
        due = self.deadline()
        if due is None or now < due or self.passing_through():
            return None
        if self.phase is Phase.BODY:
            return Reason.BODY_TIMEOUT
        if self.first_byte is None or self.multiplexed:
            return IDLE
        return Reason.HEAD_TIMEOUT

    def passing_through(self) -> bool:
        """Whether bytes pass through untouched now (a tunnel, bypassed TLS)."""
        if self.hello is not None and getattr(self.hello, "ignore_connection", False):
            self.phase, self.hello = Phase.TUNNEL, None
        return self.phase is Phase.TUNNEL

    # ------------------------------------------------------------------ what the hooks saw

    def request_started(
        self, flow_id: str, *, has_body: bool, multiplexed: bool, now: float
    ) -> None:
        """A request head is complete (`requestheaders`)."""
        if self.phase is Phase.TUNNEL:
            return
        self.multiplexed = self.multiplexed or multiplexed
        self.inflight.add(flow_id)
        if self.multiplexed:
            self._enter(Phase.BUSY, now)
        elif has_body:
            self._enter(Phase.BODY, now)
            self.body_bytes, self.last_byte = 0, now
        else:
            self._enter(Phase.WAIT, now)

    def request_complete(self, flow_id: str, now: float) -> None:
        """The request's body is in (`request`)."""
        if self.phase is Phase.BODY and flow_id in self.inflight:
            self._enter(Phase.WAIT, now)

    def exchange_done(self, flow_id: str, now: float, *, upgraded: bool = False) -> None:
        """A response went out, or the exchange failed (`response`, `error`)."""
        if self.phase is Phase.TUNNEL or flow_id not in self.inflight:
            return
        self.inflight.discard(flow_id)
        if upgraded:
            self.passthrough()
        elif not self.inflight:
            self._await(now, self.limits.idle_timeout)

    def tunnel_requested(self, now: float) -> None:
        """A CONNECT's head is complete: what comes next (TLS, or another request after a
        refusal) is due as promptly as a new connection's first request."""
        if self.phase is not Phase.TUNNEL:
            self._await(now, self.limits.head_timeout)

    def tls_established(self, *, multiplexed: bool, now: float) -> None:
        """The client's TLS handshake is done: it may now wait before its first request."""
        if self.phase is Phase.TUNNEL:
            return
        self.multiplexed = multiplexed
        if not self.inflight:
            self._await(now, self.limits.idle_timeout)

    def passthrough(self) -> None:
        """Raw bytes from now on: no more heads to count."""
        self.phase = Phase.TUNNEL
        self._changed()

    # ------------------------------------------------------------------ internals

    def _await(self, now: float, window: float) -> None:
        self.window = window
        self._enter(Phase.AWAIT, now)

    def _enter(self, phase: Phase, now: float) -> None:
        self.phase, self.since = phase, now
        self.counted, self.first_byte = 0, None
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


@dataclass(slots=True)
class OriginGuard:
    """A connection to a server: its response heads count against `limit` (mitmproxy reads
    a response head as it reads a request head: until it ends). Bodies, and tunnels the
    client side passes through, are not counted."""

    limit: int
    client: ConnectionGuard | None = None
    counted: int = 0
    in_body: bool = False
    on_change: Callable[[], None] | None = None

    def deadline(self) -> float | None:
        return None  # an origin may take its time (long polls); the client may give up

    def received(self, size: int, now: float) -> Reason | None:
        client = self.client
        if self.in_body or (client is not None and client.passing_through()):
            return None
        self.counted += size
        return self.over_limit()

    def over_limit(self) -> Reason | None:
        client = self.client
        if self.in_body or (client is not None and client.passing_through()):
            return None
        return Reason.ORIGIN_HEAD_SIZE if self.counted > self.limit else None

    def expired(self, now: float) -> Reason | str | None:
        return None

    def head_done(self) -> None:
        self.in_body = True

    def exchange_done(self) -> None:
        self.in_body, self.counted = False, 0
