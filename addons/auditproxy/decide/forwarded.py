"""The real client behind a load balancer: `X-Forwarded-For`, believed from trusted
balancers only. Pure.

Why not the PROXY protocol: mitmproxy 12 cannot read it (its issue #4776), and an add-on
cannot add it through the add-on API: the connection's first layer is made by the server
instance (`ServerInstance.handle_stream` -> `make_top_layer`) and `client_connected` runs
before any byte is read, with the balancer's address (docs/scaling.md has the details).
An HTTP-mode balancer (HAProxy `option forwardfor`) adds the client's address to every
request it forwards, the `CONNECT` of a tunnel included; the requests inside a tunnel
inherit the `CONNECT`'s.

The header is read from the right: each trusted balancer appends the address it received
the request from, so the rightmost address is what the nearest balancer saw; while that is
itself a trusted balancer (a chain of them), go one further left. The first address that is
not a balancer is the client. Whatever a client wrote further left is never believed; from
a connection that is not a trusted balancer the header is not believed at all.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from enum import StrEnum

from auditproxy.decide.identity import canonical_address, parse_address

HEADER = "X-Forwarded-For"
MAX_HOPS = 16  # addresses looked at, from the right; more is a broken or hostile header


class Forwarding(StrEnum):
    """How the client's address was found (`labels.forwarded`, a metric label)."""

    USED = "used"  # from a trusted balancer's X-Forwarded-For
    MISSING = "missing"  # a trusted balancer sent none: the balancer's own request
    INVALID = "invalid"  # a trusted balancer sent something that is not an address
    UNTRUSTED = "ignored-untrusted-client"  # sent by a client that is not a trusted balancer


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The address a request is from (the client's, or the peer's), and how it was found."""

    address: str
    forwarding: Forwarding | None = None  # None: no balancer involved, no header

    @property
    def note(self) -> str | None:
        """What the record says (`labels.forwarded`): only what is worth a look."""
        if self.forwarding in (None, Forwarding.USED):
            return None
        return self.forwarding.value


def client_address(peer: str, values: Sequence[str], balancers: Container[str]) -> ClientAddress:
    """The client behind `peer`. `values`: every X-Forwarded-For header line, in order;
    `balancers`: the trusted balancers' addresses (an `AddressSet`)."""
    peer = canonical_address(peer)
    if peer not in balancers:
        return ClientAddress(peer, Forwarding.UNTRUSTED if values else None)
    hops = [hop.strip() for value in values for hop in value.split(",")]
    if not hops or hops == [""]:
        return ClientAddress(peer, Forwarding.MISSING)
    address = peer
    for hop in reversed(hops[-MAX_HOPS:]):
        ip = parse_address(_without_port(hop))
        if ip is None:
            return ClientAddress(peer, Forwarding.INVALID)
        address = str(ip)
        if address not in balancers:
            break
    # Every hop a balancer: the request came from a balancer's own host (the leftmost).
    return ClientAddress(address, Forwarding.USED)


def _without_port(hop: str) -> str:
    """`192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` and `2001:db8::1` -> the address
    (RFC 7239 style ports, which some balancers add)."""
    if hop.startswith("["):
        return hop[1:].partition("]")[0]
    if hop.count(":") == 1:
        return hop.partition(":")[0]
    return hop
