"""The blocking half of `decide.directory`: one LDAP look-up of a person's groups (ldap3).

Bind with the read-only account, find the one user entry the filter names, then the
groups: Active Directory resolves nesting itself (``LDAP_MATCHING_RULE_IN_CHAIN``); OpenLDAP
accepts that filter and silently matches nothing, so ``auto`` asks the root DSE (AD announces
capability 1.2.840.113556.1.4.800) and otherwise walks ``member`` upwards, one search per
level, bounded in depth and count (cycles are harmless). Runs in a worker thread
(`decide.offload`), with a deadline checked between searches.

Certificates are always verified (ldap3's default is not to), against the CA file or the
system's CAs. ldap3 checks the host name with its own backport of Python 3.4's
``match_hostname``, which never accepts an IP address: name the server by DNS.
"""

from __future__ import annotations

import math
import ssl
import time

import ldap3
from ldap3.core import exceptions as ldap_errors
from ldap3.utils.conv import escape_filter_chars

from auditproxy.decide.directory import (
    AD_CAPABILITY,
    DirectorySettings,
    Group,
    Membership,
    Nesting,
    Reason,
    in_chain_filter,
    user_filter,
)

_BATCH = 50  # DNs per OR filter in the iterative walk


class _SearchFailed(Exception):
    """A search answered with an error (a wrong base DN, no right to read)."""


class GroupSearch:
    """Blocking look-ups with one configuration; remembers whether the server is AD."""

    def __init__(self, settings: DirectorySettings) -> None:
        self.settings = settings
        self._in_chain: bool | None = {Nesting.IN_CHAIN: True, Nesting.ITERATIVE: False}.get(
            settings.nesting
        )

    def lookup(self, principal: str) -> Membership:
        """One uncached look-up (blocking: run it in a worker)."""
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
            return self._find(conn, principal, deadline)
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

    def _find(self, conn: ldap3.Connection, principal: str, deadline: float) -> Membership:
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
