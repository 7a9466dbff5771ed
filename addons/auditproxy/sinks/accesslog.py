"""The access log: one ECS JSON object per line, built by a chain of structlog processors.

A record's life, in processor order: the bound ECS constants and the record's fields ->
`add_timestamp` -> structlog's `EventRenamer` (its positional event becomes ECS `message`)
-> `enforce_privacy` (an allow-list: only known metadata fields pass, never query
strings, bodies, cookies or credentials) -> structlog's `JSONRenderer` -> the hash chain
(`sinks.chain.LogChain`: numbers and seals the exact line) -> the file
(`sinks.logfile.LogSink`, structlog's logger here).
"""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

from auditproxy import __version__
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import ALLOWED_FIELDS, DATASET, ECS_VERSION, strip_query

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
    second (bench/test_micro.py::test_timestamp_processors; bench/RESULTS.md)."""
    now = time.time()
    second = int(now)
    if second != _SecondCache.second:
        _SecondCache.text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SecondCache.second = second
    return {"@timestamp": f"{_SecondCache.text}.{int((now - second) * 1000):03d}Z", **event}


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
        # ensure_ascii keeps any control or separator character escaped: no line injection.
        structlog.processors.JSONRenderer(
            json.dumps, ensure_ascii=True, separators=(",", ":"), default=str
        ),
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
        self._log = structlog.wrap_logger(
            sink,
            processors=processors(settings, chain),
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
            cache_logger_on_first_use=True,
        ).bind(**ECS_CONSTANTS)

    def with_settings(self, settings: LoggingSettings) -> AccessLog:
        """The same file and hash chain under a reloaded policy's logging settings."""
        if settings == self.settings:
            return self
        return AccessLog(self.sink, settings, self.chain)

    def emit(self, fields: dict) -> None:
        try:
            self._log.info(fields["event.action"], **fields)
        except Exception:
            self.sink.lost()  # a processor failed: still counted once (then a fault)
            raise
