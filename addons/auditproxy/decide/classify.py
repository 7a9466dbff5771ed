"""The domain-suffix index: which policy rule does a host fall under?

A lookup walks the host's suffixes label by label ("a.b.facebook.com", "b.facebook.com",
"facebook.com", "com") in one dict, so its cost depends on the host's length and never on
the number of rules. Only whole labels are compared: "notfacebook.com" never matches
"facebook.com". The most specific domain wins, so a policy may carve a subdomain out of a
site ("business.facebook.com" under another category).

No mitmproxy imports.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from auditproxy.policy.hosts import normalize_host
from auditproxy.policy.model import Action, Policy, Site

OTHER = "other"  # category and site label for everything the policy does not name


@dataclass(frozen=True, slots=True)
class Match:
    """What the policy says about one host."""

    category: str
    site: str
    action: Action
    rule: str  # "category/site", or "default"
    notice: bool  # a monitored site where the daily notice applies

    @classmethod
    def for_site(cls, site: Site) -> Match:
        return cls(site.category, site.name, site.action, site.rule_name, site.notice)

    @classmethod
    def default(cls, action: Action) -> Match:
        return cls(OTHER, OTHER, action, "default", False)


class Classifier:
    """The policy's domains in a suffix index."""

    __slots__ = ("_default", "_index")

    def __init__(self, policy: Policy) -> None:
        self._default = Match.default(policy.default_action)
        index: dict[str, Match] = {}
        for site in policy.sites:
            match = Match.for_site(site)
            for domain in site.domains:
                index[domain] = match
        self._index = index

    def __len__(self) -> int:
        return len(self._index)

    def lookup(self, host: str) -> Match:
        """Classify an already normalised host (see `normalize_host`)."""
        index = self._index
        while True:
            match = index.get(host)
            if match is not None:
                return match
            dot = host.find(".")
            if dot < 0:
                return self._default
            host = host[dot + 1 :]

    def classify(self, host: str) -> Match:
        """Classify a host as it comes (any case, trailing dot, port, IDN, IP literal).

        Something that is not a host at all falls under the default action.
        """
        try:
            return self.lookup(normalize_host(host))
        except ValueError:
            return self._default

    def classify_url(self, url: str) -> tuple[str, Match]:
        """(normalised host, match) for a URL; a bare host name is accepted too."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        host = parts.netloc.rsplit("@", 1)[-1]
        normalized = normalize_host(host)
        return normalized, self.lookup(normalized)


def stricter(a: Match, b: Match) -> Match:
    """The match whose action is stricter; `a` on a tie.

    Used when two names for one connection disagree (the TLS server name and the Host
    header): a client must not escape monitoring by fronting a bypassed domain.
    """
    return b if b.action.strictness > a.action.strictness else a
