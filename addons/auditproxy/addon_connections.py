"""The pipeline's connection-level stages: where the proxy may connect, and a record for
every connection that is not one HTTP request.

    Gate               before any server connection opens (`server_connect`, every mode):
                       a tunnel to a blocked site or a refused destination never gets one;
                       a name is resolved and every address it has is checked (loopback,
                       link-local, the proxy's own host...), then the connection is pinned
                       to the checked address, so that a second resolution cannot differ
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
import socket
import time

from mitmproxy import ctx, http, tcp, tls
from mitmproxy.proxy import mode_specs, server_hooks

from auditproxy.decide.decision import Decision, Engine
from auditproxy.decide.destinations import parse_ip
from auditproxy.flowstate import KEY, Counts, FlowState
from auditproxy.policy.model import Action
from auditproxy.sinks.connections import Traffic
from auditproxy.stages import (
    Stage,
    connection_client,
    flow_client,
    guarded,
    server_address,
    state_of,
)

RESOLVE_SECONDS = 5.0  # a name that does not resolve within this is left to mitmproxy


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


class Gate(Stage):
    """No server connection to a blocked site or a forbidden address."""

    @guarded("connection")
    async def server_connect(self, data: server_hooks.ServerConnectionHookData) -> None:
        engine, server = self.runtime.engine, data.server
        if engine is None or server.address is None or server.error:
            return
        tunnel = self.connections.get(data.client)
        decision = tunnel.decision() if tunnel is not None else None
        if decision is not None and (decision.refusal or decision.action is Action.BLOCK):
            self._refuse(data, decision.refusal or "blocked")
            return
        host, port = server.address[0], server.address[1]
        if (host, port) in upstream_addresses():
            return  # the operator's parent proxy: it resolves and connects for us
        addresses = await self._resolve(host, port)
        for address in addresses:
            ip = parse_ip(address)
            reason = engine.destinations.refusal_for_address(ip) if ip is not None else None
            if reason is not None:
                self._refuse(data, reason)
                return
        if addresses and addresses[0] != host:
            self.connection(data.client).pinned[server.id] = server.address
            server.address = (addresses[0], port)  # connect to what was checked

    @guarded("connection")
    def server_connected(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._unpin(data)

    @guarded("connection")
    def server_connect_error(self, data: server_hooks.ServerConnectionHookData) -> None:
        self._unpin(data)

    def _unpin(self, data: server_hooks.ServerConnectionHookData) -> None:
        """Give the connection its name back: mitmproxy reuses a connection for later
        requests only when its address is the name they ask for."""
        tunnel = self.connections.get(data.client)
        if tunnel is not None and data.server.id in tunnel.pinned:
            data.server.address = tunnel.pinned.pop(data.server.id)

    def _refuse(self, data: server_hooks.ServerConnectionHookData, reason: str) -> None:
        data.server.error = f"auditproxy refused this destination ({reason})"
        address = data.server.address
        if address is not None:
            self.connection(data.client).refused[(address[0], address[1])] = reason

    @staticmethod
    async def _resolve(host: str, port: int) -> list[str]:
        """The addresses a name has, checked before mitmproxy connects; [] when it does
        not resolve in time (mitmproxy then fails or succeeds on its own, unpinned)."""
        if parse_ip(host) is not None:
            return [host]
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), RESOLVE_SECONDS
            )
        except (OSError, TimeoutError, UnicodeError):
            return []
        return list(dict.fromkeys(str(info[4][0]) for info in infos))


class RecordConnections(Stage):
    """A record for every connection that is not one HTTP request."""

    @guarded("log")
    def http_connect_error(self, flow: http.HTTPFlow) -> None:
        """A CONNECT that did not succeed: refused by us (recorded at `http_connect`) or
        mitmproxy could not reach the server (a closed port, an unknown host)."""
        state = state_of(flow)
        if state is None or state.decision is None or state.recorded or state.answered:
            return
        state.recorded = True
        response = flow.response
        error = flow.server_conn.error or (response.reason if response else "") or "failed"
        client = flow_client(self.connections, flow)
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
        client = connection_client(self.connections, data.context.client)
        message = data.conn.error or "handshake failed"
        port = address[1] if address else 443
        self.runtime.recorder.tls_failure(decision, port, client, side, message)

    @guarded("log")
    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        decision = self._decision(flow.client_conn, flow.server_conn.address)
        if decision is not None:
            flow.metadata[KEY] = FlowState({}, decision, traffic=Counts())

    @guarded("metrics")
    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        state = state_of(flow)  # type: ignore[arg-type]
        if state is not None and state.traffic is not None and flow.messages:
            message = flow.messages[-1]
            state.traffic.add(message.from_client, len(message.content))
            del flow.messages[:-1]  # counted: never kept (a long tunnel would fill memory)

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
        tunnel = self.connections.get(flow.client_conn)
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
        del flow.websocket.messages[:-1]  # counted: never kept

    @guarded("log")
    def websocket_end(self, flow: http.HTTPFlow) -> None:
        state = state_of(flow)
        if state is None or state.decision is None:
            return
        counts = state.traffic or Counts()
        traffic = self._traffic(flow, counts, (flow.request.host, flow.request.port))
        self.runtime.recorder.connection("websocket", state.decision, traffic, counts)

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
                client_address=connection_client(self.connections, client),  # type: ignore[arg-type]
                connect_to=host,
            )
        return decision

    def _traffic(
        self, flow: http.HTTPFlow | tcp.TCPFlow, counts: Counts, address: object
    ) -> Traffic:
        port = address[1] if isinstance(address, tuple) else 0
        start = flow.timestamp_created
        end = flow.client_conn.timestamp_end or time.time()
        error = flow.error.msg if flow.error else None
        return Traffic(
            port=port,
            client_address=flow_client(self.connections, flow),  # type: ignore[arg-type]
            destination=server_address(flow.server_conn),
            bytes_from_client=counts.bytes_from_client,
            bytes_from_server=counts.bytes_from_server,
            duration_ns=int((end - start) * 1e9) if start else None,
            error=error,
        )
