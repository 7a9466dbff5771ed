"""The access log: one ECS JSON object per line, built by a chain of structlog processors.

The record's life, in processor order: the caller's fields (`access_event`, ...) ->
`add_timestamp` -> `add_ecs_constants` -> `event_to_message` -> `enforce_privacy` (an
allow-list: only known metadata fields pass, never query strings, bodies, cookies or
credentials) -> JSON. The sink writes each line with one `write(2)` to a file that is
reopened when logrotate moves it, keeps a bounded backlog when the disk refuses, and
counts every record as written or dropped: nothing is lost silently.

No mitmproxy imports.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

import structlog

from auditproxy import __version__
from auditproxy.engine import Decision
from auditproxy.policy import LoggingSettings

logger = logging.getLogger(__name__)

ECS_VERSION = "8.11.0"
DATASET = "auditproxy.access"

# Every field a record may carry. Anything else is dropped by `enforce_privacy`.
ALLOWED_FIELDS = frozenset(
    {
        "@timestamp",
        "message",
        "ecs.version",
        "event.kind",
        "event.module",
        "event.dataset",
        "event.action",
        "event.category",
        "event.type",
        "event.outcome",
        "event.duration",
        "event.reason",
        "user.name",
        "user.hash",
        "labels.user_key_id",
        "labels.identity_source",
        "labels.identity_header",
        "labels.notice_scope",
        "labels.category",
        "labels.site",
        "labels.action",
        "source.ip",
        "url.scheme",
        "url.domain",
        "url.port",
        "url.path",
        "http.version",
        "http.request.method",
        "http.response.status_code",
        "http.response.bytes",
        "tls.client.server_name",
        "rule.ruleset",
        "rule.version",
        "rule.name",
        "rule.category",
        "error.message",
        "observer.product",
        "observer.vendor",
        "observer.version",
        "observer.hostname",
    }
)

EventDict = MutableMapping[str, Any]


# ---------------------------------------------------------------------------------------
# Processors: (logger, method_name, event_dict) -> event_dict


class _SecondCache:
    """Formatting a timestamp is the costliest step; the seconds part changes once a second."""

    second = -1
    text = ""


def add_timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    now = time.time()
    second = int(now)
    if second != _SecondCache.second:
        _SecondCache.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SecondCache.second = second
    # First in the line: people read logs too.
    return {"@timestamp": f"{_SecondCache.text}.{int((now - second) * 1000):03d}Z", **event}


_HOSTNAME = socket.gethostname()


_ECS_CONSTANTS = {
    "ecs.version": ECS_VERSION,
    "event.kind": "event",
    "event.module": "auditproxy",
    "event.dataset": DATASET,
    "observer.product": "auditproxy",
    "observer.vendor": "auditproxy",
    "observer.version": __version__,
    "observer.hostname": _HOSTNAME,
}


def add_ecs_constants(_logger: Any, _method: str, event: EventDict) -> EventDict:
    event.update(_ECS_CONSTANTS)
    return event


def event_to_message(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """structlog's positional `event` becomes ECS `message` (it would clash with `event.*`)."""
    event["message"] = event.pop("event", "")
    return event


def make_privacy_filter(settings: LoggingSettings) -> Callable[[Any, str, EventDict], EventDict]:
    """The last word on what a record may hold, whatever the code before it put there."""
    dropped = set()
    if not settings.source_ip:
        dropped.add("source.ip")
    if not settings.url_path:
        dropped.add("url.path")
    allowed = ALLOWED_FIELDS - dropped

    def enforce_privacy(_logger: Any, _method: str, event: EventDict) -> EventDict:
        for key in [k for k in event if k not in allowed]:
            del event[key]
        path = event.get("url.path")
        if path is not None:
            event["url.path"] = strip_query(path)
        return event

    return enforce_privacy


def strip_query(path: str) -> str:
    """A path without its query string, fragment or matrix parameters."""
    for sep in ("?", "#", ";"):
        cut = path.find(sep)
        if cut >= 0:
            path = path[:cut]
    return path


def _json_encoder() -> Callable[[Any], str]:
    """`json.dumps(obj, ensure_ascii=True, separators=(",", ":"), default=str)`, built once.

    `json.dumps` with options makes a new encoder for every call, a third of the cost of
    a record; this keeps one (the C encoder, when the interpreter has it)."""
    encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - a Python without the C accelerator
        return encoder.encode
    try:
        iterencode = make(
            None,  # no circular-reference markers: records are flat dicts
            encoder.default,
            json.encoder.encode_basestring_ascii,
            None,
            ":",
            ",",
            False,
            False,
            True,
        )

        def encode(obj: Any) -> str:
            return "".join(iterencode(obj, 0))

        sample = {"a": [1, "\u2028\n"], "b": None, "c": 1.5, "d": object}
        if encode(sample) != encoder.encode(sample):  # pragma: no cover
            return encoder.encode
        return encode
    except TypeError:  # pragma: no cover - another signature in another Python
        return encoder.encode


_encode_json = _json_encoder()


def render_json(_logger: Any, _method: str, event: EventDict) -> str:
    # ensure_ascii keeps any control or separator character escaped: no line injection.
    return _encode_json(event)


# ---------------------------------------------------------------------------------------
# The records


@dataclass(slots=True)
class Exchange:
    """What the log needs to know about one HTTP exchange, taken off the flow."""

    method: str
    scheme: str
    port: int
    path: str
    http_version: str
    status: int | None
    response_bytes: int | None
    duration_ns: int | None
    client_address: str
    error: str | None = None


def _rule_fields(decision: Decision) -> dict[str, Any]:
    match = decision.match
    fields: dict[str, Any] = {
        "rule.ruleset": decision.ruleset,
        "rule.version": decision.version,
        "rule.name": match.rule,
        "rule.category": match.category,
        "labels.category": match.category,
        "labels.site": match.site,
        "labels.action": decision.action_label,
        "labels.identity_source": decision.identity.source.value,
    }
    fields.update(decision.user)
    if decision.identity.untrusted_header:
        # Someone sent the front proxy's identity header straight to us: ignored, noted.
        fields["labels.identity_header"] = "ignored-untrusted-client"
    if decision.sni:
        fields["tls.client.server_name"] = decision.sni.lower()
    return fields


def access_event(decision: Decision, exchange: Exchange, action: str = "access") -> dict:
    """An `access` (or `blocked`) record for one HTTP request."""
    fields = _rule_fields(decision)
    status = exchange.status
    if exchange.error is not None or status is None or action == "blocked":
        outcome = "failure"
    else:
        outcome = "success" if status < 400 else "failure"
    fields.update(
        {
            "event.action": action,
            "event.category": ["network", "web"],
            "event.type": ["denied"] if action == "blocked" else ["access"],
            "event.outcome": outcome,
            "source.ip": exchange.client_address,
            "url.scheme": exchange.scheme,
            "url.domain": decision.host,
            "url.port": exchange.port,
            "url.path": exchange.path,
            "http.version": exchange.http_version,
            "http.request.method": exchange.method,
        }
    )
    if status is not None:
        fields["http.response.status_code"] = status
    if exchange.response_bytes is not None:
        fields["http.response.bytes"] = exchange.response_bytes
    if exchange.duration_ns is not None:
        fields["event.duration"] = exchange.duration_ns
    if exchange.error:
        fields["error.message"] = exchange.error
    if action == "blocked":
        fields["event.reason"] = (
            "client address outside the policy's allowed networks"
            if not decision.allowed_client
            else f"blocked by policy category {decision.match.category!r}"
        )
    return fields


def tunnel_event(decision: Decision, port: int, client_address: str) -> dict:
    """A `tunnel` record: a TLS connection passed through undecrypted (host and port only)."""
    fields = _rule_fields(decision)
    fields.update(
        {
            "event.action": "tunnel",
            "event.category": ["network"],
            "event.type": ["connection", "allowed"],
            "event.outcome": "success",
            "source.ip": client_address,
            "url.domain": decision.host,
            "url.port": port,
        }
    )
    return fields


def notice_event(decision: Decision, action: str, scope: str) -> dict:
    """A `notice-shown` or `notice-acknowledged` record."""
    fields = _rule_fields(decision)
    fields.update(
        {
            "event.action": action,
            "event.category": ["web"],
            "event.type": ["info"],
            "event.outcome": "success",
            "url.domain": decision.host,
            "labels.notice_scope": scope,
        }
    )
    return fields


# ---------------------------------------------------------------------------------------
# The sink


Outcome = Callable[[str], None]  # called with "written" or "dropped" for every record


class LogSink:
    """Appends lines to a file (or stdout for "-"), surviving rotation and full disks.

    - Rotation: `maintain()` (every second) notices the file was moved or removed and
      opens a new one. A file *removed* rather than moved would take with it the lines
      written since the last check, so those are kept until each check and written again
      to the new file.
    - A disk that refuses writes: records wait in a bounded backlog, written in order when
      it takes them again; beyond the bound the oldest are dropped. A write that fails
      half-way is cut back, so the log never holds a broken line.
    - Every record is counted once, `written` or `dropped`; a failure is reported through
      `on_fault` (the add-on counts it in `auditproxy_errors_total{stage="log"}`).

    Not thread-safe: the proxy calls it from its one event loop.
    """

    RECENT_LIMIT = 100_000  # lines kept between checks, for a removed file

    def __init__(
        self,
        path: str,
        on_outcome: Outcome,
        backlog_limit: int = 10_000,
        on_fault: Callable[[str], None] | None = None,
    ) -> None:
        self.path = path
        self._on_outcome = on_outcome
        self._on_fault = on_fault
        self._backlog: deque[bytes] = deque()
        self._backlog_limit = backlog_limit
        self._recent: deque[bytes] = deque(maxlen=self.RECENT_LIMIT)
        self._replayed = 0  # lines at the backlog's head that were counted already
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._broken_line = False  # a cut line could not be undone: start on a new line
        self._failing_since: float | None = None
        self._open()

    @property
    def is_stdout(self) -> bool:
        return self.path == "-"

    @property
    def healthy(self) -> bool:
        return self._failing_since is None

    @property
    def backlog(self) -> int:
        return len(self._backlog)

    def _open(self) -> None:
        if self.is_stdout:
            self._fd = 1
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        st = os.fstat(fd)
        self._close_fd()
        self._fd, self._identity = fd, (st.st_dev, st.st_ino)

    def _close_fd(self) -> None:
        if self._fd is not None and not self.is_stdout:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None

    def _rotated(self) -> bool:
        if self.is_stdout:
            return False
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        return (st.st_dev, st.st_ino) != self._identity

    def _removed(self) -> bool:
        """Whether the open file was deleted (no name left), not moved aside."""
        if self._fd is None:
            return False
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return False

    def reopen(self) -> None:
        """Reopen the file if logrotate (or anyone) moved or removed it."""
        if self.is_stdout:
            self._recent.clear()
            return
        if self._fd is not None and not self._rotated():
            self._recent.clear()  # everything since the last check is safely in the file
            return
        lost = list(self._recent) if self._removed() else []
        try:
            self._open()
        except OSError as e:
            self._failed(e)
            return
        self._recent.clear()
        logger.info("access log reopened: %s", self.path)
        if lost:
            logger.warning(
                "access log %s was removed, not rotated: writing again the %d records "
                "written to it since the last check",
                self.path,
                len(lost),
            )
            self._backlog.extendleft(reversed(lost))  # before anything still waiting
            self._replayed += len(lost)

    def maintain(self) -> None:
        """Periodic upkeep: follow rotation, then retry the backlog."""
        self.reopen()
        self._flush_backlog()

    def write(self, line: str) -> None:
        data = line.encode("utf-8") + b"\n"
        if self._backlog:
            self._flush_backlog()
        if self._backlog:
            self._enqueue(data)
            return
        try:
            self._write(data)
        except OSError as e:
            self._failed(e)
            self._enqueue(data)
        else:
            self._on_outcome("written")

    # structlog calls the method named like the log call: `access_log.info(...)`.
    info = msg = write

    def _write(self, data: bytes) -> None:
        if self._fd is None:
            self._open()
        assert self._fd is not None
        if self._broken_line:
            data = b"\n" + data
        written = 0
        while written < len(data):
            try:
                written += os.write(self._fd, data[written:])
            except OSError:
                if written:
                    self._cut_back(written)
                raise
        self._broken_line = False
        if not self.is_stdout:
            self._recent.append(data)
        if self._failing_since is not None:
            logger.warning(
                "access log %s is writable again after %.1f s; %d queued records follow",
                self.path,
                time.monotonic() - self._failing_since,
                len(self._backlog),
            )
            self._failing_since = None

    def _cut_back(self, written: int) -> None:
        """Undo the part of a line a failing write left (a full disk takes what fits)."""
        assert self._fd is not None
        try:
            os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
        except OSError:
            self._broken_line = True  # cannot undo: at least end the broken line

    def _flush_backlog(self) -> None:
        while self._backlog:
            try:
                self._write(self._backlog[0])
            except OSError as e:
                self._failed(e)
                return
            self._backlog.popleft()
            if self._replayed:
                self._replayed -= 1  # counted when first written
            else:
                self._on_outcome("written")

    def _enqueue(self, data: bytes) -> None:
        if len(self._backlog) >= self._backlog_limit:
            self._backlog.popleft()
            if self._replayed:
                self._replayed -= 1
            self._on_outcome("dropped")
        self._backlog.append(data)

    def _failed(self, error: OSError) -> None:
        if self._failing_since is not None:
            return  # one report per failure, not per record
        self._failing_since = time.monotonic()
        message = (
            f"cannot write access log {self.path}: {error.strerror or error}; "
            f"holding up to {self._backlog_limit} records in memory"
        )
        if self._on_fault is not None:
            self._on_fault(message)
        else:
            logger.warning(message)

    def close(self) -> None:
        self._flush_backlog()
        for _ in range(len(self._backlog)):
            self._on_outcome("dropped")
        if self._backlog:
            logger.error("access log closed with %d unwritten records", len(self._backlog))
        self._backlog.clear()
        self._close_fd()


class _RecordLogger(structlog.BoundLoggerBase):
    """The bound logger of the access log. `record(fields)` runs the processor chain on
    one record and hands the line to the sink, as `info(action, **fields)` would, without
    structlog's level filtering, %-interpolation and three copies of the fields through
    keyword arguments: it runs once per request."""

    def record(self, fields: dict) -> Any:
        event: Any = {**self._context, **fields, "event": fields["event.action"]}
        for processor in self._processors:
            event = processor(self._logger, "info", event)
        return self._logger.info(event)

    def info(self, event: str, **fields: Any) -> Any:
        args, kw = self._process_event("info", event, fields)
        return self._logger.info(*args, **kw)


class AccessLog:
    """The configured chain and its sink. `emit` takes a record's fields."""

    def __init__(self, sink: LogSink, settings: LoggingSettings) -> None:
        self.sink = sink
        self.settings = settings
        self._log = structlog.wrap_logger(
            sink,
            processors=[
                add_timestamp,
                add_ecs_constants,
                event_to_message,
                make_privacy_filter(settings),
                render_json,
            ],
            wrapper_class=_RecordLogger,
            cache_logger_on_first_use=True,
        ).bind()

    def with_settings(self, settings: LoggingSettings) -> AccessLog:
        """The same sink under a reloaded policy's logging settings."""
        return self if settings == self.settings else AccessLog(self.sink, settings)

    def emit(self, fields: dict) -> None:
        self._log.record(fields)
