"""One policy, compiled: the request pipeline classify -> identify -> decide, as pure code.

An `Engine` is immutable and built off the event loop when the policy (re)loads; the
add-on swaps the whole engine at once, so a request is decided by one policy, never half
of an old one and half of a new one. No mitmproxy imports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from auditproxy.decide.auth import AuthNote
from auditproxy.decide.classify import Classifier, Match, stricter
from auditproxy.decide.destinations import Destinations
from auditproxy.decide.forwarded import ClientAddress, client_address
from auditproxy.decide.identity import (
    AddressSet,
    Identity,
    IdentityResolver,
    Pseudonymizer,
    user_fields,
)
from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import (
    Action,
    ClientRefusal,
    GroupRule,
    LogAs,
    NoticeSettings,
    Policy,
)

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
    # The policy group that decided (its overrides applied), and the notice's wording and
    # scope for this person (None: the policy's own).
    group: str | None = None
    notice: NoticeSettings | None = None
    auth: AuthNote | None = None  # what proxy authentication said (scheme, or why not)
    forwarded: str | None = None  # a balancer's X-Forwarded-For worth noting (`Forwarding`)

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
        "balancers",
        "classifier",
        "clients",
        "destinations",
        "groups",
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
        self.balancers = AddressSet(policy.balancers)
        self.destinations = Destinations(policy.destinations)
        # Admission (`decide.admission`): outsiders closed at connect; front proxies carry
        # everyone's connections, so no per-address cap applies to them.
        self.refuse_at_connect = policy.refuse is ClientRefusal.CONNECT
        self.trusted_proxies = AddressSet(policy.identity.trusted_proxies)
        self.identity = IdentityResolver(policy.identity)
        self.log_as = policy.identity.log_as
        self.groups = policy.groups
        logs_pseudonyms = self.log_as is LogAs.PSEUDONYM or any(
            group.log_as is LogAs.PSEUDONYM for group in policy.groups
        )
        self.pseudonymize = Pseudonymizer(secret) if logs_pseudonyms else None

    def connection_allowed(self, address: str) -> bool:
        """May this address connect at all? The policy's clients, and its trusted
        balancers (behind which each request's own client is checked, `client`)."""
        return address in self.clients or address in self.balancers

    def client(self, peer: str, forwarded_for: Sequence[str]) -> ClientAddress:
        """The address a request is from: behind a trusted balancer, its X-Forwarded-For."""
        return client_address(peer, forwarded_for, self.balancers)

    def first_group(self, groups: Iterable[str]) -> GroupRule | None:
        """The policy's first group (in its order) among a person's directory groups."""
        if not self.groups:
            return None
        names = {group.casefold() for group in groups}
        for rule in self.groups:
            if rule.directory_group.casefold() in names:
                return rule
        return None

    @property
    def identity_header(self) -> str | None:
        return self.identity.header

    def classify_names(
        self, names: Iterable[str | None], group: GroupRule | None = None
    ) -> tuple[str, Match, bool]:
        """The stricter match over every name a connection goes by (Host, SNI, CONNECT),
        each with the group's overrides.

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
            match = override(self.classifier.lookup(host), group)
            if first is None:
                first, best = host, match
            else:
                differ = differ or host != first
                best = stricter(best, match)  # type: ignore[arg-type]
        if first is None or best is None:
            return "", override(Match.default(self.policy.default_action), group), False
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
        auth: AuthNote | None = None,
        groups: Iterable[str] = (),
        forwarded: str | None = None,
    ) -> Decision:
        """`connect_to`: where the proxy would connect (the CONNECT target, the request's
        absolute-form host), one of the names if it differs from `host`. `client_address`:
        the request's own client (behind a balancer, the forwarded one). `auth`: what the
        proxy's own authentication proved; `groups`: the person's directory groups."""
        group = self.first_group(groups)
        name, match, differ = self.classify_names((host, sni, *other_names, connect_to), group)
        user = auth.user if auth is not None and auth.user else proxyauth_user
        identity = self.identity.resolve(
            user, header_value, client_address, inner_header=inner_header
        )
        destination = _normalized(connect_to)
        return Decision(
            match=match,
            identity=identity,
            user=self._user_fields(identity, group),
            allowed_client=client_address in self.clients,
            host=name,
            sni=sni or None,
            ruleset=self.policy.name,
            version=self.policy.sha256,
            destination=destination if destination != name else None,
            names_differ=differ,
            refusal=self.destinations.refusal_for_name(destination),
            group=group.name if group is not None else None,
            notice=group.notice if group is not None else None,
            auth=auth,
            forwarded=forwarded,
        )

    def with_groups(self, decision: Decision, groups: Iterable[str]) -> Decision:
        """The decision for a person found in these directory groups (looked up after it
        was made): the first policy group's overrides applied."""
        group = self.first_group(groups)
        if group is None:
            return decision
        names = (decision.host, decision.sni, decision.destination)
        _, match, _ = self.classify_names(names, group)
        return replace(
            decision,
            match=match,
            user=self._user_fields(decision.identity, group),
            group=group.name,
            notice=group.notice,
        )

    def _user_fields(self, identity: Identity, group: GroupRule | None) -> dict[str, str]:
        log_as = group.log_as if group is not None and group.log_as else self.log_as
        return user_fields(identity, log_as, self.pseudonymize)


def override(match: Match, group: GroupRule | None) -> Match:
    """A match with a group's action for its site or category, and its notice switch."""
    if group is None:
        return match
    action = group.sites.get(match.site) or group.categories.get(match.category) or match.action
    if action is not Action.MONITOR:
        notice = False
    elif group.notice_enabled is not None:
        notice = group.notice_enabled
    else:  # as the category says; a site the group made monitored gets the notice
        notice = match.notice if match.action is Action.MONITOR else True
    if action is match.action and notice == match.notice:
        return match
    return replace(match, action=action, notice=notice)


def _normalized(host: str | None) -> str | None:
    if not host:
        return None
    try:
        return normalize_host(host)
    except ValueError:
        return None
