"""Where clients may make the proxy connect: the built-in refusals, the policy's
exceptions and refusals, names checked before resolution."""

from __future__ import annotations

import ipaddress

import pytest

from auditproxy.decide.destinations import Destinations, is_own_address, parse_ip
from auditproxy.policy.model import DestinationSettings


def ip(text: str):
    return ipaddress.ip_address(text)


NOT_OURS = Destinations(DestinationSettings(), is_own=lambda _ip: False)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
    ],
)
def test_built_in_refusals(address: str, reason: str) -> None:
    assert NOT_OURS.refusal_for_address(ip(address)) == reason


@pytest.mark.parametrize("address", ["10.1.2.3", "192.168.0.1", "8.8.8.8", "2001:db8::1"])
def test_ordinary_addresses_are_reachable(address: str) -> None:
    assert NOT_OURS.refusal_for_address(ip(address)) is None


def test_the_proxy_hosts_own_addresses_are_refused() -> None:
    ours = Destinations(DestinationSettings(), is_own=lambda a: str(a) == "10.0.0.5")
    assert ours.refusal_for_address(ip("10.0.0.5")) == "proxy-host"
    assert ours.refusal_for_address(ip("10.0.0.6")) is None


def test_is_own_address_asks_the_kernel() -> None:
    assert is_own_address(ip("127.0.0.1"))
    assert not is_own_address(ip("192.0.2.77"))  # TEST-NET-1: never configured here


def test_policy_exceptions_and_refusals_refusal_wins() -> None:
    settings = DestinationSettings(
        allow=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8")),
        refuse=(ipaddress.ip_network("10.66.0.0/16"),),
    )
    rules = Destinations(settings, is_own=lambda _ip: False)
    assert rules.refusal_for_address(ip("127.0.0.1")) is None
    assert rules.refusal_for_address(ip("10.66.1.1")) == "policy"
    assert rules.refusal_for_address(ip("10.1.1.1")) is None


@pytest.mark.parametrize(
    "name",
    [
        "127.0.0.1",
        "2130706433",  # 127.0.0.1 as one number
        "0x7f.1",
        "0177.0.0.1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "localhost",
        "LOCALHOST.",
        "evil.localhost",
        "169.254.169.254",
    ],
)
def test_names_that_are_forbidden_addresses_in_any_spelling(name: str) -> None:
    assert NOT_OURS.refusal_for_name(name) is not None


@pytest.mark.parametrize("name", ["www.facebook.com", "10.1.2.3", "localhost.example.com", ""])
def test_other_names_are_left_to_resolution(name: str) -> None:
    assert NOT_OURS.refusal_for_name(name) is None


def test_parse_ip_maps_ipv4_in_ipv6_and_drops_zones() -> None:
    assert str(parse_ip("::ffff:10.1.2.3")) == "10.1.2.3"
    assert str(parse_ip("fe80::1%eth0")) == "fe80::1"
    assert parse_ip("www.example.com") is None
