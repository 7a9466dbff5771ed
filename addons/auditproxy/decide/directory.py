"""Directory groups for a Kerberos principal, from Active Directory or OpenLDAP (ldap3).

Groups choose per-group policy, but they never decide whether a page loads: every failure
fails open to "no groups" with a typed reason the caller counts. Lookups run off the event
loop in a small bounded pool (``offload``), with a deadline; answers are cached with a TTL
(failures for less time), and after the server was found down or slow, uncached lookups
answer at once for ``failure_ttl`` seconds instead of each waiting for the deadline.

Nested groups: Active Directory resolves them itself with ``LDAP_MATCHING_RULE_IN_CHAIN``;
OpenLDAP accepts that filter and silently matches nothing, so ``auto`` asks the root DSE
(AD announces capability 1.2.840.113556.1.4.800) and otherwise walks ``member`` upwards,
one search per level, bounded in depth and count (cycles are harmless). ``ldap3`` is pure
Python (no compiler), and mitmproxy already depends on it.
"""

from __future__ import annotations

import asyncio
import math
import ssl
import string
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from .offload import Busy, Offload

AD_CAPABILITY = "1.2.840.113556.1.4.800"
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"
ACTIVE_DIRECTORY_USER_FILTER = (
    "(&(objectClass=user)(|(userPrincipalName={principal})(sAMAccountName={user})))"
)
OPENLDAP_USER_FILTER = "(uid={user})"
_FIELDS = {"user", "principal", "realm"}
_BATCH = 50  # DNs per OR filter in the iterative walk


class Reason(StrEnum):
    """Why a lookup gave these groups: a metric label, never a user."""

    OK = "ok"
    USER_NOT_FOUND = "user_not_found"
    BIND_FAILED = "bind_failed"
    SERVER_DOWN = "server_down"
    TIMEOUT = "timeout"
    BUSY = "busy"
    ERROR = "error"


class Nesting(StrEnum):
    AUTO = "auto"  # ask the server: in_chain on Active Directory, iterative elsewhere
    IN_CHAIN = "in_chain"
    ITERATIVE = "iterative"


@dataclass(frozen=True, slots=True)
class Group:
    name: str  # cn
    dn: str


@dataclass(frozen=True, slots=True)
class Membership:
    """A person's groups (empty on any failure: fail open) and why."""

    reason: Reason
    groups: tuple[Group, ...] = ()
    user_dn: str | None = None
    detail: str = ""
    cached: bool = False
    truncated: bool = False  # a depth or count bound was reached: there may be more

    @property
    def ok(self) -> bool:
        return self.reason is Reason.OK

    @property
    def names(self) -> frozenset[str]:
        return frozenset(group.name for group in self.groups)


@dataclass(frozen=True, slots=True)
class DirectorySettings:
    """``user_filter`` is a template with ``{user}``, ``{principal}`` and ``{realm}``
    (``alice``, ``alice@EXAMPLE.TEST``, ``EXAMPLE.TEST``), each escaped before use.
    Invalid settings raise ``ValueError`` (for ``OptionsError``)."""

    url: str
    base_dn: str
    bind_dn: str | None = None
    bind_password: str | None = field(default=None, repr=False)
    user_filter: str = OPENLDAP_USER_FILTER
    group_base_dn: str | None = None
    group_filter: str = "(|(objectClass=group)(objectClass=groupOfNames))"
    nesting: Nesting = Nesting.AUTO
    max_depth: int = 5
    max_groups: int = 256
    start_tls: bool = False
    ca_file: str | None = None
    timeout: float = 2.0
    cache_ttl: float = 300.0
    failure_ttl: float = 30.0
    cache_size: int = 10_000
    workers: int = 4
    queue: int = 32

    def __post_init__(self) -> None:
        if not self.url.startswith(("ldap://", "ldaps://")):
            raise ValueError(f"directory url must start with ldap:// or ldaps://: {self.url!r}")
        names = {name for _, name, _, _ in string.Formatter().parse(self.user_filter) if name}
        if not names or not names <= _FIELDS or not self.user_filter.startswith("("):
            raise ValueError(
                f"user filter {self.user_filter!r}: a (filter) using only {{user}}, "
                "{principal} and {realm}"
            )
        if min(self.max_depth, self.max_groups, self.cache_size) < 1 or self.timeout <= 0:
            raise ValueError("max_depth, max_groups, cache_size and timeout must be positive")


def user_filter(template: str, principal: str) -> str:
    """The user search filter for ``principal``, every value escaped (RFC 4515)."""
    user, _, realm = principal.rpartition("@") if "@" in principal else (principal, "", "")
    return template.format(
        user=escape_filter_chars(user),
        principal=escape_filter_chars(principal),
        realm=escape_filter_chars(realm),
    )


def in_chain_filter(group_filter: str, user_dn: str) -> str:
    """Active Directory's filter for every group ``user_dn`` belongs to, at any depth."""
    return f"(&{group_filter}(member:{IN_CHAIN_RULE}:={escape_filter_chars(user_dn)}))"


class _SearchFailed(Exception):
    """A search answered with an error (a wrong base DN, no right to read)."""


class Directory:
    """Async, cached, bounded group look-ups. Use from one event loop; ``clock`` is
    injectable (monotonic seconds) so tests control the TTLs."""

    def __init__(
        self, settings: DirectorySettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._cache: OrderedDict[str, tuple[float, Membership]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[Membership]] = {}
        self._unavailable: tuple[float, Membership] | None = None
        self._pool = Offload("directory", settings.workers, settings.queue)
        self._in_chain: bool | None = {Nesting.IN_CHAIN: True, Nesting.ITERATIVE: False}.get(
            settings.nesting
        )

    async def groups(self, principal: str) -> Membership:
        """The groups of ``principal``; never raises, never waits past the deadline."""
        key = principal.casefold()
        now = self._clock()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(key)
            return replace(hit[1], cached=True)
        if self._unavailable is not None and self._unavailable[0] > now:
            return replace(self._unavailable[1], cached=True)
        if key in self._inflight:  # one look-up per person at a time
            return await asyncio.shield(self._inflight[key])
        future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._run(principal)
            self._remember(key, result)
            future.set_result(result)
        finally:
            del self._inflight[key]
            if not future.done():  # this caller was cancelled: the others still get an answer
                future.set_result(Membership(Reason.ERROR, detail="look-up cancelled"))
        return result

    async def _run(self, principal: str) -> Membership:
        timeout = self.settings.timeout
        try:
            return await self._pool.run(lambda: self.lookup(principal), timeout)
        except Busy:
            return Membership(Reason.BUSY, detail=f"{self._pool.pending} look-ups pending")
        except TimeoutError:
            return Membership(Reason.TIMEOUT, detail=f"no answer within {timeout}s")
        except Exception as exc:
            return Membership(Reason.ERROR, detail=f"{type(exc).__name__}: {exc}"[:300])

    def _remember(self, key: str, result: Membership) -> None:
        now, settings = self._clock(), self.settings
        if result.reason in (Reason.SERVER_DOWN, Reason.TIMEOUT):
            self._unavailable = (now + settings.failure_ttl, result)
        elif result.reason is not Reason.BUSY:
            self._unavailable = None
        if result.reason in (Reason.OK, Reason.USER_NOT_FOUND):
            ttl = settings.cache_ttl if result.ok else settings.failure_ttl
            self._cache[key] = (now + ttl, result)
            self._cache.move_to_end(key)
            while len(self._cache) > settings.cache_size:
                self._cache.popitem(last=False)

    @property
    def pending(self) -> int:
        return self._pool.pending

    def close(self) -> None:
        self._pool.close()

    def lookup(self, principal: str) -> Membership:
        """One uncached look-up (blocking; ``groups`` runs it in a worker)."""
        s = self.settings
        deadline = time.monotonic() + s.timeout
        # Certificates are always verified (ldap3's default is not to), against ca_file or
        # the system's CAs: the bind password must not go to an impostor.
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=s.ca_file)
        server = ldap3.Server(s.url, connect_timeout=s.timeout, get_info=ldap3.NONE, tls=tls)
        conn = ldap3.Connection(
            server,
            user=s.bind_dn,
            password=s.bind_password,
            receive_timeout=max(1, math.ceil(s.timeout)),  # ldap3 takes whole seconds here
            raise_exceptions=False,
            read_only=True,
            auto_referrals=False,  # AD refers to other partitions: never chase them
        )
        try:
            conn.open()
            if s.start_tls and not conn.start_tls():
                return Membership(Reason.ERROR, detail=f"StartTLS: {conn.result}")
            if not conn.bind():
                return Membership(Reason.BIND_FAILED, detail=_describe(conn))
            return self._search(conn, principal, deadline)
        except ldap_errors.LDAPSocketOpenError as exc:
            # A refused certificate is a configuration error, not an outage.
            tls_refused = "certificate" in str(exc).lower()
            reason = Reason.ERROR if tls_refused else Reason.SERVER_DOWN
            return Membership(reason, detail=str(exc)[:300])
        except ldap_errors.LDAPCommunicationError as exc:
            reason = Reason.TIMEOUT if "timed out" in str(exc) else Reason.SERVER_DOWN
            return Membership(reason, detail=str(exc)[:300])
        except TimeoutError:
            return Membership(Reason.TIMEOUT, detail=f"deadline of {s.timeout}s passed")
        except (ldap_errors.LDAPException, _SearchFailed) as exc:
            return Membership(Reason.ERROR, detail=f"{type(exc).__name__}: {exc}"[:300])
        finally:
            conn.unbind()

    def _search(self, conn: ldap3.Connection, principal: str, deadline: float) -> Membership:
        s = self.settings
        query = user_filter(s.user_filter, principal)
        _before(deadline)
        conn.search(s.base_dn, query, attributes=[], size_limit=2)
        found = _entries(conn)
        if len(found) != 1:  # the detail never names the person (logs may be pseudonymous)
            what = "no entry" if not found else "several entries"
            return Membership(Reason.USER_NOT_FOUND, detail=f"{what} matches the user filter")
        user_dn = found[0]["dn"]
        if self._in_chain is None:
            self._in_chain = _is_active_directory(conn)
        walk = self._in_chain_groups if self._in_chain else self._iterative_groups
        groups, truncated = walk(conn, user_dn, deadline)
        return Membership(Reason.OK, tuple(groups), user_dn, truncated=truncated)

    def _in_chain_groups(
        self, conn: ldap3.Connection, user_dn: str, deadline: float
    ) -> tuple[list[Group], bool]:
        s = self.settings
        _before(deadline)
        query = in_chain_filter(s.group_filter, user_dn)
        conn.search(s.group_base_dn or s.base_dn, query, attributes=["cn"], size_limit=s.max_groups)
        return [_group(e) for e in _entries(conn)], _size_exceeded(conn)

    def _iterative_groups(
        self, conn: ldap3.Connection, user_dn: str, deadline: float
    ) -> tuple[list[Group], bool]:
        """Breadth first, one OR search per level and batch; stops at the bounds."""
        s = self.settings
        found: dict[str, Group] = {}
        frontier = [user_dn]
        for _ in range(s.max_depth):
            upper: list[str] = []
            for start in range(0, len(frontier), _BATCH):
                members = "".join(
                    f"(member={escape_filter_chars(dn)})" for dn in frontier[start : start + _BATCH]
                )
                query = f"(&{s.group_filter}(|{members}))"
                base = s.group_base_dn or s.base_dn
                _before(deadline)
                conn.search(base, query, attributes=["cn"], size_limit=s.max_groups + 1)
                for entry in _entries(conn):
                    group = _group(entry)
                    if group.dn.lower() not in found:
                        found[group.dn.lower()] = group
                        upper.append(group.dn)
                    if len(found) >= s.max_groups:
                        return list(found.values()), True
            frontier = upper
            if not frontier:
                return list(found.values()), False
        return list(found.values()), True  # parents of the last level were not searched


def _before(deadline: float) -> None:
    """Stop a walk that has used up its time (the caller has given up on it already)."""
    if time.monotonic() > deadline:
        raise TimeoutError


def _entries(conn: ldap3.Connection) -> list[dict]:
    if conn.result.get("description") not in ("success", "sizeLimitExceeded"):
        raise _SearchFailed(_describe(conn))
    return [r for r in conn.response or () if r.get("type") == "searchResEntry"]


def _size_exceeded(conn: ldap3.Connection) -> bool:
    return conn.result.get("description") == "sizeLimitExceeded"


def _group(entry: dict) -> Group:
    cn = entry.get("attributes", {}).get("cn") or [entry["dn"]]
    return Group(str(cn[0] if isinstance(cn, list) else cn), entry["dn"])


def _is_active_directory(conn: ldap3.Connection) -> bool:
    conn.search("", "(objectClass=*)", ldap3.BASE, attributes=["supportedCapabilities"])
    for entry in _entries(conn):
        if AD_CAPABILITY in entry.get("attributes", {}).get("supportedCapabilities", []):
            return True
    return False


def _describe(conn: ldap3.Connection) -> str:
    result = conn.result or {}
    return f"{result.get('description')}: {result.get('message', '')}".strip()[:300]
