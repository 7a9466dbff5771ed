"""What every stage of the pipeline shares: the fail-open guard, the runtime, and the
per-flow and per-connection state. mitmproxy imports (the hooks' types)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any
from weakref import WeakKeyDictionary

from mitmproxy import connection, http

from auditproxy.decide.identity import canonical_address
from auditproxy.flowstate import KEY, ConnectionState, FlowState
from auditproxy.runtime import Runtime

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
            return None if pending is None else _guarded_await(self, stage, pending)

        return run

    return decorate


async def _guarded_await(owner: Stage, stage: str, pending: Awaitable[None]) -> None:
    try:
        await pending
    except Exception:
        owner.runtime.recorder.fault(stage)


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


def server_address(server: connection.Server | None) -> tuple[str, int] | None:
    """Where the proxy actually connected: the server connection's peer, if it opened."""
    peer = server.peername if server is not None else None
    return (canonical_address(peer[0]), peer[1]) if peer else None
