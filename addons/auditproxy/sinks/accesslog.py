"""The access log: one ECS JSON object per line, built by a chain of structlog processors.

A record's life, in processor order: the ECS constants and the record's fields ->
`add_timestamp` -> structlog's `EventRenamer` (its event becomes ECS `message`) ->
`enforce_privacy` (an allow-list: only known metadata fields pass, never query strings,
bodies, cookies or credentials) -> structlog's `JSONRenderer` (with orjson, ASCII only)
-> the hash chain (`sinks.chain.LogChain`: numbers and seals the exact line) -> the file
(`sinks.logfile.LogSink`).

`AccessLog.emit` does what that chain does in one function, without the calls between
the steps (issue #16): the record goes as bytes from orjson to the file, sealed as bytes,
never decoded and encoded again. The processors stay the reference: a record that holds a
key the chain writes itself (`@timestamp`, `message`, `event`) goes through them, and
tests/sinks/test_accesslog.py checks that both write the same bytes.
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
from auditproxy.decide.decision import Decision
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.paths import strip_query
from auditproxy.sinks.records import ALLOWED_FIELDS, DATASET, ECS_VERSION, rule_fields

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
    head = b""  # `{"@timestamp":"` and the second, formatted once a second


_MILLIS = tuple(b"%03d" % ms for ms in range(1000))


def line_head() -> bytes:
    """A line's start up to `@timestamp`'s closing quote: now, in milliseconds, UTC; the
    seconds formatted once a second, the milliseconds from a table."""
    now = time.time()
    second = int(now)
    if second != _SecondCache.second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _SecondCache.head, _SecondCache.second = b'{"@timestamp":"%b.' % text.encode(), second
    ms = int((now - second) * 1000)
    return b'%b%bZ"' % (_SecondCache.head, _MILLIS[ms] if 0 <= ms < 1000 else b"%03d" % ms)


def timestamp() -> str:
    """Now, as `@timestamp` (`line_head`'s)."""
    return line_head()[15:-1].decode()


def add_timestamp(_logger: Any, _method: str, event: EventDict) -> EventDict:
    """`@timestamp`, first in the line (people read logs too), in milliseconds, UTC.

    Kept instead of structlog's `TimeStamper`, which appends the key last and formats a
    datetime on every call: 4.8 us against 0.7 us here, which formats the seconds once a
    second (bench/test_micro.py::test_timestamp_processors; bench/RESULTS.md). A record
    that already holds the key (`AccessLog` places it first) keeps its place."""
    stamp = timestamp()
    if "@timestamp" in event:
        event["@timestamp"] = stamp
        return event
    return {"@timestamp": stamp, **event}


def render_bytes(event: EventDict) -> bytes:
    """`render_json`, as the ASCII bytes written."""
    try:
        data = orjson.dumps(event, default=str)
    except TypeError:
        data = b"\x80"  # not ASCII: the standard library's turn
    if data.isascii():
        return data
    return json.dumps(event, ensure_ascii=True, separators=(",", ":"), default=str).encode()


def render_json(event: EventDict, **_options: Any) -> str:
    """One JSON object on one line, ASCII only: orjson (a fifth of the time of the
    standard library's encoder on a record), and the standard library, escaping, for a
    record that holds anything orjson would write as raw UTF-8 or cannot encode (an
    integer past 64 bits). ASCII only, so that no character a reader might take for a
    line break (U+2028, U+0085) reaches the file unescaped: no line injection."""
    return render_bytes(event).decode("ascii")


class PrivacyFilter:
    """The last word on what a record may hold, whatever the code before it put there: the
    fields of `allowed` only, and `url.path` without its query (`strip_query`)."""

    __slots__ = ("allowed",)

    def __init__(self, settings: LoggingSettings) -> None:
        dropped = set()
        if not settings.source_ip:
            dropped.add("source.ip")
        if not settings.url_path:
            dropped.add("url.path")
        self.allowed = ALLOWED_FIELDS - dropped

    def __call__(self, _logger: Any, _method: str, event: EventDict) -> EventDict:
        allowed = self.allowed
        if not event.keys() <= allowed:
            for key in [k for k in event if k not in allowed]:
                del event[key]
        path = event.get("url.path")
        if path is not None:
            event["url.path"] = strip_query(path)
        return event


def make_privacy_filter(settings: LoggingSettings) -> Callable[[Any, str, EventDict], EventDict]:
    """The last word on what a record may hold, whatever the code before it put there."""
    return PrivacyFilter(settings)


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


# Keys the processors write themselves: a record's fields that hold one go through them.
RESERVED = frozenset({"@timestamp", "message", "event"})
PREFIX_LIMIT = 4096  # decisions whose rendered part `AccessLog` remembers
_MESSAGES: dict[str, bytes] = {}  # `message` rendered, by `event.action` (a few actions)


class _Prefix:
    """A decision's part of its access records, rendered (the constants and its rule
    fields, between `@timestamp` and the request's fields); `plain`: the request fields
    that need no check but `url.path`'s (allowed, in neither this part nor `RESERVED`)."""

    __slots__ = ("decision", "json", "keys", "plain")

    def __init__(
        self, decision: Decision, json_: bytes | None, keys: frozenset, allowed: frozenset
    ):
        self.decision, self.json, self.keys = decision, json_, keys
        self.plain = allowed - keys - RESERVED


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
        self._privacy = PrivacyFilter(settings)
        # Fields these settings drop: taken out of a request's first (the allow-list would).
        self._dropped = tuple(sorted(ALLOWED_FIELDS - self._privacy.allowed))
        # Every record starts as this: `@timestamp` first, then the constants.
        self._template = {"@timestamp": "", **ECS_CONSTANTS}
        self._prefixes: dict[int, _Prefix] = {}  # by the decision's identity (event loop)

    def with_settings(self, settings: LoggingSettings) -> AccessLog:
        """The same file and hash chain under a reloaded policy's logging settings."""
        if settings == self.settings:
            return self
        return AccessLog(self.sink, settings, self.chain)

    def emit(self, fields: dict) -> None:
        """The processors' work in one go (the same bytes as `emit_through_processors`)."""
        if not RESERVED.isdisjoint(fields):
            self.emit_through_processors(fields)
            return
        try:
            event = {**self._template, **fields}
            event["@timestamp"] = timestamp()  # add_timestamp: first, as in the template
            event["message"] = fields["event.action"]  # EventRenamer("message"): last
            data = render_bytes(self._privacy(None, "info", event))
            if self.chain is not None:
                data = self.chain.seal(data)
            self.sink.write_bytes(data)
        except Exception:
            self.sink.lost()  # a processor failed: still counted once (then a fault)
            raise

    def emit_access(self, decision: Decision, request: dict) -> None:
        """`emit(access_event(...))`, byte for byte (`request`: `records.request_fields`),
        with the decision's part rendered once per decision: the line is spliced from it,
        the request's fields (through the allow-list and orjson) and the message. Any
        record the splice could get wrong (a decision's part outside ASCII, a field in
        both parts, a reserved key, orjson refusing a value) goes the whole way."""
        try:
            line = self._spliced(decision, request)
            if line is not None:
                if self.chain is not None:
                    line = self.chain.seal(line)
                self.sink.write_bytes(line)
        except Exception:
            self.sink.lost()  # as in `emit`: still counted once (then a fault)
            raise
        if line is None:
            self.emit({**rule_fields(decision), **request})

    def _spliced(self, decision: Decision, request: dict) -> bytes | None:
        prefix = self._prefix(decision)
        if prefix.json is None:
            return None
        for key in self._dropped:  # the fields the settings leave out (in no prefix)
            request.pop(key, None)
        if request.keys() <= prefix.plain:  # the common case: one test for the three
            path = request.get("url.path")
            if path is not None:
                request["url.path"] = strip_query(path)  # the allow-list's other work
            filtered = request
        elif not prefix.keys.isdisjoint(request) or not RESERVED.isdisjoint(request):
            return None
        else:
            # The allow-list works field by field (and cuts `url.path` again, to the same).
            filtered = self._privacy(None, "info", request)
        action = request["event.action"]
        message = _MESSAGES.get(action) if type(action) is str else None
        try:
            part = orjson.dumps(filtered, default=str)
            if message is None:
                message = orjson.dumps(action)
                if type(action) is str and len(_MESSAGES) < 64:
                    _MESSAGES[action] = message
        except TypeError:
            return None
        if not (part.isascii() and message.isascii()):
            return None
        return b'%b,%b,%b,"message":%b}' % (line_head(), prefix.json, part[1:-1], message)

    def _prefix(self, decision: Decision) -> _Prefix:
        found = self._prefixes.get(id(decision))
        if found is not None and found.decision is decision:
            return found
        fields = {**ECS_CONSTANTS, **rule_fields(decision)}
        keys = frozenset(fields)
        rendered: bytes | None = None
        if RESERVED.isdisjoint(keys) and "url.path" not in keys and keys.isdisjoint(self._dropped):
            try:
                data = orjson.dumps(self._privacy(None, "info", fields), default=str)
            except TypeError:
                data = b"\x80"
            rendered = data[1:-1] if data.isascii() and len(data) > 2 else None
        if len(self._prefixes) >= PREFIX_LIMIT:
            self._prefixes.clear()
        allowed = self._privacy.allowed
        found = self._prefixes[id(decision)] = _Prefix(decision, rendered, keys, allowed)
        return found

    def emit_through_processors(self, fields: dict) -> None:
        """A record through the processors one after the other, as structlog would."""
        try:
            event: Any = {**self._template, **fields, "event": fields["event.action"]}
            for processor in self._processors:
                event = processor(self.sink, "info", event)
            self.sink.write(event)
        except Exception:
            self.sink.lost()  # a processor failed: still counted once (then a fault)
            raise
