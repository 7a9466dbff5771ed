"""The department's electronic-network policy: YAML in, frozen dataclasses out.

Every problem is reported at once with its line (`policy.nodes`), so IT fixes a policy in
one pass. Used by the proxy (off its event loop) and by `auditproxy check` and `classify`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import yaml

from auditproxy.policy.files import read_regular_file
from auditproxy.policy.groups import GroupReader
from auditproxy.policy.hosts import normalize_domain
from auditproxy.policy.model import (
    Action,
    Category,
    Policy,
    PolicyError,
    Problem,
    Site,
)
from auditproxy.policy.nodes import line_of

# The example policy shipped with the package (a link to policy/department.yaml).
DEFAULT_POLICY = Path(__file__).parent.parent / "data" / "department.yaml"

try:  # libyaml is ~10x faster; it matters for policies with 100,000 domains.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

# ---------------------------------------------------------------------------------------
# Public entry points


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyError (a ValueError) with all problems."""
    source = str(path)
    try:
        data = read_regular_file(path)
    except OSError as e:
        raise PolicyError(source, [Problem(0, f"cannot read policy: {e.strerror or e}")]) from e
    return parse_policy(data, source=source)


def parse_policy(data: bytes | str, source: str = "<policy>") -> Policy:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise PolicyError(source, [Problem(line, "policy is not valid UTF-8")]) from e
    with _cyclic_gc_paused():
        return _parse_text(text, raw, source)


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """A big policy is a few hundred thousand YAML nodes and dataclasses, none of them in
    a reference cycle; with the cyclic collector on, building them triggers collections
    that walk every live object (the proxy's, and the policy in force): half the time of
    a 100,000-domain load. Reference counting still frees everything meanwhile."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _parse_text(text: str, raw: bytes, source: str) -> Policy:
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(str(x) for x in (e.context, e.problem) if x)
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "::" in lines[mark.line]:
            what += ' (quote IPv6 addresses inside [ ] lists: "::1/128")'
        raise PolicyError(source, [Problem(line, f"YAML syntax error: {what}")]) from e
    except yaml.YAMLError as e:
        raise PolicyError(source, [Problem(1, f"YAML error: {e}")]) from e
    builder = PolicyBuilder()
    policy = builder.build(root)
    if builder.problems or policy is None:
        raise PolicyError(source, builder.problems or [Problem(1, "policy is empty")])
    return _with_provenance(policy, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def _with_provenance(policy: Policy, sha256: str, source: str) -> Policy:
    sites = tuple(site for category in policy.categories for site in category.sites)
    return dataclasses.replace(policy, sha256=sha256, source=source, sites=sites)


# ---------------------------------------------------------------------------------------
# The builder: YAML nodes -> dataclasses, section by section


_TOP_KEYS = ("name", "url", "timezone", "default_action", "categories", "notice", "clients")
_TOP_KEYS += ("identity", "logging", "destinations", "auth", "groups", "balancers", "contact")
_CATEGORY_KEYS = ("action", "description", "notice", "sites")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_RESERVED_NAMES = ("other",)  # "other" is the metric label for everything unclassified


class PolicyBuilder(GroupReader):
    """YAML nodes -> the Policy, one method per section of the file."""

    # --- the policy itself

    def build(self, root: yaml.Node | None) -> Policy | None:
        if root is None:
            self.problem(1, "policy is empty")
            return None
        top = self.mapping(root, "policy", _TOP_KEYS)
        if top is None:
            return None

        name = self.required(top, "name", root, "policy", lambda n: self.string(n, "name"))
        url = self.required(top, "url", root, "policy", lambda n: self.url(n, "url"))
        timezone = self.required(top, "timezone", root, "policy", self.timezone)
        default_action = self.optional(
            top, "default_action", lambda n: self.choice(n, "default_action", Action), Action.LOG
        )
        categories = self.required(top, "categories", root, "policy", self.categories) or ()
        any_notice = any(c.notice for c in categories)
        notice = self.notice(top.get("notice"), root, url or "", required=any_notice)
        clients = self.clients(top.get("clients"))
        refuse = self.client_refusal(top.get("clients"))
        identity = self.identity(top.get("identity"))
        logging = self.logging(top.get("logging"))
        destinations = self.destinations(top.get("destinations"))
        contact = self.contact(top.get("contact"))
        auth = self.auth(top.get("auth"), identity)
        groups = self.groups(top.get("groups"), categories, notice, url or "", identity)
        balancers = self.balancers(top.get("balancers"))

        settings = (notice, clients, refuse, identity, logging, destinations)
        if self.problems or None in (name, url, timezone, *settings, auth, groups, balancers):
            return None
        return Policy(
            name=name,
            url=url,
            timezone=timezone,
            default_action=default_action,
            categories=tuple(categories),
            notice=notice,
            clients=clients,
            identity=identity,
            logging=logging,
            destinations=destinations,
            auth=auth,
            groups=groups,
            balancers=balancers,
            warnings=tuple(self.warnings),
            refuse=refuse,
            contact=contact,
        )

    def categories(self, node: yaml.Node) -> list[Category] | None:
        items = self.mapping(node, "categories")
        if items is None:
            return None
        seen_domains: dict[str, tuple[str, int]] = {}
        seen_sites: dict[str, tuple[str, int]] = {}
        result: list[Category] = []
        for cat_name, (key_node, value_node) in items.items():
            if not self.name_ok(key_node, cat_name, "category"):
                continue
            category = self.category(cat_name, value_node, seen_domains, seen_sites)
            if category is not None:
                result.append(category)
        if not items:
            self.problem(node, "categories: at least one category is needed")
        return result

    def name_ok(self, node: yaml.Node, name: str, what: str) -> bool:
        if name in _RESERVED_NAMES:
            self.problem(node, f"{what} name {name!r} is reserved for unclassified traffic")
            return False
        if not _NAME.match(name):
            self.problem(
                node,
                f"{what} name {name!r} must be lower case letters, digits, '-' or '_' "
                "(it becomes a metric label)",
            )
            return False
        return True

    def category(
        self,
        name: str,
        node: yaml.Node,
        seen_domains: dict[str, tuple[str, int]],
        seen_sites: dict[str, tuple[str, int]],
    ) -> Category | None:
        what = f"category {name!r}"
        items = self.mapping(node, what, _CATEGORY_KEYS)
        if items is None:
            return None
        action = self.required(
            items, "action", node, what, lambda n: self.choice(n, f"{what}: action", Action)
        )
        description = self.optional(
            items, "description", lambda n: self.string(n, f"{what}: description"), ""
        )
        notice_default = action is Action.MONITOR
        notice = self.optional(
            items, "notice", lambda n: self.boolean(n, f"{what}: notice"), notice_default
        )
        if notice and action is not None and action is not Action.MONITOR:
            self.problem(
                items["notice"][1],
                f"{what}: the daily notice applies only to 'monitor' categories, not {action!r}",
            )
        sites_node = items.get("sites")
        if sites_node is None:
            self.problem(node, f"{what}: missing required key 'sites'")
            return None
        site_items = self.mapping(sites_node[1], f"{what}: sites")
        if site_items is None:
            return None
        sites: list[Site] = []
        for site_name, (site_key, domains_node) in site_items.items():
            if not self.name_ok(site_key, site_name, "site"):
                continue
            if site_name in seen_sites:
                other_cat, other_line = seen_sites[site_name]
                self.problem(
                    site_key,
                    f"site {site_name!r} is already defined in category {other_cat!r} "
                    f"(line {other_line}); site names must be unique (they are metric labels)",
                )
                continue
            seen_sites[site_name] = (name, line_of(site_key))
            domains = self.domains(site_name, name, domains_node, seen_domains)
            if domains:
                sites.append(Site(site_name, name, action or Action.LOG, domains, bool(notice)))
        if not site_items:
            self.problem(sites_node[1], f"{what}: sites must list at least one site")
        return Category(name, action, description, bool(notice), tuple(sites))

    def domains(
        self,
        site: str,
        category: str,
        node: yaml.Node,
        seen: dict[str, tuple[str, int]],
    ) -> tuple[str, ...]:
        what = f"site {site!r}"
        items = self.sequence(node, f"{what}: domains")
        if items is None:
            return ()
        if not items:
            self.problem(node, f"{what}: list at least one domain")
        domains: list[str] = []
        rule, what_domain = f"{category}/{site}", f"{what}: domain"  # once, not per domain
        for item in items:
            text = self.string(item, what_domain)
            if text is None:
                continue
            try:
                domain = normalize_domain(text)
            except ValueError as e:
                self.problem(item, f"{what}: {e}")
                continue
            if domain in seen:
                other_site, other_line = seen[domain]
                where = "this site" if other_site == rule else other_site
                self.problem(
                    item,
                    f"{what}: domain {domain!r} is already listed for {where} (line {other_line})",
                )
                continue
            seen[domain] = (rule, line_of(item))
            domains.append(domain)
        return tuple(domains)
