"""The shared notice state on Redis: several proxy instances, one "seen today".

With one process the embedded SQLite store (`notice.store.SQLiteState`) is enough. Behind a load
balancer a person's pages go to whichever instance is free, so the instances must agree on
who has had today's notice: `RedisState` keeps the same `NoticeState` interface on a Redis
server they all share.

- A first visit is `SET key 1 NX EXAT <end of the day in the policy's timezone + grace>`:
  atomic on the server, so of two instances racing for the same person's first page exactly
  one wins. The key carries the day, so a key that outlives its day never matters; expiry
  only collects garbage, and `prune` has nothing to do.
- Keys: `auditproxy:notice:<day ordinal>:<scope>:<user>`. The user is already a keyed hash
  (see `notice.keys.NoticeKeys`): nothing personal reaches Redis. All instances must share the
  pseudonym key, or each one hashes the same person differently.
- Every call is bounded: the proxy calls the store from its event loop, where a blocking
  call stalls every connection. Socket timeouts are short (100 ms by default) and the client
  never retries on its own; a failure raises, and `notice.store.Resilient` (what the add-on uses)
  answers from memory until Redis is back, then hands the claims it made meanwhile to Redis.

The `redis` client is an optional extra (`pip install 'auditproxy[redis]'`); it is imported
only when a Redis store is opened. No mitmproxy imports.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from zoneinfo import ZoneInfo

UTC = ZoneInfo("UTC")
logger = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss")  # rediss: TLS
DEFAULT_PORT = 6379
DEFAULT_TIMEOUT = 0.1  # seconds: a slow Redis costs a page at most about this, then memory
DEFAULT_RETRY_AFTER = 5.0  # seconds on the memory fallback before trying Redis again
EXPIRY_GRACE = 3600  # seconds a key outlives its day: clock skew between hosts and Redis
KEY_PREFIX = "auditproxy:notice"
PASSWORD_ENV = "REDIS_PASSWORD"
PASSWORD_FILE_ENV = "REDIS_PASSWORD_FILE"
HAND_BACK_BATCH = 500  # claims per pipeline when memory's claims go back to Redis
SENTINEL_TTL = 2 * 86400  # seconds; refreshed at every check, so only dead instances' expire
_LIMITS = {"timeout": (0.005, 5.0), "retry_after": (0.1, 3600.0)}


def is_state_url(value: str) -> bool:
    """Whether an `auditproxy_state` value names a Redis server rather than a file."""
    return value.strip().lower().startswith(tuple(f"{s}://" for s in SCHEMES))


@dataclass(frozen=True)
class RedisSettings:
    """Where the shared store is and how long to wait for it. `repr` hides the password."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = DEFAULT_TIMEOUT
    retry_after: float = DEFAULT_RETRY_AFTER

    def describe(self) -> str:
        """The URL without credentials or options, for log lines."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{host}:{self.port}/{self.db}"


def parse_state_url(value: str, environ: Mapping[str, str] | None = None) -> RedisSettings:
    """`redis://[[USER]:PASSWORD@]HOST[:PORT][/DB][?timeout=S&retry_after=S]` -> settings.

    `rediss://` uses TLS. Without a password in the URL, `REDIS_PASSWORD` or the file named
    by `REDIS_PASSWORD_FILE` gives it (better: a URL is seen in `ps` and unit files).
    `timeout` bounds each call to Redis (default 0.1 s); `retry_after` is how long the proxy
    stays on its memory fallback after a failure before trying Redis again (default 5 s).
    Raises ValueError with a message a person can act on; never one containing the password.
    """
    environ = os.environ if environ is None else environ
    shape = "expected redis://HOST:PORT/DB or rediss://HOST:PORT/DB"
    try:
        url = urlsplit(value.strip())
    except ValueError:
        raise ValueError(f"not a usable Redis URL (malformed host); {shape}") from None
    if url.scheme not in SCHEMES:
        raise ValueError(f"not a Redis URL (scheme {url.scheme!r}); {shape}")
    try:
        port = url.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError("the Redis URL's port must be a number from 1 to 65535")
    if not url.hostname:
        raise ValueError(f"the Redis URL has no host; {shape}")
    if url.fragment:
        raise ValueError("the Redis URL has a fragment (#...); remove it")
    return RedisSettings(
        host=url.hostname,
        port=DEFAULT_PORT if port is None else port,
        db=_database(url.path),
        tls=url.scheme == "rediss",
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else _password_from(environ),
        **_options(url.query),
    )


def _database(path: str) -> int:
    number = path.strip("/") or "0"
    if not (number.isascii() and number.isdigit()):
        raise ValueError(f"the Redis database must be a number (redis://HOST:PORT/0), not {path!r}")
    return int(number)


def _options(query: str) -> dict[str, float]:
    options: dict[str, float] = {}
    try:
        pairs = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"the Redis URL's options are malformed: {query!r}") from None
    for name, values in pairs.items():
        if name not in _LIMITS:
            allowed = ", ".join(sorted(_LIMITS))
            raise ValueError(f"unknown Redis URL option {name!r} (known: {allowed})")
        low, high = _LIMITS[name]
        try:
            (number,) = (float(v) for v in values)
        except ValueError:
            raise ValueError(f"Redis URL option {name} must be given once, in seconds") from None
        if not low <= number <= high:
            raise ValueError(f"Redis URL option {name} must be between {low} and {high} seconds")
        options[name] = number
    return options


def _password_from(environ: Mapping[str, str]) -> str | None:
    if environ.get(PASSWORD_ENV):
        return environ[PASSWORD_ENV]
    path = environ.get(PASSWORD_FILE_ENV)
    if not path:
        return None
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or type(e).__name__
        raise ValueError(f"cannot read the Redis password file {path} ({reason})") from None
    if not secret:
        raise ValueError(f"the Redis password file {path} is empty")
    return secret


def end_of_day(day: date, tz: ZoneInfo) -> float:
    """The instant `day` ends in `tz` (its next midnight), as a Unix timestamp.

    Same rule as `days.Calendar`: a day with a daylight-saving change is 23 or 25 hours long.
    """
    following = day + timedelta(days=1)
    return datetime(following.year, following.month, following.day, tzinfo=tz).timestamp()


def notice_key(day: date, user: str, scope: str) -> str:
    return f"{KEY_PREFIX}:{day.toordinal()}:{scope}:{user}"


def sentinel_key(instance: str) -> str:
    """One process's sentinel: while it exists, Redis still holds what this process wrote."""
    return f"{KEY_PREFIX}:sentinel:{instance}"


def require_client() -> None:
    """Raise RuntimeError, saying what to install, if the `redis` package is missing."""
    if importlib.util.find_spec("redis") is None:
        raise RuntimeError(
            "the Redis notice state needs the redis package: pip install 'auditproxy[redis]'"
        )


def _redis_client(settings: RedisSettings) -> Any:
    """A client that fails fast: short socket timeouts and no retries of its own.

    Built by redis-py's own `Redis.from_url`. The URL is validated by `parse_state_url`
    first: redis-py's parser accepts what must be refused (`redis:///0` silently means
    localhost, `redis://cache/one` silently means database 0).
    """
    require_client()
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.describe(),  # scheme, host, port and database; never the credentials
        username=settings.username,
        password=settings.password,
        socket_timeout=settings.timeout,
        socket_connect_timeout=settings.timeout,
        retry=Retry(NoBackoff(), 0),  # redis-py retries up to 10 times with backoff otherwise
        health_check_interval=0,
        client_name="auditproxy",
    )


class RedisState:
    """`NoticeState` on a Redis server that several proxy instances share.

    `day_end(day)` is the Unix time at which `day` ends in the policy's timezone (the add-on
    passes `end_of_day` with the calendar's timezone, read at each call so that a policy
    reload with another timezone applies). Raises on any fault (redis.RedisError, OSError);
    `notice.store.Resilient` turns those into the memory fallback.
    """

    def __init__(
        self,
        settings: RedisSettings,
        day_end: Callable[[date], float],
        *,
        grace: float = EXPIRY_GRACE,
        client: Any = None,
        sentinel: str | None = None,
    ) -> None:
        self.settings = settings
        self._day_end = day_end
        self._grace = grace
        self._sentinel = sentinel
        self._client = client if client is not None else _redis_client(settings)
        self.was_empty = False  # the sentinel was missing: Redis lost what we wrote before
        try:
            self._client.ping()  # fail here, in Resilient's open, not on someone's page
            if sentinel is not None:
                self.was_empty = bool(self._touch_sentinel())
        except BaseException:
            self.close()
            raise

    def _touch_sentinel(self) -> bool:
        """Make sure the sentinel exists (and lives on); True if it had to be created."""
        pipe = self._client.pipeline(transaction=False)
        pipe.set(self._sentinel, b"1", nx=True, ex=SENTINEL_TTL)
        pipe.expire(self._sentinel, SENTINEL_TTL)
        created, _ = pipe.execute()
        return bool(created)

    def lost(self) -> str | None:
        """`flushed` when the sentinel is gone: Redis restarted without its data, or
        someone flushed it. One round trip; the caller runs it off the event loop."""
        if self._sentinel is None:
            return None
        return "flushed" if self._touch_sentinel() else None

    def expires_at(self, day: date) -> int:
        """When a claim for `day` expires (Unix seconds): the day's end plus the grace."""
        return math.ceil(self._day_end(day) + self._grace)

    def _lifetime(self, day: date) -> int:
        """Seconds a claim lives, by this host's clock (Redis's own may differ)."""
        return max(1, math.ceil(self.expires_at(day) - time.time()))

    def seen(self, day: date, user: str, scope: str) -> bool:
        return bool(self._client.exists(notice_key(day, user, scope)))

    def claim(self, day: date, user: str, scope: str) -> bool:
        key = notice_key(day, user, scope)
        return bool(self._client.set(key, b"1", nx=True, ex=self._lifetime(day)))

    def release(self, day: date, user: str, scope: str) -> None:
        self._client.delete(notice_key(day, user, scope))

    def prune(self, before: date) -> int:
        """Nothing to do: every key expires by itself after its day."""
        return 0

    def adopt(self, claims: Iterable[tuple[date, str, str]], now: float | None = None) -> int:
        """Record claims made elsewhere (the memory fallback) unless Redis has them already.

        Claims whose day is over are left out. Returns how many were new to Redis.
        """
        now = time.time() if now is None else now
        live = [(notice_key(*c), self.expires_at(c[0]) - now) for c in claims]
        live = [(key, math.ceil(left)) for key, left in live if left > 0]
        added = 0
        for start in range(0, len(live), HAND_BACK_BATCH):
            pipe = self._client.pipeline(transaction=False)
            for key, left in live[start : start + HAND_BACK_BATCH]:
                pipe.set(key, b"1", nx=True, ex=left)
            added += sum(1 for ok in pipe.execute() if ok)
        return added

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()
