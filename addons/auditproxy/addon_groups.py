"""The person's directory groups, after Decide: from the cache (a dictionary look-up), or
looked up off the event loop (bounded by a deadline and a pool that refuses at once when
full, failing open to "no groups", counted), and the first policy group's overrides applied
to the decision (`Engine.with_groups`). A tunnel's requests have its CONNECT's groups.

A stage that must wait returns an awaitable only then (`Pipeline` awaits it).
"""

from __future__ import annotations

import logging
from typing import Any

from mitmproxy import http

from auditproxy.addon_identity import IdentityOptions
from auditproxy.connection_map import ConnectionMap
from auditproxy.decide.decision import Engine
from auditproxy.decide.directory import Directory, Membership, Reason, foreign_realm
from auditproxy.flowstate import KEY, FlowState
from auditproxy.policy.model import IdentitySource
from auditproxy.runtime import Runtime
from auditproxy.stages import Stage, guarded

logger = logging.getLogger("auditproxy")


class Groups(Stage):
    """The person's directory groups, and their policy group's overrides."""

    def __init__(
        self, runtime: Runtime, connections: ConnectionMap, services: IdentityOptions
    ) -> None:
        super().__init__(runtime, connections)
        self.services = services.services

    @guarded("directory")
    def http_connect(self, flow: http.HTTPFlow) -> Any:
        return self._groups(flow, connect=True)

    @guarded("directory")
    def requestheaders(self, flow: http.HTTPFlow) -> Any:
        return self._groups(flow, connect=False)

    def _groups(self, flow: http.HTTPFlow, *, connect: bool) -> Any:
        directory, engine = self.services.directory, self.runtime.engine
        state = flow.metadata.get(KEY)
        if directory is None or engine is None or not engine.groups:
            return None
        if state is None or state.decision is None or state.answered is not None:
            return None
        tunnel = self.connections.get(flow.client_conn)
        if not connect and tunnel is not None and tunnel.in_tunnel:
            if tunnel.tunnel_groups:  # the CONNECT's person: looked up once for the tunnel
                state.decision = engine.with_groups(state.decision, tunnel.tunnel_groups)
            return None
        identity = state.decision.identity
        if identity.source is IdentitySource.ADDRESS or not state.decision.allowed_client:
            return None
        principal = identity.name
        proven = state.auth is not None and state.auth.user is not None
        if proven and identity.source is IdentitySource.PROXY_AUTH and tunnel is not None:
            principal = tunnel.auth.principal or principal  # the full one, with its realm
        if foreign_realm(principal, engine.policy.auth.realm):
            self._apply(engine, flow, state, Membership(Reason.FOREIGN_REALM), connect)
            return None
        known = directory.cached(principal)
        if known is not None:
            self._apply(engine, flow, state, known, connect)
            return None
        return self._lookup(directory, engine, flow, state, principal, connect)

    async def _lookup(
        self,
        directory: Directory,
        engine: Engine,
        flow: http.HTTPFlow,
        state: FlowState,
        principal: str,
        connect: bool,
    ) -> None:
        membership = await directory.groups(principal)
        if membership.reason not in (Reason.OK, Reason.USER_NOT_FOUND) and not membership.cached:
            logger.warning(
                "directory look-up failed (%s): no groups for now. %s",
                membership.reason.value,
                membership.detail,
            )
        self._apply(engine, flow, state, membership, connect)

    def _apply(
        self,
        engine: Engine,
        flow: http.HTTPFlow,
        state: FlowState,
        membership: Membership,
        connect: bool,
    ) -> None:
        self.runtime.recorder.directory_lookup(membership.reason.value, membership.cached)
        assert state.decision is not None
        names = tuple(sorted(membership.names))
        state.decision = engine.with_groups(state.decision, names)
        if connect:
            tunnel = self.connection(flow.client_conn)
            tunnel.tunnel_groups = names
            if tunnel.connect_decision is not None:
                tunnel.connect_decision = state.decision
