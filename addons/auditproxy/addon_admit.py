"""The pipeline's first stage: who may connect, and what one connection may cost.

Outsiders and connections over the limits are closed as they connect (`client_connected`);
each connection's reader counts and times its request heads and bodies (`gate`); a
connection that breaks a limit is closed and its refusal recorded. The pure rules are in
`decide.admission` and `decide.guard`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any

from mitmproxy import connection, ctx, http, tcp, tls
from mitmproxy.proxy import server_hooks

from auditproxy import gate
from auditproxy.addon_bodies import may_have_body
from auditproxy.backlog import HELD_PER_PERSON, Backlog
from auditproxy.connection_map import ConnectionMap
from auditproxy.decide.admission import Reason
from auditproxy.decide.guard import IDLE, ConnectionGuard, OriginGuard, Phase
from auditproxy.decide.identity import canonical_address
from auditproxy.runtime import Runtime
from auditproxy.stages import Stage, guarded


class Admit(Stage):
    """Who may connect, and what one connection may cost (`decide.admission`,
    `decide.guard`, `gate`): outsiders and connections over the limits are closed as they
    connect; each connection's reader counts and times its request heads and bodies; a
    connection that breaks a limit is closed and its refusal recorded."""

    KEEP_MESSAGES = 16  # WebSocket and TCP messages kept on a flow (mitmproxy keeps all)

    def __init__(self, runtime: Runtime, connections: ConnectionMap) -> None:
        super().__init__(runtime, connections)
        self.guards: ConnectionMap[connection.Client, ConnectionGuard] = ConnectionMap()
        self.origins: ConnectionMap[connection.Server, OriginGuard] = ConnectionMap()
        self._client_origins: ConnectionMap[connection.Client, list[OriginGuard]] = ConnectionMap()
        self._admitted: ConnectionMap[connection.Client, str] = ConnectionMap()
        self._writers: ConnectionMap[connection.Connection, Any] = ConnectionMap()
        # What the proxy holds for each connection and person (`Backlog`): a person
        # is a client address, or a trusted balancer's or front proxy's connection.
        self._backlogs: dict[Any, Backlog] = {}
        self._backlog_of: ConnectionMap[connection.Client, Backlog] = ConnectionMap()
        self._reader_missing_noted = False

    # --- client connections

    @guarded("admit")
    def client_connected(self, client: connection.Client) -> None:
        runtime, engine = self.runtime, self.runtime.engine
        address = canonical_address(client.peername[0]) if client.peername else "unknown"
        # A trusted balancer is let in (each request's own client, the one it forwards
        # for, is checked when the request arrives) and carries everyone's connections,
        # like a trusted front proxy: no per-address cap.
        reason = runtime.admission.admit(
            address,
            allowed=engine is None or engine.connection_allowed(address),
            refuse_outsiders=engine is not None and engine.refuse_at_connect,
            trusted=engine is not None
            and (address in engine.trusted_proxies or address in engine.balancers),
        )
        if reason is not None:
            client.error = f"auditproxy: {reason.text}"  # mitmproxy closes it at once
            runtime.recorder.refused(reason, address, engine)
            return
        self._admitted[client] = address
        guard = self.guards[client] = ConnectionGuard(runtime.limits, time.monotonic())
        shared = engine is None or not (
            address in engine.trusted_proxies or address in engine.balancers
        )
        key = address if shared else client.id
        person = self._backlogs.get(key)
        if person is None:
            person = self._backlogs[key] = Backlog(HELD_PER_PERSON, key=key)
        person.users += 1
        backlog = self._backlog_of[client] = Backlog(parent=person)
        self._attach(client, client, guard, backlog, upstream=True)

    @guarded("admit")
    def client_disconnected(self, client: connection.Client) -> None:
        address = self._admitted.pop(client, None)
        if address is not None:
            self.runtime.admission.release(address)
        self.guards.pop(client, None)
        backlog = self._backlog_of.pop(client, None)
        person = backlog.parent if backlog is not None else None
        if backlog is not None and person is not None:
            backlog.settle()  # what it held is gone with it
            person.users -= 1
            if person.users <= 0:
                self._backlogs.pop(person.key, None)

    def _attach(
        self,
        client: connection.Client,
        conn: Any,
        guard: Any,
        backlog: Backlog | None,
        upstream: bool,
    ) -> None:
        handler = self._handler(client)
        on_limit = functools.partial(self._limit, client, conn)
        writer = gate.attach(handler, conn, guard, on_limit, backlog, upstream)
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
        backlog = self._backlog_of.get(flow.client_conn)
        if backlog is not None:
            backlog.flows.add(flow.id)
        guard = self.guards.get(flow.client_conn)
        if guard is not None:
            request = flow.request
            guard.request_started(
                flow.id,
                has_body=may_have_body(request, flow),
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
        backlog = self._backlog_of.get(flow.client_conn)
        if backlog is not None and backlog.flows:
            backlog.flows.discard(flow.id)
            if not backlog.flows:
                backlog.settle()
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
        backlog = self._backlog_of.get(client)
        if backlog is not None:
            backlog.passthrough()

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
        backlog = self._backlog_of.get(data.client)
        self._attach(data.client, data.server, origin, backlog, upstream=False)

    @guarded("admit")
    def server_disconnected(self, data: server_hooks.ServerConnectionHookData) -> None:
        origin = self.origins.pop(data.server, None)
        if origin is not None:
            self.runtime.admission.servers = max(0, self.runtime.admission.servers - 1)
            with contextlib.suppress(ValueError):
                self._client_origins.get(data.client, []).remove(origin)


def _keep_last(messages: list, keep: int) -> None:
    if len(messages) > keep:
        del messages[: len(messages) - keep]
