"""Who is asking: proxy authentication, a trusted front proxy's header, or the address.

And how they appear in the log: by name, or as a keyed pseudonym (HMAC-SHA256) that only
someone holding the key can match to a person (`auditproxy pseudonym --key FILE NAME`).

No mitmproxy imports.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from auditproxy.decide.names import mixed_scripts, normalize_name
from auditproxy.policy.files import read_regular
from auditproxy.policy.model import IdentitySettings, IdentitySource, IPNetwork, LogAs, NameCase

MAX_NAME_LENGTH = 256
ADDRESS_PREFIX = "address:"  # an address identity's key: never equal to a user's name
KEY_MAX_BYTES = 4096  # a key file is 65 bytes; anything much larger is not one
# Per-request lookups are cached: a department has far fewer people and addresses than
# requests. Bounded, so a flood of new names or addresses cannot grow memory.
_CACHE_LIMIT = 65536


class IgnoredHeader(StrEnum):
    """Why a front proxy's identity header was ignored (`labels.identity_header`)."""

    UNTRUSTED_CLIENT = "ignored-untrusted-client"  # not from a trusted front proxy
    INSIDE_TUNNEL = "ignored-inside-tunnel"  # inside a TLS tunnel the front proxy cannot see


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is asking. A user's `name` is normalised (`decide.names`); an address is an
    identity of another type, so a user named `10.1.2.3` is never the client at 10.1.2.3."""

    name: str  # user name, or the client address when nobody authenticated
    source: IdentitySource
    # The identity header was ignored (and stripped): worth a line in the log.
    ignored_header: IgnoredHeader | None = None
    mixed_scripts: str | None = None  # e.g. "cyrillic+latin": a look-alike name, flagged

    @property
    def key(self) -> str:
        """What keys the pseudonym, the notice and the daily count: typed by source."""
        if self.source is IdentitySource.ADDRESS:
            return ADDRESS_PREFIX + self.name
        return self.name

    @property
    def untrusted_header(self) -> bool:
        return self.ignored_header is not None


class AddressSet:
    """A set of CIDRs with a bounded cache: membership costs a dict lookup per request."""

    __slots__ = ("_cached", "_networks")

    def __init__(self, networks: tuple[IPNetwork, ...]) -> None:
        self._networks = networks
        self._cached = functools.lru_cache(maxsize=_CACHE_LIMIT)(self._lookup)

    def __contains__(self, address: str) -> bool:
        return self._cached(address)

    def _lookup(self, address: str) -> bool:
        ip = parse_address(address)
        return ip is not None and any(ip in net for net in self._networks)


def parse_address(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address, with IPv4-mapped IPv6 (dual-stack sockets) turned back into IPv4."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


@functools.lru_cache(maxsize=_CACHE_LIMIT)
def canonical_address(address: str) -> str:
    """The address as logged (IPv4-mapped IPv6 as IPv4); asked twice a request."""
    ip = parse_address(address)
    return str(ip) if ip is not None else address


def clean_name(value: str | None) -> str | None:
    """A user name fit for the log, or None: no control characters, bounded length."""
    if value is None:
        return None
    name = value.strip()
    if not name or len(name) > MAX_NAME_LENGTH or not name.isprintable():
        return None
    return name


class IdentityResolver:
    """Applies the policy's identity sources, in order, to one request."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        self.header = settings.header
        self._trusted = AddressSet(settings.trusted_proxies)
        self._sources = settings.sources
        self._fold_case = settings.case is NameCase.INSENSITIVE

    def resolve(
        self,
        proxyauth_user: str | None,
        header_value: str | None,
        client_address: str,
        *,
        inner_header: str | None = None,
    ) -> Identity:
        """`header_value`: the front proxy's header where that proxy could see it (a plain
        request, or the CONNECT that opened this tunnel); `inner_header`: one sent inside a
        decrypted tunnel, which the front proxy never saw: never trusted, noted if it
        names someone else."""
        # Noted whichever source wins: a client that sends the front proxy's header
        # itself is worth a line in the log even when it also authenticated.
        ignored = None
        if IdentitySource.HEADER in self._sources:
            if header_value is not None and client_address not in self._trusted:
                ignored, header_value = IgnoredHeader.UNTRUSTED_CLIENT, None
            elif inner_header is not None and inner_header != header_value:
                ignored = IgnoredHeader.INSIDE_TUNNEL
        for source in self._sources:
            if source is IdentitySource.PROXY_AUTH:
                name = self._name(proxyauth_user)
                if name is not None:
                    return Identity(name, source, ignored, mixed_scripts(name))
            elif source is IdentitySource.HEADER:
                name = self._name(header_value)
                if name is not None:
                    return Identity(name, source, ignored, mixed_scripts(name))
            else:
                return Identity(canonical_address(client_address), source, ignored)
        # No source matched (e.g. only proxy_auth configured and none given).
        return Identity(canonical_address(client_address), IdentitySource.ADDRESS, ignored)

    def _name(self, value: str | None) -> str | None:
        """Normalised first (NFKC can turn one character into a space and a mark), then
        checked for what the log accepts."""
        if value is None or len(value) > 4 * MAX_NAME_LENGTH:
            return None
        return clean_name(normalize_name(value, self._fold_case))


class Pseudonymizer:
    """HMAC-SHA256 of a user name under a secret key, identified by the key's fingerprint.

    The key id lets an investigator tell which key a record was written under after a
    rotation, without the log revealing anything about the key.
    """

    DIGEST_HEX = 32  # 128 bits: collisions are not a concern for a department

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("pseudonym key must be at least 16 bytes")
        self._key = key
        self.key_id = hashlib.sha256(b"auditproxy-key-id\0" + key).hexdigest()[:12]
        self._cached = functools.lru_cache(maxsize=_CACHE_LIMIT)(self._digest)

    def __call__(self, name: str) -> str:
        return self._cached(name)

    def _digest(self, name: str) -> str:
        digest = hmac.new(self._key, name.encode("utf-8"), hashlib.sha256).hexdigest()
        return digest[: self.DIGEST_HEX]


def user_fields(identity: Identity, log_as: LogAs, pseudonymize: Pseudonymizer | None) -> dict:
    """The access log's user fields for one identity."""
    if log_as is LogAs.NAME or pseudonymize is None:
        return {"user.name": identity.name}
    return {"user.hash": pseudonymize(identity.key), "labels.user_key_id": pseudonymize.key_id}


# ---------------------------------------------------------------------------------------
# The key file


def load_key(path: str | Path, *, create: bool = False) -> bytes:
    """Read the pseudonym key; with `create`, make a new random one if there is none.

    The file holds the key as hex (64 hex digits for a new key). It must be readable by
    its owner only: a key that anyone on the host can read makes pseudonyms pointless.
    Raises ValueError with a message IT can act on.
    """
    p = Path(path).expanduser()
    if create and not p.exists():
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first; read theirs
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    try:
        raw, st = read_regular(p, KEY_MAX_BYTES)  # never waits on a FIFO put in its place
    except FileNotFoundError as e:
        raise ValueError(f"pseudonym key {p} does not exist") from e
    except OSError as e:
        raise ValueError(f"cannot read pseudonym key {p}: {e.strerror or e}") from e
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ValueError(
            f"pseudonym key {p} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
            f"run: chmod 600 {p}"
        )
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = text
    if len(key) < 16:
        raise ValueError(f"pseudonym key {p} is too short (at least 16 bytes, or 32 hex digits)")
    return key
