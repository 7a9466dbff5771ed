"""The policy's sections about people: `auth` (proxy authentication the proxy asks for
itself) and `balancers` (whose X-Forwarded-For names the real client); `groups` in
`policy.groups`.

Readers of YAML nodes in the manner of `policy.nodes`: every problem with its line, and
warnings (valid, but worth a word from `auditproxy check`) with theirs.
"""

from __future__ import annotations

import re

import yaml

from auditproxy.policy.model import (
    AuthFailure,
    AuthMethod,
    AuthSettings,
    IdentitySettings,
    IdentitySource,
    IPNetwork,
    Problem,
)
from auditproxy.policy.nodes import line_of
from auditproxy.policy.sections import SettingsReader

_AUTH_KEYS = ("methods", "on_failure", "realm")
_BALANCER_KEYS = ("trusted",)
_GROUP_KEYS = ("name", "directory_group", "categories", "sites", "notice", "log_as")
_GROUP_NOTICE_KEYS = ("enabled", "scope", "languages", "texts")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_REALM = re.compile(r"^[^\s@]{1,255}\Z")
_RESERVED_GROUPS = ("other", "none")
MAX_GROUPS = 64  # group names are metric labels: bounded
BASIC_WARNING = (
    "auth: 'basic' sends each person's password in clear text (base64) on every request: "
    "anyone on the network between a browser and the proxy can read it; prefer 'negotiate'"
)


class PeopleReader(SettingsReader):
    """Readers for `auth`, `groups` and `balancers`."""

    def __init__(self) -> None:
        super().__init__()
        self.warnings: list[Problem] = []

    def warn(self, node: yaml.Node, message: str) -> None:
        self.warnings.append(Problem(line_of(node), f"warning: {message}"))

    # --- auth

    def auth(
        self, pair: tuple[yaml.Node, yaml.Node] | None, identity: IdentitySettings | None
    ) -> AuthSettings | None:
        if pair is None:
            return AuthSettings()
        node = pair[1]
        items = self.mapping(node, "auth", _AUTH_KEYS)
        if items is None:
            return None
        methods = self.required(items, "methods", node, "auth", self.auth_methods)
        on_failure = self.optional(
            items,
            "on_failure",
            lambda n: self.choice(n, "auth: on_failure", AuthFailure),
            AuthFailure.ADDRESS,
        )
        realm = self.optional(items, "realm", self.realm, None)
        if methods is None:
            return None
        if identity is not None and IdentitySource.PROXY_AUTH not in identity.sources:
            self.problem(
                node,
                "auth: identity: sources must include 'proxy_auth' (who authenticated is "
                "the person)",
            )
        if AuthMethod.BASIC in methods:
            self.warn(items["methods"][1], BASIC_WARNING)
        return AuthSettings(tuple(methods), on_failure, realm)

    def auth_methods(self, node: yaml.Node) -> list[AuthMethod] | None:
        items = self.sequence(node, "auth: methods")
        if items is None:
            return None
        result: list[AuthMethod] = []
        for item in items:
            method = self.choice(item, "auth: method", AuthMethod)
            if method in result:
                self.problem(item, f"auth: method {method.value!r} is listed twice")
            elif method is not None:
                result.append(method)
        if not items:
            self.problem(node, "auth: methods must list at least one (e.g. [negotiate])")
        return result

    def realm(self, node: yaml.Node) -> str | None:
        value = self.string(node, "auth: realm")
        if value is not None and not _REALM.match(value):
            self.problem(node, f"auth: realm {value!r} must be one word without '@'")
            return None
        return value.upper() if value is not None else None

    # --- balancers

    def balancers(self, pair: tuple[yaml.Node, yaml.Node] | None) -> tuple[IPNetwork, ...] | None:
        if pair is None:
            return ()
        items = self.mapping(pair[1], "balancers", _BALANCER_KEYS)
        if items is None:
            return None
        return self.required(
            items,
            "trusted",
            pair[1],
            "balancers",
            lambda n: self.networks(n, "balancers: trusted"),
        )
