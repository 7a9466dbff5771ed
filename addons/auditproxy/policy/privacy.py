"""The policy's privacy settings, for the page "what is recorded about me": how long the
access log is kept (`logging.retention_days`) and whom to ask (`contact`).

Readers of YAML nodes in the manner of `policy.nodes`: each reports its problems with
their lines and returns None when a setting cannot be used.
"""

from __future__ import annotations

import re

import yaml

from auditproxy.policy.model import Contact
from auditproxy.policy.nodes import NodeReader, kind_of

_CONTACT_KEYS = ("name", "email", "url")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\Z")
_MAX_RETENTION_DAYS = 36_600  # a hundred years: anything longer is a typo


class PrivacyReader(NodeReader):
    """`logging.retention_days` and `contact`."""

    def retention_days(self, node: yaml.Node) -> int | None:
        what = "logging: retention_days"
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:int":
            self.problem(node, f"{what} must be a whole number of days, not {kind_of(node)}")
            return None
        try:
            days = int(str(node.value).replace("_", ""))
        except ValueError:
            days = -1  # 0x.., 0o.., 1:30: not how anyone writes a number of days
        if not 1 <= days <= _MAX_RETENTION_DAYS:
            self.problem(
                node, f"{what} must be between 1 and {_MAX_RETENTION_DAYS}, not {node.value}"
            )
            return None
        return days

    def contact(self, pair: tuple[yaml.Node, yaml.Node] | None) -> Contact | None:
        """`contact`: whom staff ask about what is recorded (a name, an email or a link)."""
        if pair is None:
            return None
        items = self.mapping(pair[1], "contact", _CONTACT_KEYS)
        if items is None:
            return None
        name = self.required(
            items, "name", pair[0], "contact", lambda n: self.string(n, "contact: name")
        )
        email = self.optional(items, "email", self.email, None)
        url = self.optional(items, "url", lambda n: self.url(n, "contact: url"), None)
        if "email" not in items and "url" not in items:
            self.problem(pair[0], "contact: give an 'email' or a 'url' (or both)")
        return Contact(name, email, url) if name is not None else None

    def email(self, node: yaml.Node) -> str | None:
        value = self.string(node, "contact: email")
        if value is not None and not _EMAIL.match(value):
            self.problem(node, f"contact: email {value!r} is not an email address")
            return None
        return value
