"""What the pipeline learnt about one flow: one object under one `flow.metadata` key.

Each stage reads what the stages before it left and adds its own part; the recorder
(`sinks.recorder`) turns the finished object into the access record and the metrics.
Pure: no mitmproxy imports (the hooks in `addon.py` create it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from auditproxy.decide.auth import AuthNote, ConnectionAuth
from auditproxy.decide.decision import Decision
from auditproxy.decide.forwarded import ClientAddress
from auditproxy.notice.keys import Visit

KEY = "auditproxy"  # the flow.metadata key


class Answered(StrEnum):
    """Why the proxy answered a request itself instead of relaying it."""

    BLOCKED = "blocked"  # a `block` category: the block page
    REFUSED = "refused"  # a client outside the policy's networks
    AUTH_REQUIRED = "auth_required"  # 407: proxy authentication asked for
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
class Counts:
    """Messages and bytes through a connection, each way (the messages are not kept)."""

    messages_from_client: int = 0
    messages_from_server: int = 0
    bytes_from_client: int = 0
    bytes_from_server: int = 0

    def add(self, from_client: bool, size: int) -> None:
        if from_client:
            self.messages_from_client += 1
            self.bytes_from_client += size
        else:
            self.messages_from_server += 1
            self.bytes_from_server += size


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
    traffic: Counts | None = None  # a WebSocket or raw TCP flow: what went through it
    started: bool = False  # a raw TCP flow's first bytes were recorded (its start record)
    recorded: bool = False  # the recorder wrote its record
    # Who, before decide (`addon_identity`): the request's own client (behind a trusted
    # balancer, the forwarded address) and what proxy authentication proved.
    client: ClientAddress | None = None
    auth: AuthNote | None = None

    def header(self, name: bytes) -> str | None:
        """A request header's first value by lower-case name."""
        value = self.headers.get(name)
        return value.decode("utf-8", "surrogateescape") if value is not None else None


@dataclass(slots=True)
class ConnectionState:
    """What the pipeline knows about one client connection across its requests."""

    # The CONNECT that made this connection a tunnel, and who opened it (proxy
    # authentication, a front proxy's header on the CONNECT): the identity of the
    # requests inside it, where the front proxy can no longer see.
    connect_decision: Decision | None = None
    connect_port: int | None = None
    tunnel_user: str | None = None
    tunnel_header: str | None = None
    # The TLS connection's decision at its ClientHello (classified by every name).
    tls_decision: Decision | None = None
    # Server connections refused before they opened, by the address asked for: why.
    refused: dict[tuple[str, int], str] = field(default_factory=dict)
    records: int = 0  # records written for this connection (an idle tunnel gets one)
    # Who: proxy authentication on this connection, and for a tunnel what its CONNECT
    # said (the client behind a balancer, the proof, the person's directory groups).
    auth: ConnectionAuth = field(default_factory=ConnectionAuth)
    tunnel_client: ClientAddress | None = None
    tunnel_auth: AuthNote | None = None
    tunnel_groups: tuple[str, ...] = ()

    @property
    def in_tunnel(self) -> bool:
        return self.connect_decision is not None

    def decision(self) -> Decision | None:
        """The decision that governs the connection as a whole: its TLS ClientHello's (which
        saw every name) or else its CONNECT's."""
        return self.tls_decision or self.connect_decision
