# Over 300 lines: every hook of the pipeline in one file, in the order mitmproxy calls them.
"""The mitmproxy add-on: the request's pipeline, one small add-on per stage, called in this
order for every hook (`AuditProxy.stages`, run by `Pipeline`):

    Runtime   options, the policy in force (hot reload), notice state, log, metrics
    Admit     who may connect and what a connection may cost: outsiders and connections
              over the limits refused as they connect, heads, bodies and idle time bounded
    Decide    classify -> identify -> decide: the flow's `FlowState` with its Decision
    Enforce   refuse clients outside the policy's networks, answer `block` with its page,
              leave `bypass` TLS undecrypted
    Notice    the acknowledgement link; which page is due today's notice; the banner
    Record    the access records and the metrics (`sinks.recorder`)

The hooks here only read the flow, call the pure stages (`decide/`, `notice/`, `sinks/`)
and apply what they return. Each hook is guarded on its own: a fault is counted in
`auditproxy_errors_total{stage}`, logged, and the flow goes on unchanged (fail open).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from mitmproxy import connection, ctx, http, tcp, tls
from mitmproxy.proxy import server_hooks

from auditproxy import gate
from auditproxy.decide import pages
from auditproxy.decide.admission import Reason
from auditproxy.decide.decision import Decision, Engine
from auditproxy.decide.guard import IDLE, ConnectionGuard, OriginGuard, Phase
from auditproxy.decide.identity import canonical_address
from auditproxy.flowstate import KEY, Answered, ByteCounter, ConnectionState, FlowState
from auditproxy.notice.insert import update_headers_after_injection
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.stage import Delivery
from auditproxy.policy.model import Action
from auditproxy.runtime import Runtime
from auditproxy.sinks.records import Exchange, strip_query

logger = logging.getLogger("auditproxy")

Hook = Callable[[Any, Any], None]
# The connection hooks only `Admit` has (first, so that `Pipeline` dispatches them).
ADMIT_HOOKS = (
    "client_connected",
    "client_disconnected",
    "server_connect",
    "server_connected",
    "server_disconnected",
    "request",
    "tls_established_client",
    "tcp_start",
    "tcp_message",
    "websocket_start",
    "websocket_message",
)
HOOKS = (
    *ADMIT_HOOKS,
    "http_connect",
    "requestheaders",
    "tls_clienthello",
    "responseheaders",
    "response",
    "error",
)


def guarded(stage: str) -> Callable[[Hook], Hook]:
    """Fail open: a fault in a stage is counted and logged; the flow goes on."""

    def decorate(method: Hook) -> Hook:
        @functools.wraps(method)
        def run(self: Stage, arg: Any) -> None:
            try:
                method(self, arg)
            except Exception:
                self.runtime.recorder.fault(stage)

        return run

    return decorate


class Stage:
    """A stage of the pipeline: hook methods named as mitmproxy's, run by `Pipeline`."""

    def __init__(self, runtime: Runtime, connections: WeakKeyDictionary) -> None:
        self.runtime = runtime
        self.connections: WeakKeyDictionary[connection.Client, ConnectionState] = connections

    def connection(self, client: connection.Client) -> ConnectionState:
        state = self.connections.get(client)
        if state is None:
            state = self.connections[client] = ConnectionState()
        return state


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    return flow.metadata.get(KEY)


def request_view(flow: http.HTTPFlow) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (first value), made once per request:
    mitmproxy's `Headers` finds a name by lower-casing every field it holds."""
    return {name.lower(): value for name, value in reversed(flow.request.headers.fields)}


def requested_host(flow: http.HTTPFlow, state: FlowState) -> str | None:
    """The Host header as the client sent it: the :authority for HTTP/2 and 3."""
    request = flow.request
    if (request.is_http2 or request.is_http3) and request.authority:
        return request.authority
    return state.header(b"host")


# ---------------------------------------------------------------------------------- admit


class Admit(Stage):
    """Who may connect, and what one connection may cost (`decide.admission`,
    `decide.guard`, `gate`): outsiders and connections over the limits are closed as they
    connect; each connection's reader counts and times its request heads and bodies; a
    connection that breaks a limit is closed and its refusal recorded."""

    KEEP_MESSAGES = 16  # WebSocket and TCP messages kept on a flow (mitmproxy keeps all)

    def __init__(self, runtime: Runtime, connections: WeakKeyDictionary) -> None:
        super().__init__(runtime, connections)
        self.guards: WeakKeyDictionary[connection.Client, ConnectionGuard] = WeakKeyDictionary()
        self.origins: WeakKeyDictionary[connection.Server, OriginGuard] = WeakKeyDictionary()
        self._client_origins: WeakKeyDictionary[connection.Client, list[OriginGuard]] = (
            WeakKeyDictionary()
        )
        self._admitted: WeakKeyDictionary[connection.Client, str] = WeakKeyDictionary()
        self._writers: WeakKeyDictionary[connection.Connection, Any] = WeakKeyDictionary()
        self._reader_missing_noted = False

    # --- client connections

    @guarded("admit")
    def client_connected(self, client: connection.Client) -> None:
        runtime, engine = self.runtime, self.runtime.engine
        address = canonical_address(client.peername[0]) if client.peername else "unknown"
        reason = runtime.admission.admit(
            address,
            allowed=engine is None or address in engine.clients,
            refuse_outsiders=engine is not None and engine.refuse_at_connect,
            trusted=engine is not None and address in engine.trusted_proxies,
        )
        if reason is not None:
            client.error = f"auditproxy: {reason.text}"  # mitmproxy closes it at once
            runtime.recorder.refused(reason, address, engine)
            return
        self._admitted[client] = address
        guard = self.guards[client] = ConnectionGuard(runtime.limits, time.monotonic())
        self._attach(client, client, guard)

    @guarded("admit")
    def client_disconnected(self, client: connection.Client) -> None:
        address = self._admitted.pop(client, None)
        if address is not None:
            self.runtime.admission.release(address)
        self.guards.pop(client, None)

    def _attach(self, client: connection.Client, conn: Any, guard: Any) -> None:
        handler = self._handler(client)
        writer = gate.attach(handler, conn, guard, lambda why: self._limit(client, conn, why))
        if writer is not None:
            self._writers[conn] = writer
        elif not self._reader_missing_noted and ctx.master.addons.get("proxyserver"):
            self._reader_missing_noted = True
            self.runtime.recorder.fault(
                "admit",
                "this mitmproxy's connection handler is not the expected shape: "
                "head sizes, deadlines and idle limits are off (refusals at connect work)",
            )

    @staticmethod
    def _handler(client: connection.Client) -> Any:
        proxyserver = ctx.master.addons.get("proxyserver") if ctx.master else None
        handlers = getattr(proxyserver, "connections", None)
        return handlers.get(client.id) if handlers is not None else None

    def _limit(self, client: connection.Client, conn: Any, why: Reason | str) -> None:
        """A guarded reader's verdict: record the refusal and close the connection."""
        writer = self._writers.get(conn)
        if why == IDLE:
            gate.close(writer)
            return
        assert isinstance(why, Reason)
        if why is Reason.ORIGIN_HEAD_SIZE:
            self.runtime.metrics.refusals.labels(why.value).inc()  # the flow's record says it
            gate.close(writer)
            return
        address = self._admitted.get(client, "unknown")
        self.runtime.recorder.refused(why, address, self.runtime.engine)
        guard = self.guards.get(client)
        plain = (
            not client.tls_established
            and guard is not None
            and not guard.multiplexed
            and guard.phase in (Phase.AWAIT, Phase.BODY)
        )
        gate.close(writer, gate.answer(why) if plain else None)

    # --- what the client's connection does

    @guarded("admit")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        guard = self.guards.get(flow.client_conn)
        if guard is not None:
            request = flow.request
            guard.request_started(
                flow.id,
                has_body=_has_body(request),
                multiplexed=request.is_http2 or request.is_http3,
                now=time.monotonic(),
            )

    @guarded("admit")
    def request(self, flow: http.HTTPFlow) -> None:
        guard = self.guards.get(flow.client_conn)
        if guard is not None:
            guard.request_complete(flow.id, time.monotonic())

    @guarded("admit")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        guard = self.guards.get(flow.client_conn)
        if guard is not None:
            guard.tunnel_requested(time.monotonic())

    @guarded("admit")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        guard = self.guards.get(data.context.client)
        if guard is not None:
            guard.hello = data  # a tunnel once a later stage sets `ignore_connection`

    @guarded("admit")
    def tls_established_client(self, data: tls.TlsData) -> None:
        guard = self.guards.get(data.context.client)
        if guard is not None:
            alpn = data.context.client.alpn
            guard.tls_established(multiplexed=alpn in (b"h2", b"h3"), now=time.monotonic())

    @guarded("admit")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        # By client: a flow's `server_conn` is not the socket when it is tunneled (through
        # an upstream proxy), and a client connection talks to its servers one at a time.
        for origin in self._origins_of(flow.client_conn):
            origin.head_done()

    @guarded("admit")
    def response(self, flow: http.HTTPFlow) -> None:
        self._done(flow, upgraded=flow.response is not None and flow.response.status_code == 101)

    @guarded("admit")
    def error(self, flow: http.HTTPFlow) -> None:
        self._done(flow)

    def _done(self, flow: http.HTTPFlow, upgraded: bool = False) -> None:
        if flow.request.method == "CONNECT":
            return  # the tunnel's requests speak for it
        guard = self.guards.get(flow.client_conn)
        if guard is not None:
            guard.exchange_done(flow.id, time.monotonic(), upgraded=upgraded)
        for origin in self._origins_of(flow.client_conn):
            origin.exchange_done()

    def _origins_of(self, client: connection.Client) -> list[OriginGuard]:
        return self._client_origins.get(client, [])

    @guarded("admit")
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._passthrough(flow.client_conn)

    @guarded("admit")
    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._passthrough(flow.client_conn)

    def _passthrough(self, client: connection.Client) -> None:
        guard = self.guards.get(client)
        if guard is not None:
            guard.passthrough()

    @guarded("admit")
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        if flow.websocket is not None:
            _keep_last(flow.websocket.messages, self.KEEP_MESSAGES)

    @guarded("admit")
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        _keep_last(flow.messages, self.KEEP_MESSAGES)

    # --- connections to servers

    @guarded("admit")
    def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        if data.server.error is None and not self.runtime.admission.server_allowed():
            data.server.error = f"auditproxy: {Reason.LIMIT_FILES.text}"
            address = self._admitted.get(data.client, "unknown")
            self.runtime.recorder.refused(Reason.LIMIT_FILES, address, self.runtime.engine)

    @guarded("admit")
    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self.runtime.admission.servers += 1
        limits = self.runtime.limits
        origin = OriginGuard(limits.origin_head_max_bytes, self.guards.get(data.client))
        self.origins[data.server] = origin
        self._client_origins.setdefault(data.client, []).append(origin)
        self._attach(data.client, data.server, origin)

    @guarded("admit")
    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        origin = self.origins.pop(data.server, None)
        if origin is not None:
            self.runtime.admission.servers = max(0, self.runtime.admission.servers - 1)
            with contextlib.suppress(ValueError):
                self._client_origins.get(data.client, []).remove(origin)


def _has_body(request: http.Request) -> bool:
    headers = request.headers
    if "transfer-encoding" in headers:
        return True
    length = headers.get("content-length", "0").strip()
    return length not in ("", "0")


def _keep_last(messages: list, keep: int) -> None:
    if len(messages) > keep:
        del messages[: len(messages) - keep]


# ---------------------------------------------------------------------------------- decide


class Decide(Stage):
    """classify -> identify -> decide, for requests, tunnels and TLS connections."""

    @guarded("enforce")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        engine = self.runtime.engine
        if flow.response or flow.error or not flow.live or engine is None:
            return
        state = flow.metadata[KEY] = FlowState(request_view(flow))
        header = self._take_identity_header(engine, flow, state)
        state.decision = self._decide(engine, flow, state, header)
        if state.decision.allowed_client:  # who opened the tunnel speaks for its requests
            proxyauth = flow.metadata.get("proxyauth")
            tunnel = self.connection(flow.client_conn)
            tunnel.tunnel_user = proxyauth[0] if proxyauth else None
            tunnel.tunnel_header = header

    @guarded("classify")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        engine = self.runtime.engine
        if flow.error or not flow.live or engine is None:
            return
        state = flow.metadata[KEY] = FlowState(request_view(flow))
        header = self._take_identity_header(engine, flow, state)
        if header is None:  # HTTPS: a front proxy's header came with the CONNECT
            tunnel = self.connections.get(flow.client_conn)
            header = tunnel.tunnel_header if tunnel is not None else None
        state.decision = self._decide(engine, flow, state, header)

    @guarded("tunnel")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        """Classify a TLS connection by every name it goes by (SNI, CONNECT target)."""
        engine = self.runtime.engine
        if engine is None or data.ignore_connection:
            return
        client = data.context.client
        server_address = data.context.server.address
        server_host = server_address[0] if server_address else None
        sni = data.client_hello.sni
        tunnel = self.connection(client)
        tunnel.tls_decision = engine.decide(
            host=sni or server_host,
            other_names=(server_host,),
            sni=sni,
            client_address=client.peername[0],
            proxyauth_user=tunnel.tunnel_user,
            header_value=tunnel.tunnel_header,
        )

    @staticmethod
    def _take_identity_header(engine: Engine, flow: http.HTTPFlow, state: FlowState) -> str | None:
        """Read the front proxy's identity header, and never pass it on to the origin."""
        name = engine.identity_header
        if not name or name.lower().encode() not in state.headers:
            return None
        value = flow.request.headers.get(name)
        del flow.request.headers[name]
        state.headers.pop(name.lower().encode(), None)
        return value

    @staticmethod
    def _decide(
        engine: Engine, flow: http.HTTPFlow, state: FlowState, header_value: str | None
    ) -> Decision:
        request = flow.request
        proxyauth = flow.metadata.get("proxyauth")
        return engine.decide(
            host=requested_host(flow, state) or request.host,
            other_names=(request.host,),
            sni=flow.client_conn.sni,
            client_address=flow.client_conn.peername[0],
            proxyauth_user=proxyauth[0] if proxyauth else None,
            header_value=header_value,
        )


# --------------------------------------------------------------------------------- enforce


class Enforce(Stage):
    """The policy's refusals: outsiders, `block` categories; `bypass` stays encrypted."""

    @guarded("enforce")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        state, engine = state_of(flow), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return
        if not state.decision.allowed_client:
            self._answer(flow, state, Answered.REFUSED, pages.refused_page(engine.policy))

    @guarded("enforce")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        state, engine = state_of(flow), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return  # answered before us (e.g. 407 from proxy authentication): log only
        decision = state.decision
        if not decision.allowed_client:
            self._answer(flow, state, Answered.REFUSED, pages.refused_page(engine.policy))
        elif decision.action is Action.BLOCK:
            page = pages.blocked_page(engine.policy, decision.host)
            self._answer(flow, state, Answered.BLOCKED, page)

    @guarded("tunnel")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        tunnel = self.connections.get(data.context.client)
        decision = tunnel.tls_decision if tunnel is not None else None
        if decision is not None and decision.action is Action.BYPASS:
            data.ignore_connection = True

    @staticmethod
    def _answer(flow: http.HTTPFlow, state: FlowState, why: Answered, page: bytes) -> None:
        state.answered = why
        flow.response = http.Response.make(403, page, pages.PAGE_HEADERS)


# ---------------------------------------------------------------------------------- notice


class Notice(Stage):
    """The daily notice: its link, its candidate pages, the banner (`notice.stage`)."""

    @guarded("notice")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        state, engine = state_of(flow), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return
        stage = self.runtime.notice
        if not stage.is_acknowledgement(flow.request.path):
            return
        answer = stage.acknowledge(engine, state.decision, flow.request.path)
        flow.response = http.Response.make(answer.status, answer.body, answer.headers)
        state.answered = Answered.NOTICE_LINK
        state.acknowledged_scope = answer.acknowledged_scope

    @guarded("notice")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, engine, response = state_of(flow), self.runtime.engine, flow.response
        if state is None or state.decision is None or engine is None or response is None:
            return
        if state.answered is not None:
            return
        result = self.runtime.notice.candidate(
            engine,
            state.decision,
            method=flow.request.method,
            status=response.status_code,
            request_headers=flow.request.headers,
            response_headers=response.headers,
            fetch_dest=state.headers.get(b"sec-fetch-dest"),
            streamed=bool(response.stream),
        )
        if isinstance(result, SkipReason):
            self.runtime.recorder.notice_skipped(result)
        elif result is not None:
            state.notice_visit = result

    @guarded("notice")
    def response(self, flow: http.HTTPFlow) -> None:
        state, engine, response = state_of(flow), self.runtime.engine, flow.response
        if state is None or state.notice_visit is None or engine is None or response is None:
            return
        assert state.decision is not None
        visit, state.notice_visit = state.notice_visit, None
        result = self.runtime.notice.deliver(
            engine,
            state.decision,
            visit,
            raw=response.raw_content,
            content_encoding=response.headers.get("content-encoding"),
            content_type=response.headers.get("content-type"),
            csp_headers=response.headers.get_all("content-security-policy"),
            path=flow.request.path,
        )
        if isinstance(result, SkipReason):
            self.runtime.recorder.notice_skipped(result)
        elif isinstance(result, Delivery):
            response.content = result.body  # re-encoded with the response's own encoding
            if result.csp_headers is not None:
                response.headers.set_all("Content-Security-Policy", list(result.csp_headers))
            update_headers_after_injection(response.headers)
            state.notice_shown, state.notice_styled = visit, result.styled

    @guarded("notice")
    def error(self, flow: http.HTTPFlow) -> None:
        """The page failed after the notice went in: let the next page show it."""
        state = state_of(flow)
        if state is not None and state.notice_shown is not None and flow.error is not None:
            self.runtime.notice.give_back(state.notice_shown)


# ---------------------------------------------------------------------------------- record


class Record(Stage):
    """Every request's record and metrics, whatever its fate; the tunnels' too."""

    @guarded("log")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is not None and state.answered is not None:  # refused: no response hook
            self.runtime.recorder.request(state, exchange(flow, state))

    @guarded("log")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        tunnel = self.connections.get(data.context.client)
        decision = tunnel.tls_decision if tunnel is not None else None
        if decision is None:
            return
        address = data.context.server.address
        client = canonical_address(data.context.client.peername[0])
        self.runtime.recorder.tunnel(decision, address[1] if address else 443, client)

    @guarded("metrics")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, response = state_of(flow), flow.response
        if state is not None and response is not None and response.stream:
            counter = ByteCounter(response.stream if callable(response.stream) else None)
            response.stream = state.streamed = counter

    @guarded("log")
    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    @guarded("log")
    def error(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return  # a tunnel's fate is its requests' (or its tunnel record's)
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        state, engine = state_of(flow), self.runtime.engine
        if state is None or state.decision is None:
            if engine is None:
                return
            state = flow.metadata[KEY] = FlowState(request_view(flow))
            state.decision = Decide._decide(engine, flow, state, None)
        self.runtime.recorder.request(state, exchange(flow, state))


def exchange(flow: http.HTTPFlow, state: FlowState) -> Exchange:
    """What the access record needs to know about one HTTP exchange, off the flow."""
    request, response = flow.request, flow.response
    if state.streamed is not None:
        size: int | None = state.streamed.total
    elif response is not None:
        size = len(response.raw_content) if response.raw_content is not None else None
    else:
        size = None
    end = response.timestamp_end if response is not None else None
    if end is None and flow.error is not None:
        end = flow.error.timestamp
    duration = int((end - request.timestamp_start) * 1e9) if end else None
    return Exchange(
        method=request.method,
        scheme=request.scheme,
        port=request.port,
        path=strip_query(request.path),
        http_version=request.http_version.removeprefix("HTTP/"),
        status=response.status_code if response is not None else None,
        response_bytes=size,
        duration_ns=duration,
        client_address=canonical_address(flow.client_conn.peername[0]),
        error=_safe_error(flow.error.msg) if flow.error else None,
    )


def _safe_error(message: str) -> str:
    """An error message without anything that looks like a URL's query string."""
    words = [strip_query(w) if "?" in w else w for w in message.split()]
    return " ".join(words)[:300]


# ---------------------------------------------------------------------------------- the add-on


class Pipeline:
    """The stages, run in order for each hook, as mitmproxy would run them as add-ons.

    mitmproxy's own dispatch costs about 2.5 us per add-on and hook (it asks `inspect`
    whether each handler is a coroutine and rebuilds the hook's arguments from its
    dataclass fields for every call): with four stages and a timer that is about 30 us a
    request, more than the add-on's whole budget (bench/RESULTS.md). So mitmproxy calls
    this one add-on per hook, and it calls the stages that have the hook, in list order,
    timing them together into `auditproxy_hook_duration_seconds{hook}`.
    """

    name = "auditproxy.pipeline"

    def __init__(self, runtime: Runtime, stages: list[Stage]) -> None:
        self.stages = stages
        for hook in HOOKS:
            handlers = [getattr(stage, hook) for stage in stages if hasattr(stage, hook)]
            timer = runtime.metrics.hook_duration.labels(hook)
            setattr(self, hook, _chain(handlers, timer))


def _chain(handlers: list[Callable[[Any], None]], timer: Any) -> Callable[[Any], None]:
    def run(arg: Any) -> None:
        start = time.perf_counter()
        for handler in handlers:
            handler(arg)  # each is guarded: a fault never stops the next stage
        timer.observe(time.perf_counter() - start)

    return run


class AuditProxy:
    """auditproxy, as one mitmproxy add-on: its runtime, then the pipeline's stages."""

    def __init__(self) -> None:
        self.runtime = Runtime()
        connections: WeakKeyDictionary[connection.Client, ConnectionState] = WeakKeyDictionary()
        self.stages: list[Stage] = [
            Admit(self.runtime, connections),
            Decide(self.runtime, connections),
            Enforce(self.runtime, connections),
            Notice(self.runtime, connections),
            Record(self.runtime, connections),
        ]
        self.addons = [self.runtime, Pipeline(self.runtime, self.stages)]

    # The runtime's parts, for `auditproxy run`, the tests and the benchmark.
    @property
    def metrics(self) -> Any:
        return self.runtime.metrics

    @property
    def engine(self) -> Engine | None:
        return self.runtime.engine
