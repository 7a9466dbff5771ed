"""Reading PyYAML's node tree with line numbers: the building blocks of `policy.load`.

Parsing walks nodes rather than constructed Python objects, so every problem carries the
line it comes from, duplicate keys are caught, and all problems are reported at once.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import yaml

from auditproxy.policy.model import IPNetwork, Problem


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class NodeReader:
    """Reads YAML nodes, collecting every problem with its line instead of stopping.

    Each reader reports its own problem and returns None on failure, so a section reader
    goes on to find the next problem.
    """

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node | int, message: str) -> None:
        line = node if isinstance(node, int) else line_of(node)
        self.problems.append(Problem(line, message))

    # --- generic node readers: each reports its own problem and returns None on failure

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping, not {kind_of(node)}")
            return None
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, f"{what}: keys must be plain names")
                continue
            key = str(key_node.value)
            if key in items:
                first = line_of(items[key][0])
                self.problem(key_node, f"{what}: duplicate key {key!r} (first on line {first})")
                continue
            if allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                self.problem(
                    key_node,
                    f"{what}: unknown key {key!r}{suggestion} "
                    f"(expected one of: {', '.join(allowed)})",
                )
                continue
            items[key] = (key_node, value_node)
        return items

    def string(self, node: yaml.Node, what: str, *, nonempty: bool = True) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.problem(node, f"{what} must be text, not {kind_of(node)}")
            return None
        value = str(node.value)
        if nonempty and not value.strip():
            self.problem(node, f"{what} must not be empty")
            return None
        return value.strip()

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            self.problem(node, f"{what} must be true or false, not {kind_of(node)}")
            return None
        return str(node.value).lower() in ("true", "yes", "on")

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list, not {kind_of(node)}")
            return None
        return list(node.value)

    def choice[E: StrEnum](self, node: yaml.Node, what: str, enum: type[E]) -> E | None:
        value = self.string(node, what)
        if value is None:
            return None
        try:
            return enum(value)
        except ValueError:
            choices = ", ".join(e.value for e in enum)
            self.problem(node, f"{what}: unknown value {value!r} (expected one of: {choices})")
            return None

    def networks(self, node: yaml.Node, what: str) -> tuple[IPNetwork, ...] | None:
        items = self.sequence(node, what)
        if items is None:
            return None
        nets: list[IPNetwork] = []
        for item in items:
            text = self.string(item, f"{what} entry")
            if text is None:
                continue
            try:
                nets.append(ipaddress.ip_network(text, strict=True))
            except ValueError as e:
                self.problem(item, f"{what}: {text!r} is not a valid CIDR ({e})")
        return tuple(nets)

    def optional(
        self,
        items: dict[str, tuple[yaml.Node, yaml.Node]],
        key: str,
        read: Callable[[yaml.Node], Any],
        default: Any,
    ) -> Any:
        if key not in items:
            return default
        value = read(items[key][1])
        return default if value is None else value

    def required(
        self,
        items: dict[str, tuple[yaml.Node, yaml.Node]],
        key: str,
        parent: yaml.Node,
        what: str,
        read: Callable[[yaml.Node], Any],
    ) -> Any:
        if key not in items:
            self.problem(parent, f"{what}: missing required key {key!r}")
            return None
        return read(items[key][1])

    def url(self, node: yaml.Node, what: str) -> str | None:
        value = self.string(node, what)
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/?#]+[^\s]*\Z", value):
            self.problem(node, f"{what}: {value!r} is not an http(s) URL")
            return None
        return value


def kind_of(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.rsplit(":", 1)[-1]
    if tag == "null":
        return "nothing"
    return {"str": "text", "int": "a number", "float": "a number", "bool": "true/false"}.get(
        tag, f"{tag} {node.value!r}"
    )
