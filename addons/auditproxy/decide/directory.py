"""Directory groups for a Kerberos principal, from Active Directory or OpenLDAP (ldap3).

Groups choose per-group policy, but they never decide whether a page loads: every failure
fails open to "no groups" with a typed reason the caller counts. Lookups run off the event
loop in a small bounded pool (``offload``), with a deadline; answers are cached with a TTL
(failures for less time), and after the server was found down or slow, uncached lookups
answer at once for ``failure_ttl`` seconds instead of each waiting for the deadline.

Nested groups: Active Directory resolves them itself with ``LDAP_MATCHING_RULE_IN_CHAIN``;
elsewhere ``member`` is walked upwards, bounded (`decide.ldap_search`, the blocking half).
``ldap3`` is pure Python (no compiler), and mitmproxy already depends on it.

`cached` answers from the cache without waiting, so that a person whose groups are known
costs the request nothing but a dictionary look-up; `groups` waits (at most the deadline).
"""

from __future__ import annotations

import asyncio
import string
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum

from ldap3.utils.conv import escape_filter_chars

from auditproxy.decide.offload import Busy, Offload

AD_CAPABILITY = "1.2.840.113556.1.4.800"
IN_CHAIN_RULE = "1.2.840.113556.1.4.1941"
ACTIVE_DIRECTORY_USER_FILTER = (
    "(&(objectClass=user)(|(userPrincipalName={principal})(sAMAccountName={user})))"
)
OPENLDAP_USER_FILTER = "(uid={user})"
_FIELDS = {"user", "principal", "realm"}


class Reason(StrEnum):
    """Why a lookup gave these groups: a metric label, never a user."""

    OK = "ok"
    USER_NOT_FOUND = "user_not_found"
    BIND_FAILED = "bind_failed"
    SERVER_DOWN = "server_down"
    TIMEOUT = "timeout"
    BUSY = "busy"
    ERROR = "error"
    FOREIGN_REALM = "foreign_realm"  # a principal of another realm: not looked up


def foreign_realm(principal: str, home_realm: str | None) -> bool:
    """Whether ``principal`` belongs to a realm other than ``home_realm`` (the policy's
    `auth: realm`). Such a person is not looked up: filters on the bare name (``{user}``:
    `uid`, `sAMAccountName`) would find the local account of the same name and give its
    groups, and its policy, to someone else. Without a home realm, nothing is foreign."""
    if home_realm is None or "@" not in principal:
        return False
    return principal.rpartition("@")[2].casefold() != home_realm.casefold()


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
        from auditproxy.decide.ldap_search import GroupSearch  # it imports this module

        self._search = GroupSearch(settings)

    def cached(self, principal: str) -> Membership | None:
        """The answer in the cache (or the recent outage's), without waiting; None: ask."""
        now = self._clock()
        hit = self._cache.get(principal.casefold())
        if hit is not None and hit[0] > now:
            return replace(hit[1], cached=True)
        if self._unavailable is not None and self._unavailable[0] > now:
            return replace(self._unavailable[1], cached=True)
        return None

    async def groups(self, principal: str) -> Membership:
        """The groups of ``principal``; never raises, never waits past the deadline."""
        key = principal.casefold()
        known = self.cached(principal)
        if known is not None:
            if key in self._cache:
                self._cache.move_to_end(key)
            return known
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
        return self._search.lookup(principal)
