"""What the pipeline learnt about one flow: one object under one `flow.metadata` key.

Each stage reads what the stages before it left and adds its own part; the recorder
(`sinks.recorder`) turns the finished object into the access record and the metrics.
Pure: no mitmproxy imports (the hooks in `addon.py` create it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from auditproxy.decide.decision import Decision
from auditproxy.notice.keys import Visit

KEY = "auditproxy"  # the flow.metadata key


class Answered(StrEnum):
    """Why the proxy answered a request itself instead of relaying it."""

    BLOCKED = "blocked"  # a `block` category: the block page
    REFUSED = "refused"  # a client outside the policy's networks
    NOTICE_LINK = "notice_link"  # the notice's acknowledgement link (or a refused one)


class ByteCounter:
    """Stands in as `response.stream` to count bytes of a streamed body as they pass."""

    __slots__ = ("inner", "total")

    def __init__(self, inner: Callable[[bytes], Any] | None) -> None:
        self.inner = inner
        self.total = 0

    def __call__(self, chunk: bytes) -> Any:
        self.total += len(chunk)
        return self.inner(chunk) if self.inner is not None else chunk


@dataclass(slots=True)
class FlowState:
    """One request's way through the pipeline."""

    headers: dict[bytes, bytes]  # the request's headers by lower-case name (first value)
    decision: Decision | None = None  # decide: classify -> identify -> decide
    answered: Answered | None = None  # enforce or notice: the proxy answered itself
    acknowledged_scope: str | None = None  # notice: its record is `notice-acknowledged`
    notice_visit: Visit | None = None  # notice: this response may carry the notice
    notice_shown: Visit | None = None  # notice: it went into this response
    notice_styled: bool = True  # notice: with its styles (False: a CSP forbids them)
    streamed: ByteCounter | None = None  # the body was streamed: its size is counted here
    recorded: bool = False  # the recorder wrote its record

    def header(self, name: bytes) -> str | None:
        """A request header's first value by lower-case name."""
        value = self.headers.get(name)
        return value.decode("utf-8", "surrogateescape") if value is not None else None


@dataclass(slots=True)
class ConnectionState:
    """What the pipeline knows about one client connection across its requests."""

    # Who opened the tunnel (proxy authentication, a front proxy's header on the CONNECT):
    # the identity of the requests inside it.
    tunnel_user: str | None = None
    tunnel_header: str | None = None
    # The TLS connection's decision at its ClientHello (classified by every name).
    tls_decision: Decision | None = None
