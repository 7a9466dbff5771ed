"""Whose notice, for which scope and period, and the signed link that acknowledges it. Pure.

Keyed hashes are derived from the proxy's secret (the pseudonym key file) with a purpose
label, so a state file or a token says nothing about a pseudonym, and tokens work across
restarts and across instances that share the key.

A period is named by its first day (`policy.days.period_start`): a day, a week or a month,
as the policy's `notice.interval` says. The state's keys and the link's `d` are that day.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlsplit

from auditproxy.decide.decision import Decision
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import NoticeScope

OWN_PREFIX = "/.well-known/auditproxy/"  # the proxy's own paths, on monitored sites only
ACK_PATH = OWN_PREFIX + "acknowledge"
RECORD_PATH = OWN_PREFIX + "recorded"  # "what is recorded about me"
_USERS_CACHED = 65536  # identities whose state key is kept; bounded against floods
_ACKNOWLEDGED = "acknowledged|"  # the state's scope for an acknowledgement


@dataclass(frozen=True, slots=True)
class Visit:
    """One person's claim on one scope's notice for one period."""

    day: date  # the period's first day
    user: str  # keyed hash of the identity: the state never holds a name
    scope: str  # "site:facebook", "category:social" or "all"
    # A certain top-level page (fetch metadata says so): only such a page claims the period.
    # Without fetch metadata (plain HTTP) a frame looks like a page: it may show the
    # notice, but never uses it up.
    certain: bool = True

    def acknowledgement(self) -> Visit:
        """The state's key for this person's acknowledgement: one per scope and period."""
        return Visit(self.day, self.user, _ACKNOWLEDGED + self.scope)


class NoticeKeys:
    """Keyed hashes for the notice: state user keys and acknowledgement tokens."""

    def __init__(self, secret: bytes) -> None:
        self._user_key = hmac.new(secret, b"auditproxy notice user", hashlib.sha256).digest()
        self._token_key = hmac.new(secret, b"auditproxy notice token", hashlib.sha256).digest()
        self._confirm_key = hmac.new(
            secret, b"auditproxy notice confirmation", hashlib.sha256
        ).digest()
        self.user = functools.lru_cache(maxsize=_USERS_CACHED)(self._user)

    def _user(self, identity: str) -> str:
        return hmac.new(self._user_key, identity.encode(), hashlib.sha256).hexdigest()[:32]

    def token(self, visit: Visit, host: str, path: str) -> str:
        message = "\0".join((visit.user, str(visit.day.toordinal()), visit.scope, host, path))
        return hmac.new(self._token_key, message.encode(), hashlib.sha256).hexdigest()[:32]

    def confirmation(self, token: str, issued_ms: int, step: int) -> str:
        """The second token, of a confirmation page's own form: it appears only in that
        page (an opaque origin no script can read), so having it shows that the person
        answered there. It signs which page (`step`) and when it was made (`issued_ms`,
        the proxy's clock)."""
        message = f"{token}\0{issued_ms}\0{step}".encode()
        return hmac.new(self._confirm_key, message, hashlib.sha256).hexdigest()[:32]

    def reading_code(self, token: str, issued_ms: int) -> str:
        """The number the "I understand" page shows, which the person types: only someone
        who sees that page (an opaque origin no script of the site can read) knows it, so
        a decoy that covers the page or drives the person's keys blind cannot answer."""
        message = f"code\0{token}\0{issued_ms}".encode()
        digest = hmac.new(self._confirm_key, message, hashlib.sha256).digest()
        return f"{int.from_bytes(digest[:4], 'big') % 10**CODE_DIGITS:0{CODE_DIGITS}d}"


CODE_DIGITS = 3  # a blind guess is right once in a thousand tries, each a new page


def scope_of(decision: Decision, scope: NoticeScope) -> str:
    if scope is NoticeScope.SITE:
        return f"site:{decision.match.site}"
    if scope is NoticeScope.CATEGORY:
        return f"category:{decision.match.category}"
    return "all"


def acknowledgement_scope(scope: str) -> str:
    return _ACKNOWLEDGED + scope


WRONG_NUMBERS = 3  # wrong numbers a person may type for a scope in a period, then no more


def wrong_number_scope(scope: str, n: int) -> str:
    """The state's mark of the `n`th wrong number typed for `scope` this period (1 to
    `WRONG_NUMBERS`): blind guesses are few, whoever drives them."""
    return f"wrong{n}:{scope}"


def safe_return_target(target: str, host: str) -> str | None:
    """Where an acknowledgement returns: a path on the same origin, or the same host over
    plain HTTP (a link on an http:// page is followed over https, where the browser sends
    fetch metadata). Never another host, `//host`, a scheme other than http, or controls."""
    if target.startswith("/"):
        return safe_return_path(target)
    if not target.startswith("http://") or not target.isascii():
        return None
    if any(c in target for c in "\r\n\t\\@"):
        return None
    try:
        parts = urlsplit(target)
        same = parts.hostname is not None and normalize_host(parts.hostname) == host
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError:
        return None
    path = target[len("http://") + len(parts.netloc) :]
    if not same or parts.username is not None or safe_return_path(path or "/") is None:
        return None
    return target


def safe_return_path(path: str) -> str | None:
    """A path on the same origin, or None: never `//host`, `/\\host` or a scheme."""
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    if any(c in path for c in "\r\n\t\\") or not path.isascii():
        return None
    return path
