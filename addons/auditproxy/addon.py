# Over 300 lines: every hook of the pipeline in one file, in the order mitmproxy calls them.
"""The mitmproxy add-on: the request's pipeline, one small add-on per stage, called in this
order for every hook (`AuditProxy.stages`, run by `Pipeline`):

    Runtime   options, the policy in force (hot reload), notice state, log, metrics
    Admit     who may connect and what a connection may cost: outsiders and connections
              over the limits refused as they connect, heads, bodies and idle time bounded
    Authenticate  the client behind a trusted balancer; proxy authentication (Negotiate,
              Basic): 407, or the connection's principal (`addon_identity`)
    Decide    classify -> identify -> decide: the flow's `FlowState` with its Decision
    Groups    the person's directory groups; the policy group's overrides (`addon_groups`)
    Enforce   refuse clients outside the policy's networks, answer `block` with its page,
              leave `bypass` TLS undecrypted
    Notice    the acknowledgement link; which page is due today's notice; the banner
    Record    the access records and the metrics (`sinks.recorder`)

The hooks here only read the flow, call the pure stages (`decide/`, `notice/`, `sinks/`)
and apply what they return. Each hook is guarded on its own: a fault is counted in
`auditproxy_errors_total{stage}`, logged, and the flow goes on unchanged (fail open).
"""

from __future__ import annotations

import base64
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import connection, ctx, http, tls
from mitmproxy.net import encoding

from auditproxy.addon_admit import Admit
from auditproxy.addon_bodies import Bodies
from auditproxy.addon_connections import Gate, RecordConnections
from auditproxy.addon_groups import Groups
from auditproxy.addon_identity import Authenticate, IdentityOptions
from auditproxy.connection_map import ConnectionMap
from auditproxy.decide import pages
from auditproxy.decide.decision import BAD_HOST, Decision, Engine
from auditproxy.flowstate import KEY, Answered, ByteCounter, ConnectionState, FlowState
from auditproxy.notice import ownpaths
from auditproxy.notice.budget import Budget
from auditproxy.notice.insert import update_headers_after_injection
from auditproxy.notice.keys import Visit
from auditproxy.notice.ownpaths import Answer, Work
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.stage import Delivery
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import Action
from auditproxy.runtime import Runtime
from auditproxy.stages import (
    Pending,
    Stage,
    exchange_of,
    guarded,
    guarded_await,
    request_view,
    server_address,
    state_of,
)

logger = logging.getLogger("auditproxy")

HOOKS = (  # every hook a stage has; `Pipeline` runs the stages that have it, in order
    "client_connected",
    "http_connect",
    "http_connect_error",
    "requestheaders",
    "request",
    "tls_clienthello",
    "tls_established_client",
    "tls_failed_client",
    "tls_failed_server",
    "server_connect",
    "server_connected",
    "server_disconnected",
    "responseheaders",
    "response",
    "error",
    "websocket_start",
    "websocket_message",
    "websocket_end",
    "tcp_start",
    "tcp_message",
    "tcp_end",
    "tcp_error",
    "client_disconnected",
)


def host_is_clear(flow: http.HTTPFlow, state: FlowState) -> bool:
    """One Host header, that names a host (origins read a malformed one in their own ways:
    `blocked.test:x` is `blocked.test` to nginx)."""
    fields = flow.request.headers.fields
    # Counted only if some name is repeated: the view has one entry per name (fewer if a
    # stage took one out, which only means counting).
    if len(state.headers) < len(fields) and sum(1 for n, _ in fields if n.lower() == b"host") > 1:
        return False
    host = requested_host(flow, state)
    if host is None:
        return True
    try:
        normalize_host(host)
    except ValueError:
        return False
    return True


def requested_host(flow: http.HTTPFlow, state: FlowState) -> str | None:
    """The Host header as the client sent it: the :authority for HTTP/2 and 3."""
    request = flow.request
    if (request.is_http2 or request.is_http3) and request.authority:
        return request.authority
    return state.header(b"host")


# ---------------------------------------------------------------------------------- decide


class Decide(Stage):
    """classify -> identify -> decide, for requests, tunnels and TLS connections."""

    @guarded("enforce")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        engine = self.runtime.engine
        if flow.error or not flow.live or engine is None:
            return
        asked = state_of(flow)  # `Authenticate` answered 407: decided, for the record
        if flow.response and (asked is None or asked.answered is None):
            return
        state = flow.metadata[KEY] = fresh_state(flow)
        header = self._take_identity_header(engine, flow, state)
        state.decision = self._decide(engine, flow, state, header)
        if state.answered is not None:
            return  # no tunnel yet: the client asks again with its credential
        tunnel = self.connection(flow.client_conn)
        tunnel.connect_decision = state.decision
        tunnel.connect_port = flow.request.port
        if state.decision.allowed_client:  # who opened the tunnel speaks for its requests
            proxyauth = flow.metadata.get("proxyauth")
            tunnel.tunnel_user = proxyauth[0] if proxyauth else None
            tunnel.tunnel_header = header

    @guarded("classify")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        engine = self.runtime.engine
        if flow.error or not flow.live or engine is None:
            return
        state = flow.metadata[KEY] = fresh_state(flow)
        header = self._take_identity_header(engine, flow, state)
        inner = None
        tunnel = self.connections.get(flow.client_conn)
        if tunnel is not None and tunnel.in_tunnel:
            # Inside a tunnel only the CONNECT's header counts: the front proxy saw that
            # one; what a client sends inside TLS, it never did.
            header, inner = tunnel.tunnel_header, header
        self._strip_proxy_headers(flow, state)
        state.decision = self._decide(engine, flow, state, header, inner)
        if not host_is_clear(flow, state):
            state.decision = state.decision.refused(BAD_HOST)

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
            sni=sni,
            client_address=self.client_of(client),
            proxyauth_user=tunnel.tunnel_user,
            header_value=tunnel.tunnel_header,
            connect_to=server_host,
            auth=tunnel.tunnel_auth,
            groups=tunnel.tunnel_groups,
            forwarded=tunnel.tunnel_client.note if tunnel.tunnel_client else None,
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
    def _strip_proxy_headers(flow: http.HTTPFlow, state: FlowState) -> None:
        """`Proxy-Authorization` and `Proxy-Connection` are for this proxy: they never
        reach an origin (a parent proxy's own credentials, set by mitmproxy's
        `upstream_auth` from the operator's option, are kept)."""
        headers = flow.request.headers
        if b"proxy-connection" in state.headers:
            del headers["Proxy-Connection"]
        if b"proxy-authorization" in state.headers:
            kept = upstream_credentials()
            if kept is None or headers.get("Proxy-Authorization") != kept:
                del headers["Proxy-Authorization"]

    @staticmethod
    def _decide(
        engine: Engine,
        flow: http.HTTPFlow,
        state: FlowState,
        header_value: str | None,
        inner_header: str | None = None,
    ) -> Decision:
        request = flow.request
        proxyauth = flow.metadata.get("proxyauth")
        client = state.client
        return engine.decide(
            host=requested_host(flow, state) or request.host,
            sni=flow.client_conn.sni,
            client_address=client.address if client else flow.client_conn.peername[0],
            proxyauth_user=proxyauth[0] if proxyauth else None,
            header_value=header_value,
            inner_header=inner_header,
            connect_to=request.host,
            auth=state.auth,
            forwarded=client.note if client else None,
        )


# --------------------------------------------------------------------------------- enforce


class Enforce(Stage):
    """The policy's refusals: outsiders, `block` categories; `bypass` stays encrypted."""

    @guarded("enforce")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        state, engine = state_of(flow), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return
        decision = state.decision
        if not decision.allowed_client:
            self._answer(flow, state, Answered.REFUSED, pages.refused_page(engine.policy))
        elif decision.refusal is not None:
            page = pages.refused_destination_page(engine.policy, decision.destination or "")
            self._answer(flow, state, Answered.REFUSED, page)
        elif decision.action is Action.BLOCK:
            # Answered here, so that mitmproxy never connects to a blocked site (its eager
            # strategy would, at the CONNECT). Inside, TLS gets the proxy's certificate and
            # the request the block page; raw TCP is refused at `server_connect`.
            flow.response = http.Response(
                flow.request.data.http_version,
                200,
                b"Connection established",
                http.Headers(),
                b"",
                None,
                time.time(),
                time.time(),
            )

    @guarded("enforce")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        state, engine = flow.metadata.get(KEY), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return  # answered before us (e.g. 407 from proxy authentication): log only
        decision = state.decision
        if not decision.allowed_client:
            self._answer(flow, state, Answered.REFUSED, pages.refused_page(engine.policy))
        elif decision.refusal == BAD_HOST:
            page = pages.bad_request_page(engine.policy)
            self._answer(flow, state, Answered.REFUSED, page, status=400)
        elif decision.refusal is not None:
            page = pages.refused_destination_page(engine.policy, decision.destination or "")
            self._answer(flow, state, Answered.REFUSED, page)
        elif decision.action is Action.BLOCK:
            page = pages.blocked_page(engine.policy, decision.host)
            self._answer(flow, state, Answered.BLOCKED, page)

    @guarded("tunnel")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        tunnel = self.connections.get(data.context.client)
        decision = tunnel.tls_decision if tunnel is not None else None
        if decision is None:
            return
        if decision.action is Action.BYPASS:
            data.ignore_connection = True
        elif decision.action in (None, Action.BLOCK):
            # Never contact a blocked site or a refused destination for its certificate:
            # the client gets the proxy's, and its request the block or refusal page.
            data.establish_server_tls_first = False

    @staticmethod
    def _answer(
        flow: http.HTTPFlow, state: FlowState, why: Answered, page: bytes, status: int = 403
    ) -> None:
        state.answered = why
        flow.response = http.Response.make(status, page, pages.PAGE_HEADERS)


# ---------------------------------------------------------------------------------- notice


class Notice(Stage):
    """The daily notice: its link, its candidate pages, the banner (`notice.stage`)."""

    @guarded("notice")
    def requestheaders(self, flow: http.HTTPFlow) -> Pending:
        """The proxy's own paths (acknowledgement, "what is recorded about me"), answered
        by the proxy to top-level navigations on the sites where the notice applies;
        elsewhere, and to anything else, they are the site's."""
        state, engine = flow.metadata.get(KEY), self.runtime.engine
        if state is None or state.decision is None or engine is None or flow.response:
            return None
        stage = self.runtime.notice
        path = flow.request.path
        if not stage.owns(path) or not stage.applies(engine, state.decision):
            return None
        if not stage.answers(state.headers):
            return None  # a script's fetch, an image, a frame: the site's, as without us
        state.answered = Answered.NOTICE_LINK
        answer = stage.own_path(engine, state.decision, path, state.headers)
        if isinstance(answer, Answer):
            _answer(flow, state, answer)
            return None
        return self._answer_later(flow, state, answer)

    async def _answer_later(self, flow: http.HTTPFlow, state: FlowState, work: Work) -> None:
        """An answer whose state reads go off the event loop (the record page)."""
        engine = self.runtime.engine
        answer = await self.runtime.notice.offload.run(work)
        if isinstance(answer, SkipReason):
            assert engine is not None
            answer = ownpaths.busy(engine.policy)
        _answer(flow, state, answer)

    @guarded("notice")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, engine, response = flow.metadata.get(KEY), self.runtime.engine, flow.response
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
    def response(self, flow: http.HTTPFlow) -> Pending:
        """Claim the day and hand the page's work to a worker thread: the flow waits for it
        (never longer than the deadline), the event loop does not."""
        state, engine, response = flow.metadata.get(KEY), self.runtime.engine, flow.response
        if state is None or state.notice_visit is None or engine is None or response is None:
            return None
        assert state.decision is not None
        visit, state.notice_visit = state.notice_visit, None
        stage = self.runtime.notice
        if not stage.claim(visit):
            return None  # another page of this person's won the race
        try:
            work = stage.work(
                engine,
                state.decision,
                visit,
                raw=response.raw_content,
                content_encoding=response.headers.get("content-encoding"),
                content_type=response.headers.get("content-type"),
                csp_headers=response.headers.get_all("content-security-policy"),
                path=flow.request.path,
                report_only_headers=response.headers.get_all("content-security-policy-report-only"),
                scheme=flow.request.scheme,
                port=flow.request.port,
            )
        except BaseException:
            stage.give_back(visit)
            raise
        return self._deliver(response, state, visit, _encoded(work, response))

    async def _deliver(
        self, response: http.Response, state: FlowState, visit: Visit, work: Callable[..., Any]
    ) -> None:
        stage = self.runtime.notice
        try:
            result = await stage.offload.run(work)
        except BaseException:
            stage.give_back(visit)
            raise
        if isinstance(result, SkipReason):
            stage.give_back(visit)
            self.runtime.recorder.notice_skipped(result)
            return
        delivery, raw = result
        if raw is None:  # as `response.content = ...` does for an encoding it cannot redo
            del response.headers["content-encoding"]
            raw = delivery.body
        response.raw_content = raw
        if "transfer-encoding" not in response.headers:
            response.headers["content-length"] = str(len(raw))
        if delivery.csp_headers is not None:
            response.headers.set_all("Content-Security-Policy", list(delivery.csp_headers))
        if delivery.report_only_headers is not None:
            response.headers.set_all(
                "Content-Security-Policy-Report-Only", list(delivery.report_only_headers)
            )
        update_headers_after_injection(response.headers)
        state.notice_shown, state.notice_styled = visit, delivery.styled

    @guarded("notice")
    def error(self, flow: http.HTTPFlow) -> None:
        """The page failed after the notice went in: let the next page show it."""
        state = state_of(flow)
        if state is not None and state.notice_shown is not None and flow.error is not None:
            self.runtime.notice.give_back(state.notice_shown)


def _answer(flow: http.HTTPFlow, state: FlowState, answer: Answer) -> None:
    flow.response = http.Response.make(answer.status, answer.body, answer.headers)
    state.acknowledged_scope = answer.acknowledged_scope


def _encoded(
    work: Callable[[Budget], Delivery | SkipReason], response: http.Response
) -> Callable[[Budget], tuple[Delivery, bytes | None] | SkipReason]:
    """The notice's work, then the changed page encoded again with the response's own
    Content-Encoding (as `response.content = ...` would), both in the worker thread.
    None for the bytes: mitmproxy cannot redo that encoding; the body goes as decoded.

    mitmproxy's encoders are called directly: `encoding.encode` keeps the last result in a
    module-wide cache that it checks and reads in two steps, which two threads could
    interleave (one flow's page given to another)."""
    name = (response.headers.get("content-encoding") or "identity").lower()
    encoder = encoding.custom_encode.get(name)

    def run(budget: Budget) -> tuple[Delivery, bytes | None] | SkipReason:
        delivery = work(budget)
        if isinstance(delivery, SkipReason):
            return delivery
        budget.check()
        return delivery, None if encoder is None else encoder(delivery.body)

    return run


# ---------------------------------------------------------------------------------- record


class Record(Stage):
    """Every request's record and metrics, whatever its fate; the tunnels' too."""

    @guarded("log")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is not None and state.answered is not None:  # refused: no response hook
            self.connection(flow.client_conn).records += 1
            self.runtime.recorder.request(state, exchange_of(flow, state))

    @guarded("log")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        tunnel = self.connections.get(data.context.client)
        decision = tunnel.tls_decision if tunnel is not None else None
        if decision is None:
            return
        address = data.context.server.address
        client = self.client_of(data.context.client)
        if decision.action is Action.BYPASS:
            self.connection(data.context.client).records += 1  # its `tunnel` record
        # Connected already (mitmproxy's default `connection_strategy=eager`): where to.
        reached = server_address(data.context.server)
        self.runtime.recorder.tunnel(decision, address[1] if address else 443, client, reached)

    @guarded("metrics")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state, response = flow.metadata.get(KEY), flow.response
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
        state, engine = flow.metadata.get(KEY), self.runtime.engine
        if state is None or state.decision is None:
            if engine is None:
                return
            state = flow.metadata[KEY] = FlowState(request_view(flow))
            state.decision = Decide._decide(engine, flow, state, None)
        tunnel = self.connection(flow.client_conn)  # one lookup: its `records` counts this
        if tunnel.refused:
            refusal = tunnel.refused.get((flow.request.host, flow.request.port))
            if refusal is not None and refusal != "blocked" and state.decision.refusal is None:
                state.decision = state.decision.refused(refusal)  # found after resolution
        tunnel.records += 1
        self.runtime.recorder.request(state, exchange_of(flow, state))


def fresh_state(flow: http.HTTPFlow) -> FlowState:
    """The flow's `FlowState`: the one `Authenticate` made already (the client behind a
    balancer, what authentication proved), or a new one."""
    state = flow.metadata.get(KEY)
    return state if state is not None else FlowState(request_view(flow))


def upstream_credentials() -> str | None:
    """The `Proxy-Authorization` value mitmproxy sends a parent proxy (upstream_auth)."""
    auth = getattr(ctx.options, "upstream_auth", None)  # mitmproxy's add-on declares it
    return "Basic " + base64.b64encode(auth.encode()).decode() if auth else None


class Pipeline:
    """The stages, run in order for each hook, as mitmproxy would run them as add-ons.

    mitmproxy's own dispatch costs about 2.5 us per add-on and hook (it asks `inspect`
    whether each handler is a coroutine and rebuilds the hook's arguments from its
    dataclass fields for every call): with four stages and a timer that is about 30 us a
    request, more than the add-on's whole budget (bench/RESULTS.md). So mitmproxy calls
    this one add-on per hook, and it calls the stages that have the hook, in list order,
    timing them together into `auditproxy_hook_duration_seconds{hook}`. A stage may return
    an awaitable (the notice's work, off the loop): the hook then returns one too, which
    mitmproxy awaits, and the later stages run when it is done; the common, synchronous
    path costs one `is not None` per stage.

    Each stage's hook is `guarded` (fail open); on that synchronous path the pipeline
    calls the method inside that same guard itself (`Step`): the fault is counted and
    logged, the flow goes on to the next stage, as the decorator would do, a call less
    per stage. The stages after a wait are called as they are, guard and all.
    """

    name = "auditproxy.pipeline"

    def __init__(self, runtime: Runtime, stages: list[Stage]) -> None:
        self.stages = stages
        for hook in HOOKS:
            handlers = [getattr(stage, hook) for stage in stages if hasattr(stage, hook)]
            if not handlers:
                continue
            if any(inspect.iscoroutinefunction(handler) for handler in handlers):
                setattr(self, hook, _async_chain(handlers))
            else:
                timer = runtime.metrics.hook_duration.labels(hook)
                setattr(self, hook, _chain(handlers, runtime, timer))


Step = tuple[Callable[[Any], Pending], str | None]  # the method, its guard's stage name


def _step(handler: Callable[[Any], Pending]) -> Step:
    """A method `guarded` decorated (directly) as the method inside the guard and the
    guard's stage name; any other handler as it is (None: its faults are its own)."""
    marked = getattr(handler, "guarded", None)  # `stages.guarded`'s (stage, method, run)
    owner = getattr(handler, "__self__", None)
    if marked is None or owner is None or getattr(handler, "__func__", None) is not marked[2]:
        return handler, None
    stage, method, _run = marked
    return types.MethodType(method, owner), stage


def _chain(
    handlers: list[Callable[[Any], Pending]], runtime: Runtime, timer: Any
) -> Callable[[Any], Pending]:
    steps = tuple(_step(handler) for handler in handlers)

    def run(arg: Any) -> Pending:
        start = time.perf_counter()
        for step in steps:
            handler, stage = step
            try:
                pending = handler(arg)
            except Exception:
                if stage is None:
                    raise
                runtime.recorder.fault(stage)  # fail open: the next stage runs
                continue
            if pending is not None:  # rare: a stage's work goes on off the event loop
                if stage is not None:
                    pending = guarded_await(runtime, stage, pending)
                rest = handlers[steps.index(step) + 1 :]
                return _resume(pending, rest, arg, timer, time.perf_counter() - start)
        timer.observe(time.perf_counter() - start)
        return None

    return run


def _async_chain(handlers: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    """A hook where a stage waits (a name resolution): mitmproxy awaits it, the other
    connections go on meanwhile. Not timed: the wait is not the add-on's own work."""

    async def run(arg: Any) -> None:
        for handler in handlers:
            result = handler(arg)
            if inspect.isawaitable(result):
                await result

    return run


async def _resume(
    pending: Awaitable[None],
    rest: list[Callable[[Any], Pending]],
    arg: Any,
    timer: Any,
    spent: float,
) -> None:
    """The stages after one whose work went off the loop (mitmproxy awaits the hook), in
    order once it is done. The hook's duration counts its time on the loop only."""
    await pending
    start = time.perf_counter()
    for handler in rest:
        more = handler(arg)
        if more is not None:
            await more
    timer.observe(spent + time.perf_counter() - start)


class AuditProxy:
    """auditproxy, as one mitmproxy add-on: its runtime, then the pipeline's stages."""

    def __init__(self) -> None:
        self.runtime = Runtime()
        connections: ConnectionMap[connection.Client, ConnectionState] = ConnectionMap()
        self.identity = IdentityOptions(self.runtime)
        self.stages: list[Stage] = [
            Admit(self.runtime, connections),
            Authenticate(self.runtime, connections, self.identity),
            Decide(self.runtime, connections),
            Groups(self.runtime, connections, self.identity),
            Enforce(self.runtime, connections),
            Gate(self.runtime, connections),
            Notice(self.runtime, connections),
            Bodies(self.runtime, connections),
            Record(self.runtime, connections),
            RecordConnections(self.runtime, connections),
        ]
        # A tuple: children that never change, so that `auditproxy run`'s dispatch finds
        # their handlers once (`dispatch.Fixed`) instead of walking them for every hook.
        self.addons: tuple[Any, ...] = (
            self.runtime,
            self.identity,
            Pipeline(self.runtime, self.stages),
        )

    # The runtime's parts, for `auditproxy run`, the tests and the benchmark.
    @property
    def metrics(self) -> Any:
        return self.runtime.metrics

    @property
    def engine(self) -> Engine | None:
        return self.runtime.engine
