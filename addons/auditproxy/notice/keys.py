"""Whose notice, for which scope and day, and the signed link that acknowledges it. Pure.

Keyed hashes are derived from the proxy's secret (the pseudonym key file) with a purpose
label, so a state file or a token says nothing about a pseudonym, and tokens work across
restarts and across instances that share the key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date

from auditproxy.decide.decision import Decision
from auditproxy.policy.model import NoticeScope

ACK_PATH = "/.well-known/auditproxy/acknowledge"
_USERS_CACHED = 65536  # identities whose state key is kept; bounded against floods


@dataclass(frozen=True, slots=True)
class Visit:
    """One person's claim on one scope's notice for one day."""

    day: date
    user: str  # keyed hash of the identity: the state never holds a name
    scope: str  # "site:facebook", "category:social" or "all"


class NoticeKeys:
    """Keyed hashes for the notice: state user keys and acknowledgement tokens."""

    def __init__(self, secret: bytes) -> None:
        self._user_key = hmac.new(secret, b"auditproxy notice user", hashlib.sha256).digest()
        self._token_key = hmac.new(secret, b"auditproxy notice token", hashlib.sha256).digest()
        self.user = functools.lru_cache(maxsize=_USERS_CACHED)(self._user)

    def _user(self, identity: str) -> str:
        return hmac.new(self._user_key, identity.encode(), hashlib.sha256).hexdigest()[:32]

    def token(self, visit: Visit, host: str, path: str) -> str:
        message = "\0".join((visit.user, str(visit.day.toordinal()), visit.scope, host, path))
        return hmac.new(self._token_key, message.encode(), hashlib.sha256).hexdigest()[:32]


def scope_of(decision: Decision, scope: NoticeScope) -> str:
    if scope is NoticeScope.SITE:
        return f"site:{decision.match.site}"
    if scope is NoticeScope.CATEGORY:
        return f"category:{decision.match.category}"
    return "all"


def safe_return_path(path: str) -> str | None:
    """A path on the same origin, or None: never `//host`, `/\\host` or a scheme."""
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    if any(c in path for c in "\r\n\t\\") or not path.isascii():
        return None
    return path
