"""One policy, compiled: the request pipeline classify -> identify -> decide, as pure code.

An `Engine` is immutable and built off the event loop when the policy (re)loads; the
add-on swaps the whole engine at once, so a request is decided by one policy, never half
of an old one and half of a new one. No mitmproxy imports.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from auditproxy.decide.classify import Classifier, Match, stricter
from auditproxy.decide.identity import (
    AddressSet,
    Identity,
    IdentityResolver,
    Pseudonymizer,
    user_fields,
)
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import Action, ClientRefusal, LogAs, Policy


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

    @property
    def action(self) -> Action | None:
        """The action to enforce; None for a refused client (there is no site to speak of)."""
        return self.match.action if self.allowed_client else None

    @property
    def action_label(self) -> str:
        return "refuse" if not self.allowed_client else self.match.action.value


class Engine:
    """A policy with its indexes, and the proxy's secret (the pseudonym key file)."""

    __slots__ = (
        "classifier",
        "clients",
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

    def classify_names(self, names: Iterable[str | None]) -> tuple[str, Match]:
        """The stricter match over every name a connection goes by (Host, SNI, CONNECT).

        Returns the first usable name (the one the record shows) and the match.
        """
        first: str | None = None
        best: Match | None = None
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
                best = stricter(best, match)  # type: ignore[arg-type]
        if first is None or best is None:
            return "", Match.default(self.policy.default_action)
        return first, best

    def decide(
        self,
        *,
        host: str | None,
        other_names: Iterable[str | None] = (),
        sni: str | None = None,
        client_address: str,
        proxyauth_user: str | None = None,
        header_value: str | None = None,
    ) -> Decision:
        name, match = self.classify_names((host, sni, *other_names))
        identity = self.identity.resolve(proxyauth_user, header_value, client_address)
        return Decision(
            match=match,
            identity=identity,
            user=user_fields(identity, self.log_as, self.pseudonymize),
            allowed_client=client_address in self.clients,
            host=name,
            sni=sni or None,
            ruleset=self.policy.name,
            version=self.policy.sha256,
        )
