"""The access log: one ECS JSON object per line, built by a chain of structlog processors.

A record's life, in processor order: the ECS constants and the record's fields ->
`add_timestamp` -> structlog's `EventRenamer` (its event becomes ECS `message`) ->
`enforce_privacy` (an allow-list: only known metadata fields pass, never query strings,
bodies, cookies or credentials) -> structlog's `JSONRenderer` (with orjson, ASCII only)
-> the hash chain (`sinks.chain.LogChain`: numbers and seals the exact line) -> the file
(`sinks.logfile.LogSink`).

`AccessLog.emit` runs the processors itself, as structlog's bound logger would, without
the bound logger's copies of the record (a record is 25-35 fields; the bound logger copied
them four times, 8 us of the 26 us a record cost: bench/RESULTS.md, issue #16).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import orjson
import structlog

from auditproxy import __version__
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.paths import strip_query
from auditproxy.sinks.records import ALLOWED_FIELDS, DATASET, ECS_VERSION

EventDict = MutableMapping[str, Any]

# Bound once into the logger: the same on every record.
ECS_CONSTANTS = {
    "ecs.version": ECS_VERSION,
    "event.kind": "event",
    "event.module": "auditproxy",
    "event.dataset": DATASET,
    "observer.product": "auditproxy",
    "observer.vendor": "auditproxy",
    "observer.version": __version__,
    "observer.hostname": socket.gethostname(),
}


class _SecondCache:
    second = -1
    text = ""


def add_timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """`@timestamp`, first in the line (people read logs too), in milliseconds, UTC.

    Kept instead of structlog's `TimeStamper`, which appends the key last and formats a
    datetime on every call: 4.8 us against 0.7 us here, which formats the seconds once a
    second (bench/test_micro.py::test_timestamp_processors; bench/RESULTS.md). A record
    that already holds the key (`AccessLog` places it first) keeps its place."""
    now = time.time()
    second = int(now)
    if second != _SecondCache.second:
        _SecondCache.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SecondCache.second = second
    stamp = f"{_SecondCache.text}.{int((now - second) * 1000):03d}Z"
    if "@timestamp" in event:
        event["@timestamp"] = stamp
        return event
    return {"@timestamp": stamp, **event}


def render_json(event: EventDict, **_options: Any) -> str:
    """One JSON object on one line, ASCII only: orjson (a fifth of the time of the
    standard library's encoder on a record), and the standard library, escaping, for a
    record that holds anything orjson would write as raw UTF-8 or cannot encode (an
    integer past 64 bits). ASCII only, so that no character a reader might take for a
    line break (U+2028, U+0085) reaches the file unescaped: no line injection."""
    try:
        data = orjson.dumps(event, default=str)
    except TypeError:
        data = b"\x80"  # not ASCII: the standard library's turn
    if data.isascii():
        return data.decode("ascii")
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str)


def make_privacy_filter(settings: LoggingSettings) -> Callable[[Any, str, EventDict], EventDict]:
    """The last word on what a record may hold, whatever the code before it put there."""
    dropped = set()
    if not settings.source_ip:
        dropped.add("source.ip")
    if not settings.url_path:
        dropped.add("url.path")
    allowed = ALLOWED_FIELDS - dropped

    def enforce_privacy(_logger: Any, _method: str, event: EventDict) -> EventDict:
        if not event.keys() <= allowed:
            for key in [k for k in event if k not in allowed]:
                del event[key]
        path = event.get("url.path")
        if path is not None:
            event["url.path"] = strip_query(path)
        return event

    return enforce_privacy


def processors(
    settings: LoggingSettings, chain: LogChain | None = None
) -> list[Callable[..., Any]]:
    """The processors, in the order a record goes through them. The hash chain comes
    last, after the allow-list (its fields are its own) and the renderer (it seals the
    line exactly as written)."""
    return [
        add_timestamp,
        structlog.processors.EventRenamer("message"),
        make_privacy_filter(settings),
        structlog.processors.JSONRenderer(render_json),
        *([chain] if chain is not None else []),
    ]


class AccessLog:
    """The configured processors, the file's hash chain and the file. `emit` takes a
    record's fields."""

    def __init__(
        self, sink: LogSink, settings: LoggingSettings, chain: LogChain | None = None
    ) -> None:
        self.sink = sink
        self.settings = settings
        self.chain = chain
        self._processors = tuple(processors(settings, chain))
        # Every record starts as this: `@timestamp` first, then the constants.
        self._template = {"@timestamp": "", **ECS_CONSTANTS}

    def with_settings(self, settings: LoggingSettings) -> AccessLog:
        """The same file and hash chain under a reloaded policy's logging settings."""
        if settings == self.settings:
            return self
        return AccessLog(self.sink, settings, self.chain)

    def emit(self, fields: dict) -> None:
        try:
            event: Any = {**self._template, **fields, "event": fields["event.action"]}
            for processor in self._processors:
                event = processor(self.sink, "info", event)
            self.sink.write(event)
        except Exception:
            self.sink.lost()  # a processor failed: still counted once (then a fault)
            raise
