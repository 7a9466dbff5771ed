"""Who the person is: the first stage of the pipeline, and the options of identity.

    Authenticate  for requests and CONNECTs: the client's own address behind a trusted
                  balancer (X-Forwarded-For; the tunnel inherits its CONNECT's), then
                  proxy authentication by the proxy itself (`decide.auth`): the
                  connection's principal, a credential checked off the event loop
                  (Kerberos with the keytab, or Basic behind the policy's switch), a 407,
                  or the address when the policy falls back
    IdentityOptions  the options -> `identity_services.IdentityServices`
    (`addon_groups.Groups`, after Decide: the person's directory groups)

A stage that must wait returns an awaitable only then (`Pipeline` awaits it); a known
principal or cached groups cost a dictionary look-up. Every wait is bounded (a deadline,
and a pool that refuses at once when full); every outcome is counted.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mitmproxy import ctx, exceptions, http

from auditproxy.connection_map import ConnectionMap
from auditproxy.decide import pages
from auditproxy.decide.auth import (
    NO_CREDENTIAL,
    AuthNote,
    Kind,
    Outcome,
    Step,
    challenge,
    next_step,
    validated,
)
from auditproxy.decide.decision import Engine
from auditproxy.decide.forwarded import HEADER, Forwarding
from auditproxy.decide.identity import canonical_address
from auditproxy.flowstate import KEY, Answered, ConnectionState, FlowState
from auditproxy.identity_options import IDENTITY_OPTIONS, REPLAY_CACHE_NAME
from auditproxy.identity_services import AuthOptions, IdentityServices, directory_settings
from auditproxy.policy.model import AuthMethod
from auditproxy.runtime import Runtime
from auditproxy.stages import Stage, guarded, header_view, request_view

logger = logging.getLogger("auditproxy")

_AUTH_OPTIONS = {
    "auditproxy_keytab",
    "auditproxy_service_principal",
    "auditproxy_replay_cache",
    "auditproxy_auth_timeout",
    "auditproxy_auth_workers",
    "auditproxy_basic_auth",
    "confdir",
}
_PREFIX = "auditproxy_"


class IdentityOptions:
    """The identity options -> `IdentityServices` (in `services`); and the check that the
    policy in force can be served with them, run on every policy load (a reload that asks
    for what is not configured is refused, and the last good policy stays)."""

    name = "auditproxy.identity"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.services = IdentityServices()
        self._auth_ready = False
        runtime.checks.append(self.check)
        metrics = runtime.metrics.identity
        metrics.auth_pending.set_function(lambda: float(self.services.auth_pending))
        metrics.directory_pending.set_function(
            lambda: float(d.pending) if (d := self.services.directory) else 0.0
        )

    def configure(self, updated: set[str]) -> None:
        options = ctx.options
        if not hasattr(options, "auditproxy_keytab"):
            return  # our options are still being added
        try:
            if updated & _AUTH_OPTIONS or not self._auth_ready:
                replay = options.auditproxy_replay_cache or str(
                    Path(options.confdir).expanduser() / REPLAY_CACHE_NAME
                )
                auth = AuthOptions(
                    options.auditproxy_keytab,
                    options.auditproxy_service_principal,
                    replay,
                    options.auditproxy_auth_timeout,
                    options.auditproxy_auth_workers,
                )
                self.services.set_auth(auth, _basic_validator(options.auditproxy_basic_auth))
                self._auth_ready = True
            if any(name.startswith("auditproxy_directory") for name in updated) or (
                self.services.directory is None and options.auditproxy_directory
            ):
                values = {
                    name.removeprefix(_PREFIX): getattr(options, name)
                    for name, *_ in IDENTITY_OPTIONS
                    if name.startswith("auditproxy_directory")
                }
                self.services.set_directory(directory_settings(values))
            if updated & {"proxyauth", *_AUTH_OPTIONS} and self.runtime.engine is not None:
                self.check(self.runtime.engine)
        except (ValueError, OSError) as e:
            raise exceptions.OptionsError(str(e)) from None

    def check(self, engine: Engine) -> None:
        """Raise ValueError when the policy asks for what the options do not provide."""
        options = ctx.options
        methods = engine.policy.auth.methods
        if not methods or not hasattr(options, "auditproxy_keytab"):
            return
        if getattr(options, "proxyauth", None):
            raise ValueError(
                "the policy's auth and mitmproxy's proxyauth option both ask for proxy "
                "authentication (proxyauth answers first, with Basic only): unset proxyauth, "
                "and give its value to auditproxy_basic_auth with 'basic' in auth: methods"
            )
        if AuthMethod.NEGOTIATE in methods and not options.auditproxy_keytab:
            raise ValueError(
                "the policy's auth lists negotiate: set auditproxy_keytab (and "
                "auditproxy_service_principal) to the proxy's keytab"
            )
        if AuthMethod.BASIC in methods and not options.auditproxy_basic_auth:
            raise ValueError(
                "the policy's auth lists basic: set auditproxy_basic_auth to where passwords "
                "are checked ('@/path/htpasswd' or 'ldap[s]:...')"
            )

    def done(self) -> None:
        self.services.close()


def _basic_validator(spec: str) -> Any:
    """mitmproxy's own validators (htpasswd, LDAP bind, one user), as proxyauth builds them."""
    if not spec:
        return None
    from mitmproxy.addons import proxyauth

    if spec.startswith("@"):
        return proxyauth.Htpasswd(spec)
    if spec.startswith("ldap"):
        return proxyauth.Ldap(spec)
    if ":" in spec:
        return proxyauth.SingleUser(spec)
    raise ValueError("auditproxy_basic_auth: '@/path/htpasswd', 'ldap[s]:...' or 'user:pass'")


# ---------------------------------------------------------------------------- the stages


class Authenticate(Stage):
    """The client behind a trusted balancer, then proxy authentication."""

    def __init__(
        self, runtime: Runtime, connections: ConnectionMap, services: IdentityOptions
    ) -> None:
        super().__init__(runtime, connections)
        self.services = services.services

    @guarded("auth")
    def http_connect(self, flow: http.HTTPFlow) -> Any:
        return self._authenticate(flow, connect=True)

    @guarded("auth")
    def requestheaders(self, flow: http.HTTPFlow) -> Any:
        return self._authenticate(flow, connect=False)

    def _authenticate(self, flow: http.HTTPFlow, *, connect: bool) -> Any:
        engine = self.runtime.engine
        if engine is None or flow.response or flow.error or not flow.live:
            return None
        auth = engine.policy.auth
        tunnel = self.connections.get(flow.client_conn)
        if not connect and tunnel is not None and tunnel.in_tunnel:
            # Inside a tunnel: who its CONNECT came from and what it proved. Nothing is
            # asked here (a 407 would seem to come from the site).
            if tunnel.tunnel_client is not None or tunnel.tunnel_auth is not None:
                state = self._state(flow)
                state.client, state.auth = tunnel.tunnel_client, tunnel.tunnel_auth
            return None
        if not (engine.balancers or auth.enabled) and b"x-forwarded-for" not in header_view(flow):
            return None
        state = self._state(flow)
        if engine.balancers or b"x-forwarded-for" in state.headers:
            self._forwarded(engine, flow, state)
        if connect:
            self.connection(flow.client_conn).tunnel_client = state.client
        if not auth.enabled:
            return None
        peer = flow.client_conn.peername[0]
        address = state.client.address if state.client else canonical_address(peer)
        if address not in engine.clients:
            return None  # refused by Enforce, not asked who they are
        connection = self.connection(flow.client_conn)
        credential = state.header(b"proxy-authorization")
        step = next_step(connection.auth, auth, credential, address, in_tunnel=False)
        if step.kind is Kind.VALIDATE:
            return self._validate(engine, flow, state, connection, step, address, connect)
        self._apply(engine, flow, state, connection, step, connect)
        return None

    def _state(self, flow: http.HTTPFlow) -> FlowState:
        state = flow.metadata.get(KEY)
        if state is None:
            state = flow.metadata[KEY] = FlowState(request_view(flow))
        return state

    def _forwarded(self, engine: Engine, flow: http.HTTPFlow, state: FlowState) -> None:
        # Read from the request only if the view has it (a scan of every field otherwise).
        present = b"x-forwarded-for" in state.headers
        values = flow.request.headers.get_all(HEADER) if present else []
        client = engine.client(flow.client_conn.peername[0], values)
        state.client = client
        if client.forwarding is not None:
            self.runtime.recorder.forwarded(client.forwarding.value)
        if client.forwarding is not None and client.forwarding is not Forwarding.UNTRUSTED:
            # The balancer's header is for us: the client's address never reaches a site.
            del flow.request.headers[HEADER]
            state.headers.pop(b"x-forwarded-for", None)

    async def _validate(
        self,
        engine: Engine,
        flow: http.HTTPFlow,
        state: FlowState,
        connection: ConnectionState,
        step: Step,
        address: str,
        connect: bool,
    ) -> None:
        assert step.scheme is not None and step.credential is not None
        outcome, principal = await self.services.validate(step.scheme, step.credential)
        self.runtime.recorder.auth_validated(step.scheme.value, outcome.value)
        if outcome is not Outcome.OK:  # the record and the metric say it; a client could
            # flood the operator's log with junk tokens, so this line is for debugging only
            logger.debug("proxy authentication (%s) refused: %s", step.scheme.value, outcome.value)
        auth = engine.policy.auth
        after = validated(connection.auth, auth, step, outcome, principal, address)
        self._apply(engine, flow, state, connection, after, connect)

    def _apply(
        self,
        engine: Engine,
        flow: http.HTTPFlow,
        state: FlowState,
        connection: ConnectionState,
        step: Step,
        connect: bool,
    ) -> None:
        recorder = self.runtime.recorder
        auth = connection.auth
        if step.kind is Kind.USE:
            state.auth = AuthNote(auth.user(engine.policy.auth.realm), auth.scheme)
        elif step.kind is Kind.FALLBACK:
            state.auth = AuthNote(failure=step.reason)
            recorder.auth_fallback(step.reason or "")
        elif step.kind is Kind.CHALLENGE:
            recorder.auth_challenged(step.reason or "")
            if step.reason and step.reason != NO_CREDENTIAL:  # one was refused: say why
                state.auth = AuthNote(failure=step.reason)
            values = challenge(engine.policy.auth, engine.policy.name)
            headers = [(b"Proxy-Authenticate", v.encode()) for v in values]
            headers += [(k.encode(), v.encode()) for k, v in pages.PAGE_HEADERS.items()]
            page = pages.auth_required_page(engine.policy)
            flow.response = http.Response.make(407, page, headers)
            state.answered = Answered.AUTH_REQUIRED
        if connect:
            self.connection(flow.client_conn).tunnel_auth = state.auth
