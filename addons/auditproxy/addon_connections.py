"""The pipeline's connection-level stages: where the proxy may connect, and a record for
every connection that is not one HTTP request.

    Gate               before any server connection opens (`server_connect`, every mode):
                       a tunnel to a blocked site or a refused destination never gets one;
                       a name is checked in the very resolution mitmproxy makes for the
                       connection (every address it has: loopback, link-local, the proxy's
                       own host...), so no second lookup can answer differently
    RecordConnections  raw TCP inside a tunnel and WebSocket connections (bytes and
                       messages counted each way as they pass, never kept), failed TLS
                       handshakes (client or server side, with a bounded reason), and
                       tunnels whose server could not be reached

In upstream mode the proxy connects only to its parent, which resolves names itself:
there, destinations are checked on the names clients give (IP literals, `localhost`).
"""

from __future__ import annotations

import asyncio
import functools
import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, ctx, http, tcp, tls
from mitmproxy.proxy import mode_specs, server_hooks

from auditproxy.decide.decision import Decision, Engine
from auditproxy.decide.destinations import parse_ip
from auditproxy.flowstate import KEY, ConnectionState, Counts, FlowState
from auditproxy.policy.model import Action
from auditproxy.sinks.connections import Traffic
from auditproxy.stages import Stage, exchange_of, guarded, server_address, state_of


def upstream_addresses() -> frozenset[tuple[str, int]]:
    """The parent proxies of upstream modes: the operator's, never a client's choice."""
    return _parents(tuple(ctx.options.mode))


@functools.lru_cache(maxsize=8)
def _parents(modes: tuple[str, ...]) -> frozenset[tuple[str, int]]:
    found = set()
    for spec in modes:
        mode = mode_specs.ProxyMode.parse(spec)
        if isinstance(mode, mode_specs.UpstreamMode):
            found.add(mode.address)
    return frozenset(found)


@dataclass(frozen=True, slots=True)
class _Check:
    """What the next name resolution in this task is for: one server connection."""

    host: str
    port: int
    engine: Engine
    tunnel: ConnectionState


# Set by `Gate.server_connect` in the task that is about to open the connection, read by
# the resolver guard when mitmproxy resolves the name in that same task.
_CHECKING: ContextVar[_Check | None] = ContextVar("auditproxy_destination_check", default=None)


def guard_resolver(loop: asyncio.AbstractEventLoop) -> None:
    """Check every address mitmproxy's own resolution returns, in that very resolution.

    A second, separate lookup by the proxy could be answered differently (a name whose DNS
    fails, or changes, between two lookups): the check must be on the addresses the
    connection will use. mitmproxy connects with `asyncio.open_connection`, which resolves
    names through the loop's `getaddrinfo`; this wraps it, and acts only on the name that
    `Gate.server_connect` announced in the same task (nothing else the loop resolves).
    """
    if getattr(loop, "_auditproxy_resolver_guard", False):
        return
    resolve = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, **kwargs: Any) -> list[Any]:
        infos = await resolve(host, port, **kwargs)
        check = _CHECKING.get()
        if check is not None and host == check.host:
            addresses = [parse_ip(str(info[4][0])) for info in infos]
            for ip in addresses:
                reason = check.engine.destinations.refusal_for_address(ip) if ip else None
                if reason is not None:
                    check.tunnel.refused[(check.host, check.port)] = reason
                    raise OSError(f"auditproxy refused this destination ({reason})")
        return infos

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    loop._auditproxy_resolver_guard = True  # type: ignore[attr-defined]


class Gate(Stage):
    """No server connection to a blocked site or a forbidden address."""

    @guarded("connection")
    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        engine, server = self.runtime.engine, data.server
        if engine is None or server.address is None or server.error:
            return
        tunnel = self.connection(data.client)
        decision = tunnel.decision()
        if decision is not None and (decision.refusal or decision.action is Action.BLOCK):
            self._refuse(data, tunnel, decision.refusal or "blocked")
            return
        host, port = server.address[0], server.address[1]
        if (host, port) in upstream_addresses():
            return  # the operator's parent proxy: it resolves and connects for us
        ip = parse_ip(host)
        if ip is not None:  # asyncio does not resolve an IP literal: check it here
            reason = engine.destinations.refusal_for_address(ip)
            if reason is not None:
                self._refuse(data, tunnel, reason)
            return
        guard_resolver(asyncio.get_running_loop())
        _CHECKING.set(_Check(host, port, engine, tunnel))

    @staticmethod
    def _refuse(
        data: server_hooks.ServerConnectionHookData, tunnel: ConnectionState, reason: str
    ) -> None:
        data.server.error = f"auditproxy refused this destination ({reason})"
        address = data.server.address
        if address is not None:
            tunnel.refused[(address[0], address[1])] = reason


class RecordConnections(Stage):
    """A record for every connection that is not one HTTP request."""

    @guarded("log")
    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A CONNECT that did not succeed: refused by us (recorded at `http_connect`) or
        mitmproxy could not reach the server (a closed port, an unknown host)."""
        state = state_of(flow)
        if state is None or state.decision is None or state.recorded or state.answered:
            return
        tunnel = self.connection(flow.client_conn)
        tunnel.records += 1
        refusal = tunnel.refused.get((flow.request.host, flow.request.port))
        if refusal is not None and refusal != "blocked":  # found at resolution
            state.decision = state.decision.refused(refusal)
            self.runtime.recorder.request(state, exchange_of(flow, state))
            return
        state.recorded = True
        response = flow.response
        error = flow.server_conn.error or (response.reason if response else "") or "failed"
        client = self.flow_client(flow)
        self.runtime.recorder.connect_failure(state.decision, flow.request.port, client, error)

    @guarded("log")
    def tls_failed_client(self, data: tls.TlsData) -> None:
        self._tls_failed(data, "client")

    @guarded("log")
    def tls_failed_server(self, data: tls.TlsData) -> None:
        self._tls_failed(data, "server")

    def _tls_failed(self, data: tls.TlsData, side: str) -> None:
        decision = self._decision(data.context.client, data.context.server.address)
        if decision is None:
            return
        address = data.context.server.address
        client = self.client_of(data.context.client)
        message = data.conn.error or "handshake failed"
        port = address[1] if address else 443
        self.connection(data.context.client).records += 1
        self.runtime.recorder.tls_failure(decision, port, client, side, message)

    @guarded("log")
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        decision = self._decision(flow.client_conn, flow.server_conn.address)
        if decision is not None:
            flow.metadata[KEY] = FlowState({}, decision, traffic=Counts())

    @guarded("metrics")
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        state = state_of(flow)  # type: ignore[arg-type]
        if state is None or state.traffic is None or not flow.messages:
            return
        message = flow.messages[-1]
        state.traffic.add(message.from_client, len(message.content))
        if not state.started and state.decision is not None:
            # A record as soon as bytes flow: a long tunnel is on record even if the
            # process dies before it ends.
            state.started = True
            self.connection(flow.client_conn).records += 1
            traffic = self._traffic(flow, state.traffic, flow.server_conn.address)
            self.runtime.recorder.connection_start("tcp", state.decision, traffic)

    @guarded("log")
    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    @guarded("log")
    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._record_tcp(flow)

    def _record_tcp(self, flow: tcp.TCPFlow) -> None:
        state = state_of(flow)  # type: ignore[arg-type]
        if state is None or state.decision is None or state.recorded or state.traffic is None:
            return
        state.recorded = True
        tunnel = self.connection(flow.client_conn)
        tunnel.records += 1
        address = flow.server_conn.address
        refused = tunnel.refused if tunnel is not None and address is not None else {}
        refusal = refused.get((address[0], address[1])) if refused else None
        traffic = self._traffic(flow, state.traffic, address)
        recorder = self.runtime.recorder
        if refusal is not None:
            decision = state.decision
            if refusal != "blocked" and decision.refusal is None:
                decision = decision.refused(refusal)
            recorder.connection_refused(decision, traffic)
        else:
            recorder.connection("tcp", state.decision, traffic, state.traffic)

    @guarded("metrics")
    def websocket_message(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is None or flow.websocket is None or not flow.websocket.messages:
            return
        if state.traffic is None:
            state.traffic = Counts()
        message = flow.websocket.messages[-1]
        state.traffic.add(message.from_client, len(message.content))

    @guarded("log")
    def websocket_end(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is None or state.decision is None:
            return
        counts = state.traffic or Counts()
        traffic = self._traffic(flow, counts, (flow.request.host, flow.request.port))
        self.connection(flow.client_conn).records += 1
        self.runtime.recorder.connection("websocket", state.decision, traffic, counts)

    @guarded("log")
    def client_disconnected(self, client: connection.Client) -> None:
        """A tunnel that carried nothing the other stages recorded (a CONNECT left idle:
        an open port found, a preconnection never used) still gets its record."""
        tunnel = self.connections.get(client)
        decision = tunnel.connect_decision if tunnel is not None else None
        if tunnel is None or decision is None or tunnel.records:
            return
        port = tunnel.connect_port or 0
        traffic = Traffic(
            port=port,
            client_address=self.client_of(client),
            destination=None,
            bytes_from_client=0,
            bytes_from_server=0,
            duration_ns=_duration(client),
        )
        self.runtime.recorder.idle_tunnel(decision, traffic)

    def _decision(self, client: object, address: tuple[str, int] | None) -> Decision | None:
        """The connection's decision; one made now for a connection that had none (a
        transparent-mode or reverse-mode connection that never sent a CONNECT)."""
        tunnel = self.connections.get(client)  # type: ignore[call-overload]
        decision = tunnel.decision() if tunnel is not None else None
        engine: Engine | None = self.runtime.engine
        if decision is None and engine is not None:
            host = address[0] if address else None
            decision = engine.decide(
                host=host,
                client_address=self.client_of(client),  # type: ignore[arg-type]
                connect_to=host,
            )
        return decision

    def _traffic(self, flow: http.HTTPFlow | tcp.TCPFlow, counts: Counts, address: Any) -> Traffic:
        port = address[1] if isinstance(address, tuple) else 0
        start = flow.timestamp_created
        end = flow.client_conn.timestamp_end or time.time()
        error = flow.error.msg if flow.error else None
        return Traffic(
            port=port,
            client_address=self.flow_client(flow),  # type: ignore[arg-type]
            destination=server_address(flow.server_conn),
            bytes_from_client=counts.bytes_from_client,
            bytes_from_server=counts.bytes_from_server,
            duration_ns=int((end - start) * 1e9) if start else None,
            error=error,
        )


def _duration(client: connection.Client) -> int | None:
    start, end = client.timestamp_start, client.timestamp_end or time.time()
    return int((end - start) * 1e9) if start else None
