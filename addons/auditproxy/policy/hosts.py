"""Host names, one set of rules for both sides: the policy's domains and requests' hosts.

A host is compared in one form: lower case, punycode (IDNA), no trailing dot, no port, and
IP literals in canonical form (IPv6 compressed, IPv4-mapped IPv6 as the IPv4 address, and
IPv4 in any spelling `inet_aton` accepts: 3221226250, 0xc0.0.2.10, 0300.0.2.012). The
policy side (`normalize_domain`) is stricter about what an editor may write and says why;
the request side (`normalize_host`) accepts what clients send (ports, brackets) and raises
ValueError only for what is no host at all.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket

from publicsuffixlist import PublicSuffixList

# A host whose last label is a number is an IPv4 address to browsers and to getaddrinfo,
# in any of the spellings inet_aton accepts. All must meet a rule written for 192.0.2.10.
_NUMERIC_LABEL = re.compile(r"(?:[0-9]+|0x[0-9a-f]*)\Z")
# What a requested host may be made of once lower-cased and IDNA-encoded ("_" is seen in
# the wild); anything else (controls, spaces, "*", "/") is not a host.
_HOST_CHARS = re.compile(r"[a-z0-9_.-]+\Z")
# What a policy domain's labels may be.
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


def _ipv6(text: str) -> str:
    """Canonical IPv6 (zone dropped), and IPv4-mapped addresses as the IPv4 they are."""
    ip = ipaddress.IPv6Address(text.split("%", 1)[0])
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def _ipv4(name: str, original: str) -> str:
    try:
        return socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        raise ValueError(f"not a valid IPv4 address: {original!r}") from None


def _ascii_name(name: str, original: str) -> str:
    """Lower case, IDNA-encoded, without a trailing dot; ValueError if IDNA refuses it."""
    name = name.rstrip(".").lower()
    if not name.isascii():
        try:
            # IDNA maps the ideographic full stops to "."; strip a trailing one again.
            name = name.encode("idna").decode("ascii").rstrip(".")
        except UnicodeError as e:
            raise ValueError(f"not a valid internationalised host: {original!r}") from e
    if not name:
        raise ValueError(f"empty host: {original!r}")
    return name


def _canonical(name: str, original: str) -> str:
    """An IP literal's canonical form, or the ASCII host name (not yet validated)."""
    if ":" in name:
        return _ipv6(name)
    name = _ascii_name(name, original)
    if _NUMERIC_LABEL.match(name.rpartition(".")[2]):
        return _ipv4(name, original)
    return name


@functools.lru_cache(maxsize=16384)
def normalize_host(host: str) -> str:
    """A requested host in the form hosts are compared in (see the module docstring).

    Raises ValueError for something that is not a host name at all (never cached).
    Cached: every request asks for its Host header and its URL's host, and a proxy sees
    the same few thousand hosts over and over.
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
    elif colons > 1:
        return _ipv6(h)  # a bare IPv6 literal
    name = _canonical(h, host)
    if _is_ip(name):
        return name
    if len(name) > 253 or ".." in name or name[0] == "." or not _HOST_CHARS.match(name):
        raise ValueError(f"not a valid host name: {host!r}")
    return name


def normalize_domain(value: str) -> str:
    """A policy domain in the form hosts are compared in.

    Raises ValueError with a message an editor of the policy can act on.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty domain")
    if "://" in text or "/" in text:
        raise ValueError(f"{value!r} is a URL; write the domain alone (e.g. 'facebook.com')")
    if "*" in text:
        raise ValueError(
            f"{value!r}: wildcards are not needed; a domain matches itself and its subdomains"
        )
    literal = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if literal.count(":") > 1:
        try:
            return _ipv6(literal)
        except ValueError:
            raise ValueError(f"{value!r} is not a valid IPv6 address") from None
    if ":" in text:
        raise ValueError(f"{value!r}: a port never changes the match; write the domain alone")
    try:
        name = _canonical(text, value)
    except ValueError as e:
        if "internationalised" in str(e):
            raise ValueError(f"{value!r} is not a valid internationalised domain") from None
        raise
    if _is_ip(name):
        return name
    if len(name) > 253:
        raise ValueError(f"{value!r} is longer than 253 characters")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise ValueError(f"{value!r} is not a valid domain name (label {label!r})")
    return name


def _is_ip(name: str) -> bool:
    return ":" in name or name.replace(".", "").isdigit()


_PUBLIC_SUFFIXES = PublicSuffixList()  # the list bundled with the package: no network


@functools.lru_cache(maxsize=4096)
def site_of(host: str) -> str:
    """The registrable domain ("site", as browsers mean it) of a host, by the Public
    Suffix List: `news.bbc.co.uk` -> `bbc.co.uk`, `x.github.io` -> `x.github.io`. An IP
    literal, or a name that is itself a public suffix, is its own site; a value that is
    no host is returned lower-cased as it came, so that it never equals a real site."""
    try:
        name = normalize_host(host)
    except ValueError:
        return host.strip().lower()
    if _is_ip(name):
        return name
    return _PUBLIC_SUFFIXES.privatesuffix(name) or name
