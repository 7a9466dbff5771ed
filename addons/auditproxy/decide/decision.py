"""One policy, compiled: the request pipeline classify -> identify -> decide, as pure code.

An `Engine` is immutable and built off the event loop when the policy (re)loads; the
add-on swaps the whole engine at once, so a request is decided by one policy, never half
of an old one and half of a new one. No mitmproxy imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from auditproxy.decide.classify import Classifier, Match, stricter
from auditproxy.decide.destinations import Destinations
from auditproxy.decide.identity import (
    AddressSet,
    Identity,
    IdentityResolver,
    Pseudonymizer,
    user_fields,
)
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import Action, ClientRefusal, LogAs, Policy

# A request whose Host header is repeated or is no host at all: origins disagree on what it
# names (one may take what comes before a `:`), so it is refused, never classified by guess.
BAD_HOST = "request-bad-host"


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy decided for one request or tunnel (kept in the flow's `FlowState`)."""

    match: Match
    identity: Identity
    user: dict[str, str]  # the access log's user fields (name or pseudonym)
    allowed_client: bool  # False: the client is outside the policy's CIDRs, refuse it
    host: str  # the normalised name the request is logged under
    sni: str | None
    ruleset: str  # policy name
    version: str  # policy sha256
    # Where the proxy is asked to connect (CONNECT target, absolute-form or Host), when it
    # is another name than `host`; the names then disagree, and the stricter rule decided.
    destination: str | None = None
    names_differ: bool = False
    refusal: str | None = None  # why the proxy must not connect there (decide.destinations)

    @property
    def action(self) -> Action | None:
        """The action to enforce; None when refused (a client outside the policy's networks,
        or a destination the proxy never connects to): there is no site to speak of."""
        return self.match.action if self.allowed_client and self.refusal is None else None

    @property
    def action_label(self) -> str:
        return "refuse" if self.action is None else self.match.action.value

    def refused(self, reason: str) -> Decision:
        """The same decision, refused: a destination found forbidden after resolution, or
        a request that names its site ambiguously (`BAD_HOST`)."""
        return replace(self, refusal=reason)

    @property
    def refusal_label(self) -> str | None:
        """`labels.refusal` and the refusals metric's `reason`."""
        if self.refusal is None:
            return None
        return self.refusal if self.refusal == BAD_HOST else f"destination-{self.refusal}"


class Engine:
    """A policy with its indexes, and the proxy's secret (the pseudonym key file)."""

    __slots__ = (
        "classifier",
        "clients",
        "destinations",
        "identity",
        "log_as",
        "policy",
        "pseudonymize",
        "refuse_at_connect",
        "secret",
        "trusted_proxies",
    )

    def __init__(self, policy: Policy, secret: bytes) -> None:
        self.policy = policy
        self.secret = secret
        self.classifier = Classifier(policy)
        self.clients = AddressSet(policy.clients)
        self.destinations = Destinations(policy.destinations)
        # Admission (`decide.admission`): outsiders closed at connect; front proxies carry
        # everyone's connections, so no per-address cap applies to them.
        self.refuse_at_connect = policy.refuse is ClientRefusal.CONNECT
        self.trusted_proxies = AddressSet(policy.identity.trusted_proxies)
        self.identity = IdentityResolver(policy.identity)
        self.log_as = policy.identity.log_as
        self.pseudonymize = Pseudonymizer(secret) if self.log_as is LogAs.PSEUDONYM else None

    @property
    def identity_header(self) -> str | None:
        return self.identity.header

    def classify_names(self, names: Iterable[str | None]) -> tuple[str, Match, bool]:
        """The stricter match over every name a connection goes by (Host, SNI, CONNECT).

        Returns the first usable name (the one the record shows), the match, and whether
        the names are not all the same host.
        """
        first: str | None = None
        best: Match | None = None
        differ = False
        for name in names:
            if not name:
                continue
            try:
                host = normalize_host(name)
            except ValueError:
                continue
            match = self.classifier.lookup(host)
            if first is None:
                first, best = host, match
            else:
                differ = differ or host != first
                best = stricter(best, match)  # type: ignore[arg-type]
        if first is None or best is None:
            return "", Match.default(self.policy.default_action), False
        return first, best, differ

    def decide(
        self,
        *,
        host: str | None,
        other_names: Iterable[str | None] = (),
        sni: str | None = None,
        client_address: str,
        proxyauth_user: str | None = None,
        header_value: str | None = None,
        inner_header: str | None = None,
        connect_to: str | None = None,
    ) -> Decision:
        """`connect_to`: where the proxy would connect (the CONNECT target, the request's
        absolute-form host), one of the names if it differs from `host`."""
        name, match, differ = self.classify_names((host, sni, *other_names, connect_to))
        identity = self.identity.resolve(
            proxyauth_user, header_value, client_address, inner_header=inner_header
        )
        destination = _normalized(connect_to)
        return Decision(
            match=match,
            identity=identity,
            user=user_fields(identity, self.log_as, self.pseudonymize),
            allowed_client=client_address in self.clients,
            host=name,
            sni=sni or None,
            ruleset=self.policy.name,
            version=self.policy.sha256,
            destination=destination if destination != name else None,
            names_differ=differ,
            refusal=self.destinations.refusal_for_name(destination),
        )


def _normalized(host: str | None) -> str | None:
    if not host:
        return None
    try:
        return normalize_host(host)
    except ValueError:
        return None
