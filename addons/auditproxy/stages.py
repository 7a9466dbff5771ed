"""What every stage of the pipeline shares: the fail-open guard, the runtime, the per-flow
and per-connection state, and what a record needs to know about an exchange."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from mitmproxy import connection, http
from mitmproxy.net.http.status_codes import RESPONSES

from auditproxy.connection_map import ConnectionMap
from auditproxy.decide.identity import canonical_address
from auditproxy.flowstate import KEY, ConnectionState, FlowState
from auditproxy.runtime import Runtime
from auditproxy.sinks.paths import strip_query
from auditproxy.sinks.records import Exchange

Pending = Awaitable[None] | None  # a hook's answer: None, or work that goes on off the loop
Hook = Callable[[Any, Any], Pending]


def guarded(stage: str) -> Callable[[Hook], Hook]:
    """Fail open: a fault in a stage is counted and logged; the flow goes on. A hook that
    returns an awaitable (the notice's work off the event loop) is guarded while it is
    awaited, too."""

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
        def run(self: Stage, arg: Any) -> Pending:
            try:
                pending = method(self, arg)
            except Exception:
                self.runtime.recorder.fault(stage)
                return None
            return None if pending is None else guarded_await(self.runtime, stage, pending)

        # For `addon.Pipeline`, which calls the method itself inside the same guard (a
        # frame less for each stage of each hook). `run` itself is named too: another
        # decorator over this one (`functools.wraps` copies these) is not unwrapped.
        run.guarded = (stage, method, run)  # type: ignore[attr-defined]
        return run

    return decorate


async def guarded_await(runtime: Runtime, stage: str, pending: Awaitable[None]) -> None:
    """A stage's work off the event loop, under its stage's guard while it is awaited."""
    try:
        await pending
    except Exception:
        runtime.recorder.fault(stage)


class Stage:
    """A stage of the pipeline: hook methods named as mitmproxy's, run by `Pipeline`."""

    def __init__(self, runtime: Runtime, connections: ConnectionMap) -> None:
        self.runtime = runtime
        self.connections: ConnectionMap[connection.Client, ConnectionState] = connections

    def client_of(self, client: connection.Client) -> str:
        """The address a client connection is from: for a tunnel opened through a trusted
        balancer, the client its CONNECT was forwarded for; otherwise the connection's
        peer."""
        tunnel = self.connections.get(client)
        if tunnel is not None and tunnel.tunnel_client is not None:
            return tunnel.tunnel_client.address
        return canonical_address(client.peername[0])

    def flow_client(self, flow: http.HTTPFlow | Any) -> str:
        """The address a request is from (a balancer's forwarded client where trusted)."""
        state = flow.metadata.get(KEY)
        if state is not None and state.client is not None:
            return state.client.address
        return self.client_of(flow.client_conn)

    def connection(self, client: connection.Client) -> ConnectionState:
        state = self.connections.get(client)
        if state is None:
            state = self.connections[client] = ConnectionState()
        return state


def state_of(flow: http.HTTPFlow) -> FlowState | None:
    """The flow's `FlowState`. (The hooks every request runs read `flow.metadata.get(KEY)`
    themselves: a call less each, nine a request.)"""
    return flow.metadata.get(KEY)


def request_view(flow: http.HTTPFlow) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (first value), made once per request:
    mitmproxy's `Headers` finds a name by lower-casing every field it holds."""
    return {name.lower(): value for name, value in reversed(flow.request.headers.fields)}


def header_view(flow: http.HTTPFlow) -> dict[bytes, bytes]:
    """The flow's `request_view` (in its `FlowState`, made here if it is the first to ask):
    the stages that follow read the same one. A stage may take a header out of it (one
    that never reaches the origin)."""
    state = flow.metadata.get(KEY)
    if state is None:
        state = flow.metadata[KEY] = FlowState(request_view(flow))
    return state.headers


def server_address(server: connection.Server | None) -> tuple[str, int] | None:
    """Where the proxy actually connected: the server connection's peer, if it opened."""
    peer = server.peername if server is not None else None
    return (canonical_address(peer[0]), peer[1]) if peer else None


def exchange_of(flow: http.HTTPFlow, state: FlowState) -> Exchange:
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
        response_head_bytes=head_size(request, response) if response is not None else None,
        duration_ns=duration,
        # The request's own client: behind a trusted balancer, the forwarded one (a
        # tunnel's requests have their CONNECT's: `addon_identity.Authenticate`).
        client_address=(
            state.client.address
            if state.client is not None
            else canonical_address(flow.client_conn.peername[0])
        ),
        error=_safe_error(flow.error.msg) if flow.error else None,
        destination=server_address(flow.server_conn),
    )


def head_size(request: http.Request, response: http.Response) -> int:
    """The response's status line and headers in bytes, as mitmproxy writes them for an
    HTTP/1 client (CRLFs included). HTTP/2 and HTTP/3 heads are counted in that same
    HTTP/1.1 form: their compressed (HPACK/QPACK) size is not known to add-ons."""
    data = response.data
    version, reason = data.http_version, data.reason
    if request.is_http2 or request.is_http3 or response.is_http2 or response.is_http3:
        version, reason = b"HTTP/1.1", RESPONSES.get(response.status_code, "").encode()
    size = len(version) + len(reason) + len(str(response.status_code)) + 6  # 2 SP, 2 CRLF
    for name, value in data.headers.fields:
        size += len(name) + len(value) + 4  # ": " and CRLF
    return size


def _safe_error(message: str) -> str:
    """An error message without anything that looks like a URL's query string."""
    words = [strip_query(w) if "?" in w else w for w in message.split()]
    return " ".join(words)[:300]


# ---------------------------------------------------------------------------------- the add-on
