"""What every stage of the pipeline shares: the fail-open guard, the runtime, and the
per-flow and per-connection state. mitmproxy imports (the hooks' types)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from mitmproxy import connection, http

from auditproxy.decide.identity import canonical_address
from auditproxy.flowstate import KEY, ConnectionState, FlowState
from auditproxy.runtime import Runtime

Hook = Callable[[Any, Any], None]


def guarded(stage: str) -> Callable[[Hook], Hook]:
    """Fail open: a fault in a stage is counted and logged; the flow goes on."""

    def decorate(method: Hook) -> Hook:
        if inspect.iscoroutinefunction(method):

            @functools.wraps(method)
            async def run_async(self: Stage, arg: Any) -> None:
                try:
                    await method(self, arg)
                except Exception:
                    self.runtime.recorder.fault(stage)

            return run_async

        @functools.wraps(method)
        def run(self: Stage, arg: Any) -> Any:
            try:
                result = method(self, arg)
            except Exception:
                self.runtime.recorder.fault(stage)
                return None
            if result is not None:  # it must wait this time (`Pipeline` awaits it)
                return _guarded_wait(result, self, stage)
            return None

        return run

    return decorate


async def _guarded_wait(awaitable: Any, stage: Stage, name: str) -> None:
    try:
        await awaitable
    except Exception:
        stage.runtime.recorder.fault(name)


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


def connection_client(
    connections: WeakKeyDictionary[connection.Client, ConnectionState], client: connection.Client
) -> str:
    """The address a client connection is from: for a tunnel opened through a trusted
    balancer, the client its CONNECT was forwarded for; otherwise the connection's peer."""
    tunnel = connections.get(client)
    if tunnel is not None and tunnel.tunnel_client is not None:
        return tunnel.tunnel_client.address
    return canonical_address(client.peername[0])


def flow_client(
    connections: WeakKeyDictionary[connection.Client, ConnectionState], flow: http.HTTPFlow
) -> str:
    """The address a request is from (a balancer's forwarded client where trusted)."""
    state = flow.metadata.get(KEY)
    if state is not None and state.client is not None:
        return state.client.address
    return connection_client(connections, flow.client_conn)


def request_view(flow: http.HTTPFlow) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (first value), made once per request:
    mitmproxy's `Headers` finds a name by lower-casing every field it holds."""
    return {name.lower(): value for name, value in reversed(flow.request.headers.fields)}


def server_address(server: connection.Server | None) -> tuple[str, int] | None:
    """Where the proxy actually connected: the server connection's peer, if it opened."""
    peer = server.peername if server is not None else None
    return (canonical_address(peer[0]), peer[1]) if peer else None
