"""Host normalisation and the domain-suffix index: which policy rule does a host fall under?

A lookup walks the host's suffixes label by label ("a.b.facebook.com", "b.facebook.com",
"facebook.com", "com") in one dict, so its cost depends on the host's length and never on
the number of rules. Only whole labels are compared: "notfacebook.com" never matches
"facebook.com". The most specific domain wins, so a policy may carve a subdomain out of a
site ("business.facebook.com" under another category).

No mitmproxy imports.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from auditproxy.policy import Action, Policy, Site

OTHER = "other"  # category and site label for everything the policy does not name


@dataclass(frozen=True, slots=True)
class Match:
    """What the policy says about one host."""

    category: str
    site: str
    action: Action
    rule: str  # "category/site", or "default"
    notice: bool  # a monitored site where the daily notice applies

    @classmethod
    def for_site(cls, site: Site) -> Match:
        return cls(site.category, site.name, site.action, site.rule_name, site.notice)

    @classmethod
    def default(cls, action: Action) -> Match:
        return cls(OTHER, OTHER, action, "default", False)


@functools.lru_cache(maxsize=16384)
def normalize_host(host: str) -> str:
    """The form hosts are compared in: lower case, punycode, no trailing dot, no port.

    IP literals (IPv4, IPv6 with or without brackets) come back in canonical form.
    Raises ValueError for something that is not a host name at all (never cached).
    Cached: every request asks for its Host header and its URL's host, and a proxy
    sees the same few thousand hosts over and over.
    """
    h = host.strip()
    if not h:
        raise ValueError("empty host")
    if h[0] == "[":  # "[2001:db8::1]" or "[2001:db8::1]:443"
        end = h.find("]")
        if end < 0:
            raise ValueError(f"unterminated IPv6 literal: {host!r}")
        return _ipv6(h[1:end])
    colons = h.count(":")
    if colons == 1:
        h, port = h.split(":")
        if port and not port.isdigit():
            raise ValueError(f"bad port in host: {host!r}")
    elif colons > 1:  # bare IPv6 literal
        return _ipv6(h)
    h = h.rstrip(".").lower()
    if not h:
        raise ValueError(f"empty host: {host!r}")
    if not h.isascii():
        try:
            # IDNA maps the ideographic full stops to "."; strip a trailing one again.
            h = h.encode("idna").decode("ascii").rstrip(".")
        except UnicodeError as e:
            raise ValueError(f"not a valid internationalised host: {host!r}") from e
        if not h:
            raise ValueError(f"empty host: {host!r}")
    if _NUMERIC_LABEL.match(h.rpartition(".")[2]):
        return _ipv4(h, host)
    if len(h) > 253 or ".." in h or h[0] == "." or not _HOST_CHARS.match(h):
        raise ValueError(f"not a valid host name: {host!r}")
    return h


# A host whose last label is a number is an IPv4 address to browsers and to getaddrinfo,
# in any of the spellings inet_aton accepts: 3221226250, 0xc0.0.2.10, 0300.0.2.012,
# 192.0.522. All must meet a rule written for 192.0.2.10.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
# What a host name may be made of once lower-cased and IDNA-encoded ("_" is seen in the
# wild); anything else (controls, spaces, "*", "/") is not a host.
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+\Z")


def _ipv4(h: str, host: str) -> str:
    try:
        return socket.inet_ntoa(socket.inet_aton(h))
    except OSError:
        raise ValueError(f"not a valid IPv4 address: {host!r}") from None


def _ipv6(text: str) -> str:
    """Canonical IPv6, and IPv4-mapped addresses as the IPv4 address they are."""
    ip = ipaddress.IPv6Address(text.split("%", 1)[0])
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


class Classifier:
    """The policy's domains in a suffix index."""

    __slots__ = ("_default", "_index")

    def __init__(self, policy: Policy) -> None:
        self._default = Match.default(policy.default_action)
        index: dict[str, Match] = {}
        for site in policy.sites:
            match = Match.for_site(site)
            for domain in site.domains:
                index[domain] = match
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, host: str) -> Match:
        """Classify an already normalised host (see `normalize_host`)."""
        index = self._index
        while True:
            match = index.get(host)
            if match is not None:
                return match
            dot = host.find(".")
            if dot < 0:
                return self._default
            host = host[dot + 1 :]

    def classify(self, host: str) -> Match:
        """Classify a host as it comes (any case, trailing dot, port, IDN, IP literal).

        Something that is not a host at all falls under the default action.
        """
        try:
            return self.lookup(normalize_host(host))
        except ValueError:
            return self._default

    def classify_url(self, url: str) -> tuple[str, Match]:
        """(normalised host, match) for a URL; a bare host name is accepted too."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.netloc.rsplit("@", 1)[-1]
        normalized = normalize_host(host)
        return normalized, self.lookup(normalized)


def stricter(a: Match, b: Match) -> Match:
    """The match whose action is stricter; `a` on a tie.

    Used when two names for one connection disagree (the TLS server name and the Host
    header): a client must not escape monitoring by fronting a bypassed domain.
    """
    return b if b.action.strictness > a.action.strictness else a
