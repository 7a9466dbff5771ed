"""Where clients may make the proxy connect. Pure (the name resolution is the caller's).

By default no client reaches, through the proxy: loopback, link-local (cloud metadata
services included), unspecified and multicast addresses, and the proxy host's own
addresses (its metrics endpoint, a local Redis, anything listening there). The policy's
`destinations` section lists exceptions (`allow`) and further refusals (`refuse`); a
refusal wins over an exception. Checked on names (IP literals in any spelling, the
`localhost` names of RFC 6761) before any connection, and on the addresses a name
resolves to, so that a name pointing at a forbidden address is refused too.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import time
from collections.abc import Callable

from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import DestinationSettings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Built-in refusals, each with the reason a record and the metric carry.
BUILT_IN: tuple[tuple[str, str], ...] = (
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("169.254.0.0/16", "link-local"),  # cloud metadata (169.254.169.254) included
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "link-local"),  # AWS's IPv6 metadata service
    ("100.100.100.200/32", "link-local"),  # Alibaba Cloud's metadata service
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("255.255.255.255/32", "multicast"),
)
REASONS = ("loopback", "unspecified", "link-local", "multicast", "proxy-host", "policy")
_BUILT_IN = tuple((ipaddress.ip_network(net), reason) for net, reason in BUILT_IN)
_LOCAL_CHECK_SECONDS = 60  # how long "is this one of our addresses" is remembered


def parse_ip(text: str) -> IPAddress | None:
    """An IP address, IPv4-mapped IPv6 as the IPv4 it is; None for anything else."""
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=4096)
def _binds(address: str, _period: int) -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((address, 0))
        except OSError:
            return False
    return True


def is_own_address(ip: IPAddress) -> bool:
    """Whether `ip` is one of this host's addresses: the kernel lets us bind to it.

    Remembered for a minute (an address added to an interface is seen within a minute)."""
    return _binds(str(ip), int(time.monotonic() // _LOCAL_CHECK_SECONDS))


class Destinations:
    """The policy's destination rules, compiled."""

    __slots__ = ("_allow", "_is_own", "_refuse")

    def __init__(
        self,
        settings: DestinationSettings,
        is_own: Callable[[IPAddress], bool] = is_own_address,
    ) -> None:
        self._allow = settings.allow
        self._refuse = settings.refuse
        self._is_own = is_own

    def refusal_for_address(self, ip: IPAddress) -> str | None:
        """Why the proxy must not connect to `ip`, or None when it may."""
        if any(ip in net for net in self._refuse):
            return "policy"
        if any(ip in net for net in self._allow):
            return None
        for net, reason in _BUILT_IN:
            if ip in net:
                return reason
        if self._is_own(ip):
            return "proxy-host"
        return None

    def refusal_for_name(self, host: str | None) -> str | None:
        """The same for a name a client gave (CONNECT target, Host, SNI), before any
        resolution: IP literals in any spelling, and the `localhost` names (RFC 6761)."""
        ip = literal_address(host)
        return self.refusal_for_address(ip) if ip is not None else None


@functools.lru_cache(maxsize=4096)
def literal_address(host: str | None) -> IPAddress | None:
    """The address a name stands for without any resolution: an IP literal in any
    spelling, 127.0.0.1 for the `localhost` names (RFC 6761); None for any other name.
    Remembered: most requests name a host, and telling one from an address costs an
    exception from `ipaddress`."""
    if not host:
        return None
    try:
        name = normalize_host(host)
    except ValueError:
        return None
    ip = parse_ip(name)
    if ip is not None:
        return ip
    if name == "localhost" or name.endswith(".localhost"):
        return ipaddress.ip_address("127.0.0.1")
    return None
