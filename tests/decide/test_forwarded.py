"""The client behind a trusted balancer (`decide.forwarded`): read from the right, believed
from trusted balancers only."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auditproxy.decide.forwarded import Forwarding, client_address
from auditproxy.decide.identity import AddressSet

BALANCERS = AddressSet((ipaddress.ip_network("10.20.0.0/29"),))


@pytest.mark.parametrize(
    ("peer", "values", "address", "forwarding"),
    [
        ("10.1.2.3", [], "10.1.2.3", None),
        ("10.1.2.3", ["192.0.2.1"], "10.1.2.3", Forwarding.UNTRUSTED),
        ("10.20.0.5", ["192.0.2.1"], "192.0.2.1", Forwarding.USED),
        ("::ffff:10.20.0.5", ["192.0.2.1"], "192.0.2.1", Forwarding.USED),
        # A client's own value on the left is never believed.
        ("10.20.0.5", ["6.6.6.6, 192.0.2.1"], "192.0.2.1", Forwarding.USED),
        ("10.20.0.5", ["6.6.6.6", "192.0.2.1"], "192.0.2.1", Forwarding.USED),
        # A chain of balancers: skip them from the right.
        ("10.20.0.5", ["192.0.2.1, 10.20.0.6"], "192.0.2.1", Forwarding.USED),
        ("10.20.0.5", ["192.0.2.1:4711"], "192.0.2.1", Forwarding.USED),
        ("10.20.0.5", ["[2001:db8::1]:4711"], "2001:db8::1", Forwarding.USED),
        ("10.20.0.5", ["2001:db8::1"], "2001:db8::1", Forwarding.USED),
        ("10.20.0.5", [""], "10.20.0.5", Forwarding.MISSING),
        ("10.20.0.5", ["unknown"], "10.20.0.5", Forwarding.INVALID),
        ("10.20.0.5", ["192.0.2.1, nonsense"], "10.20.0.5", Forwarding.INVALID),
        ("10.20.0.5", ["10.20.0.6"], "10.20.0.6", Forwarding.USED),  # a balancer host's own
    ],
)
def test_client_address(
    peer: str, values: list[str], address: str, forwarding: Forwarding | None
) -> None:
    found = client_address(peer, values, BALANCERS)
    assert (found.address, found.forwarding) == (address, forwarding)
    assert found.note == (None if forwarding in (None, Forwarding.USED) else forwarding.value)


@given(st.lists(st.text(max_size=40), max_size=5))
def test_nobody_but_a_balancer_can_choose_the_address(values: list[str]) -> None:
    assert client_address("192.0.2.77", values, BALANCERS).address == "192.0.2.77"


@given(st.lists(st.ip_addresses(v=4).map(str), min_size=1, max_size=5))
def test_behind_a_balancer_the_address_is_what_it_appended(hops: list[str]) -> None:
    found = client_address("10.20.0.1", [", ".join(hops)], BALANCERS)
    rightmost_client = next((h for h in reversed(hops) if h not in BALANCERS), hops[0])
    assert found.address == rightmost_client
