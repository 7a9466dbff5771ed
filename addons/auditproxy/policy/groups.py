"""The policy's `groups`: what a directory group changes for its members (first match
wins, in order): the action of a category or site, the notice's wording, scope and on/off,
and whether names or pseudonyms are logged. Problems and warnings with their lines.
"""

from __future__ import annotations

import difflib
import re
from types import MappingProxyType

import yaml

from auditproxy.policy.model import (
    Action,
    Category,
    GroupRule,
    IdentitySettings,
    IdentitySource,
    LogAs,
    NoticeScope,
    NoticeSettings,
)
from auditproxy.policy.nodes import line_of
from auditproxy.policy.people import PeopleReader

_GROUP_KEYS = ("name", "directory_group", "categories", "sites", "notice", "log_as")
_GROUP_NOTICE_KEYS = ("enabled", "scope", "languages", "texts")
_LABEL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_RESERVED_GROUPS = ("other", "none")
MAX_GROUPS = 64  # group names are metric labels: bounded


class GroupReader(PeopleReader):
    """The reader of `groups`, after the categories and the notice."""

    def groups(
        self,
        pair: tuple[yaml.Node, yaml.Node] | None,
        categories: list[Category] | tuple[Category, ...],
        notice: NoticeSettings | None,
        url: str,
        identity: IdentitySettings | None,
    ) -> tuple[GroupRule, ...] | None:
        if pair is None:
            return ()
        node = pair[1]
        items = self.sequence(node, "groups")
        if items is None:
            return None
        if len(items) > MAX_GROUPS:
            self.problem(node, f"groups: at most {MAX_GROUPS} (their names are metric labels)")
        names: dict[str, int] = {}
        directory_names: dict[str, tuple[str, int]] = {}
        result: list[GroupRule] = []
        for item in items:
            rule = self.group(item, categories, notice, url)
            if rule is None:
                continue
            line = line_of(item)
            if rule.name in names:
                self.problem(
                    item, f"group {rule.name!r} is listed twice (first on line {names[rule.name]})"
                )
                continue
            key = rule.directory_group.casefold()
            if key in directory_names:
                other, other_line = directory_names[key]
                self.problem(
                    item,
                    f"group {rule.name!r}: directory group {rule.directory_group!r} is already "
                    f"group {other!r} (line {other_line}); the first match wins, so this one "
                    "would never apply",
                )
                continue
            names[rule.name] = line
            directory_names[key] = (rule.name, line)
            result.append(rule)
        if result and identity is not None and identity.sources == (IdentitySource.ADDRESS,):
            self.warn(
                node,
                "groups apply only to people known by name (proxy authentication or a front "
                "proxy's header); with identity by address nobody has groups",
            )
        return tuple(result)

    def group(
        self,
        node: yaml.Node,
        categories: list[Category] | tuple[Category, ...],
        notice: NoticeSettings | None,
        url: str,
    ) -> GroupRule | None:
        items = self.mapping(node, "groups: entry", _GROUP_KEYS)
        if items is None:
            return None
        name = self.required(items, "name", node, "groups: entry", self.group_name)
        if name is None:
            return None
        what = f"group {name!r}"
        directory_group = self.optional(
            items, "directory_group", lambda n: self.string(n, f"{what}: directory_group"), name
        )
        category_names = [c.name for c in categories] + ["other"]
        site_names = [s.name for c in categories for s in c.sites]
        by_category = self.optional(
            items,
            "categories",
            lambda n: self.overrides(n, f"{what}: categories", category_names, "category"),
            {},
        )
        by_site = self.optional(
            items,
            "sites",
            lambda n: self.overrides(n, f"{what}: sites", site_names, "site"),
            {},
        )
        log_as = self.optional(
            items, "log_as", lambda n: self.choice(n, f"{what}: log_as", LogAs), None
        )
        enabled, wording = None, None
        if "notice" in items:
            monitors = Action.MONITOR in (*by_category.values(), *by_site.values())
            found = self.group_notice(items["notice"][1], what, notice, url, monitors)
            if found is None:
                return None
            enabled, wording = found
        elif (
            notice is not None
            and not notice.languages
            and (Action.MONITOR in (*by_category.values(), *by_site.values()))
        ):
            self.problem(
                node,
                f"{what}: makes a site 'monitor' but the policy has no notice "
                "texts; give this group 'notice: texts'",
            )
        return GroupRule(
            name,
            directory_group,
            MappingProxyType(dict(by_category)),
            MappingProxyType(dict(by_site)),
            enabled,
            wording,
            log_as,
        )

    def group_name(self, node: yaml.Node) -> str | None:
        value = self.string(node, "groups: name")
        if value is None:
            return None
        if value in _RESERVED_GROUPS or not _LABEL.match(value):
            self.problem(
                node,
                f"groups: name {value!r} must be lower case letters, digits, '-' or '_', and "
                f"not {' or '.join(_RESERVED_GROUPS)} (it becomes a metric label)",
            )
            return None
        return value

    def overrides(
        self, node: yaml.Node, what: str, known: list[str], kind: str
    ) -> dict[str, Action] | None:
        items = self.mapping(node, what)
        if items is None:
            return None
        result: dict[str, Action] = {}
        for key, (key_node, value_node) in items.items():
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
                self.problem(key_node, f"{what}: no {kind} named {key!r}{suggestion}")
                continue
            action = self.choice(value_node, f"{what}: {key}", Action)
            if action is not None:
                result[key] = action
        return result

    def group_notice(
        self,
        node: yaml.Node,
        what: str,
        notice: NoticeSettings | None,
        url: str,
        monitors: bool,
    ) -> tuple[bool | None, NoticeSettings | None] | None:
        """(on/off, the group's wording merged over the policy's; None when unchanged)."""
        items = self.mapping(node, f"{what}: notice", _GROUP_NOTICE_KEYS)
        if items is None:
            return None
        before = len(self.problems)
        enabled = self.optional(
            items, "enabled", lambda n: self.boolean(n, f"{what}: notice: enabled"), None
        )
        scope = self.optional(
            items, "scope", lambda n: self.choice(n, f"{what}: notice: scope", NoticeScope), None
        )
        languages = self.optional(items, "languages", self.languages, None)
        texts = self.optional(items, "texts", lambda n: self.texts(n, url), None)
        if texts is not None and None in texts.values():
            return None
        if scope is None and languages is None and texts is None:
            return enabled, None
        base = notice or NoticeSettings(NoticeScope.SITE, (), MappingProxyType({}))
        merged_texts = {**base.texts, **(texts or {})}
        merged_languages = tuple(languages if languages is not None else base.languages)
        for lang in merged_languages:
            if lang not in merged_texts:
                self.problem(node, f"{what}: notice: no texts for language {lang!r}")
        if not merged_languages and (enabled or monitors):
            self.problem(node, f"{what}: notice: needs 'languages' and 'texts'")
        if len(self.problems) > before:
            return None
        used = {lang: merged_texts[lang] for lang in merged_languages}
        # The interval is the policy's: the notice state's periods are one calendar.
        return enabled, NoticeSettings(
            scope or base.scope, merged_languages, MappingProxyType(used), base.interval
        )
