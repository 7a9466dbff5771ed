"""Metric families about who people are: proxy authentication, directory groups, the
client address behind a balancer, and requests by policy group.

Part of `sinks.metrics.Metrics` (same registry). Labels are fixed vocabularies
(`decide.auth.Outcome`, `decide.directory.Reason`, `decide.forwarded.Forwarding`) or the
policy's own group names: never a user, a directory group, an address or a host.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from auditproxy.decide.auth import FALLBACK_REASONS, NO_CREDENTIAL, Outcome
from auditproxy.decide.directory import Reason
from auditproxy.decide.forwarded import Forwarding
from auditproxy.policy.model import AuthMethod

LOOKUP_SOURCES = ("directory", "cache")


class IdentityMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.auth_validations = Counter(
            "auditproxy_auth_validations",
            "Proxy-Authorization credentials checked by the proxy (off its event loop), by "
            "scheme and outcome (ok, expired, replay, wrong_key, timeout, busy...). A "
            "credential seen again on its connection is not checked again.",
            ["scheme", "outcome"],
            registry=r,
        )
        self.auth_challenges = Counter(
            "auditproxy_auth_challenges",
            "407 answers asking for proxy authentication, by reason (no_credential, or the "
            "failed credential's outcome when the policy refuses).",
            ["reason"],
            registry=r,
        )
        self.auth_fallbacks = Counter(
            "auditproxy_auth_fallbacks",
            "Requests identified by their address because proxy authentication failed or "
            "could not be checked in time (the policy's auth: on_failure: address), by reason.",
            ["reason"],
            registry=r,
        )
        self.auth_pending = Gauge(
            "auditproxy_auth_pending",
            "Credential checks running or queued now.",
            registry=r,
        )
        self.directory_lookups = Counter(
            "auditproxy_directory_lookups",
            "Directory group look-ups, by reason (ok, or why the person got no groups) and "
            "source (directory: asked the server; cache: answered from the cache).",
            ["reason", "source"],
            registry=r,
        )
        self.directory_pending = Gauge(
            "auditproxy_directory_pending",
            "Directory look-ups running or queued now.",
            registry=r,
        )
        self.forwarded = Counter(
            "auditproxy_forwarded",
            "Requests carrying X-Forwarded-For, by result: used (from a trusted balancer), "
            "missing or invalid (a trusted balancer's request without a usable one: its own "
            "address is used), ignored-untrusted-client (not from a trusted balancer).",
            ["result"],
            registry=r,
        )
        self.group_requests = Counter(
            "auditproxy_group_requests",
            "Requests decided by a policy group (the policy's groups: the first one a person "
            "is in), by group, category and action.",
            ["group", "category", "action"],
            registry=r,
        )
        for method in AuthMethod:
            for outcome in Outcome:
                self.auth_validations.labels(method.value, outcome.value)
        for reason in FALLBACK_REASONS:
            self.auth_fallbacks.labels(reason)
            self.auth_challenges.labels(reason)
        self.auth_challenges.labels(NO_CREDENTIAL)
        for lookup in Reason:
            for source in LOOKUP_SOURCES:
                self.directory_lookups.labels(lookup.value, source)
        for result in Forwarding:
            self.forwarded.labels(result.value)
