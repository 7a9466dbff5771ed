"""What the policy says about a URL, for `auditproxy classify`: for anyone, or for a
person (`--user`) in some directory groups (`--groups`), whose policy group then applies.
Pure."""

from __future__ import annotations

from typing import Any

from auditproxy.decide.decision import Engine, override
from auditproxy.decide.names import normalize_name
from auditproxy.policy.model import NameCase, Policy

NO_KEY = b"\0" * 32  # no pseudonym is shown: no key is needed


class Explainer:
    def __init__(self, policy: Policy, user: str | None, groups: list[str]) -> None:
        self.policy = policy
        self.engine = Engine(policy, NO_KEY)
        self.user, self.groups = user, groups
        self.group = self.engine.first_group(groups)

    def __call__(self, url: str) -> dict[str, Any]:
        """The JSON object for one URL; ValueError for what is not a URL or host."""
        policy, group = self.policy, self.group
        host, match = self.engine.classifier.classify_url(url)
        match = override(match, group)
        notice = group.notice if group is not None and group.notice else policy.notice
        record: dict[str, Any] = {
            "url": url,
            "host": host,
            "category": match.category,
            "site": match.site,
            "action": match.action.value,
            "rule": match.rule,
            "notice": match.notice and bool(notice.languages),
            "policy": policy.name,
            "policy_sha256": policy.sha256,
        }
        if self.user is None and not self.groups:
            return record
        log_as = group.log_as if group is not None and group.log_as else policy.identity.log_as
        record.update(
            {
                "user": self._user(),
                "groups": self.groups,
                "group": group.name if group is not None else None,
                "log_as": log_as.value,
                "notice_scope": notice.scope.value,
                "notice_languages": list(notice.languages),
            }
        )
        return record

    def _user(self) -> str | None:
        """The name as the proxy logs it: a principal of the policy's realm without it,
        normalised as the policy's identity says."""
        if not self.user:
            return None
        realm = self.policy.auth.realm
        name, at, its_realm = self.user.rpartition("@")
        user = name if at and name and realm and its_realm.upper() == realm else self.user
        return normalize_name(user, self.policy.identity.case is NameCase.INSENSITIVE)
