"""Who may open a connection, and how many: the proxy's admission, as data. Pure.

Checked when a client connects (mitmproxy's `client_connected`), before a byte is read:

    client          outside the policy's `clients` networks (with `clients.refuse: connect`)
    limit-global    the proxy holds `max_connections` client connections already
    limit-files     open descriptors would eat into the reserve kept for /metrics, /healthz,
                    the log, the state and the policy
    limit-address   this address holds `max_connections_per_client` (front proxies named in
                    `identity.trusted_proxies` are exempt: every user comes through them)

and, on the way, by each connection's `guard.ConnectionGuard`: head-size, head-timeout,
body-timeout. `origin-head-size` is an origin's response head over its cap. The reasons are
a fixed vocabulary: they are metric labels and `labels.refusal` values.
"""

from __future__ import annotations

import resource
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    CLIENT = "client"
    LIMIT_GLOBAL = "limit-global"
    LIMIT_FILES = "limit-files"
    LIMIT_ADDRESS = "limit-address"
    HEAD_SIZE = "head-size"
    HEAD_TIMEOUT = "head-timeout"
    BODY_TIMEOUT = "body-timeout"
    ORIGIN_HEAD_SIZE = "origin-head-size"

    @property
    def text(self) -> str:
        return _TEXTS[self]


_TEXTS = {
    Reason.CLIENT: "client address outside the policy's allowed networks",
    Reason.LIMIT_GLOBAL: "the proxy holds its maximum number of client connections",
    Reason.LIMIT_FILES: "open files are at the reserve kept for health, metrics and logs",
    Reason.LIMIT_ADDRESS: "this client address holds its maximum number of connections",
    Reason.HEAD_SIZE: "request head over the size limit",
    Reason.HEAD_TIMEOUT: "request head not complete within the time limit",
    Reason.BODY_TIMEOUT: "request body too slow (idle, or under the minimum rate)",
    Reason.ORIGIN_HEAD_SIZE: "origin's response head over the size limit",
}

MIN_BODY_RATE = 500  # bytes/s a request body must average: each 500 bytes buy a second
AUTO_MAX_CONNECTIONS = 16_384  # ~18 KiB each while idle: ~300 MB, more than a core serves


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force (mitmproxy options `auditproxy_*`, see `options.py`)."""

    max_connections: int = 0  # client connections; 0: from the open-file limit
    max_per_client: int = 256  # per client address; 0: no limit
    head_max_bytes: int = 64 * 1024
    origin_head_max_bytes: int = 256 * 1024
    head_timeout: float = 10.0  # a request head, from its first byte (a new connection's too)
    idle_timeout: float = 60.0  # between requests on a kept-alive connection
    body_timeout: float = 30.0  # a request body's silence; see MIN_BODY_RATE
    file_reserve: int = 64  # descriptors kept free for everything but client connections


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one; returns (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard
    if target == resource.RLIM_INFINITY:  # Linux refuses more than fs.nr_open
        target = _nr_open()
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def _nr_open() -> int:
    try:
        with open("/proc/sys/fs/nr_open", "rb") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 1 << 20


def file_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _nr_open() if soft == resource.RLIM_INFINITY else soft


class Admission:
    """Counts of open connections against the limits; decides each new client connection.

    `files` is the open-descriptor count as last measured (`measured`), moved by every
    connection opened or closed since, so that a burst between two measurements is seen.
    """

    def __init__(self, limits: Limits, files_limit: int) -> None:
        self.limits = limits
        self.files_limit = files_limit
        self.clients = 0
        self.servers = 0
        self.per_address: Counter[str] = Counter()
        self._files_base = 0  # descriptors other than client and server connections

    @property
    def max_connections(self) -> int:
        """The client connections allowed: as configured, or half of what the open-file
        limit leaves after the reserve (each client may need a connection to a server), at
        most AUTO_MAX_CONNECTIONS."""
        if self.limits.max_connections:
            return self.limits.max_connections
        by_files = (self.files_limit - self.limits.file_reserve) // 2
        return max(1, min(by_files, AUTO_MAX_CONNECTIONS))

    @property
    def files(self) -> int:
        return self._files_base + self.clients + self.servers

    def measured(self, open_files: int) -> None:
        """A fresh count of the process's open descriptors (taken off the event loop)."""
        self._files_base = max(0, open_files - self.clients - self.servers)

    def files_left(self) -> int:
        """Descriptors free before the reserve is reached."""
        return self.files_limit - self.limits.file_reserve - self.files

    def admit(
        self, address: str, *, allowed: bool, refuse_outsiders: bool, trusted: bool
    ) -> Reason | None:
        """None (admitted and counted: call `release` when it closes) or why not."""
        if not allowed and refuse_outsiders:
            return Reason.CLIENT
        if self.clients >= self.max_connections:
            return Reason.LIMIT_GLOBAL
        if self.files_left() < 2:  # the client's socket and one to a server
            return Reason.LIMIT_FILES
        cap = self.limits.max_per_client
        if cap and not trusted and self.per_address[address] >= cap:
            return Reason.LIMIT_ADDRESS
        self.clients += 1
        self.per_address[address] += 1
        return None

    def release(self, address: str) -> None:
        self.clients = max(0, self.clients - 1)
        left = self.per_address[address] - 1
        if left > 0:
            self.per_address[address] = left
        else:
            self.per_address.pop(address, None)

    def server_allowed(self) -> bool:
        """Whether a connection to a server may open (half the reserve stays untouched)."""
        return self.files_left() + self.limits.file_reserve // 2 >= 1
