"""The department's electronic-network policy: YAML in, frozen dataclasses out.

Parsing walks PyYAML's node tree rather than the constructed Python objects, so every
problem carries the line it comes from, duplicate keys are caught, and *all* problems are
reported at once (IT fixes a policy in one pass, not one error per run).

No mitmproxy imports here: this module is used by `auditproxy check` and `classify` too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import gc
import hashlib
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

try:  # libyaml is ~10x faster; it matters for policies with 100,000 domains.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Action(StrEnum):
    MONITOR = "monitor"  # allow, log, daily notice
    LOG = "log"  # allow, log
    BYPASS = "bypass"  # allow without TLS decryption; tunnel logged with host and port only
    BLOCK = "block"  # refuse with a page naming the policy

    @property
    def strictness(self) -> int:
        """Order used when two names for one request disagree (domain fronting)."""
        return _STRICTNESS[self]


_STRICTNESS = {Action.BYPASS: 0, Action.LOG: 1, Action.MONITOR: 2, Action.BLOCK: 3}


class NoticeScope(StrEnum):
    SITE = "site"  # once a day per site (default)
    CATEGORY = "category"  # once a day per category
    ALL = "all"  # once a day for all monitored sites together


class IdentitySource(StrEnum):
    PROXY_AUTH = "proxy_auth"  # mitmproxy's proxy authentication (user name only)
    HEADER = "header"  # a header set by a trusted front proxy
    ADDRESS = "address"  # the client's IP address


class LogAs(StrEnum):
    NAME = "name"  # user.name
    PSEUDONYM = "pseudonym"  # user.hash = HMAC-SHA256(key, name), with the key's id


@dataclass(frozen=True, slots=True)
class Site:
    name: str
    category: str
    action: Action
    domains: tuple[str, ...]
    notice: bool  # whether the daily notice applies to this site

    @property
    def rule_name(self) -> str:
        return f"{self.category}/{self.name}"


@dataclass(frozen=True, slots=True)
class Category:
    name: str
    action: Action
    description: str
    notice: bool
    sites: tuple[Site, ...]


@dataclass(frozen=True, slots=True)
class BannerText:
    """One language's wording of the notice. Plain text: markup is escaped when rendered."""

    lang: str
    heading: str
    disclaimer: str
    monitoring: str
    policy_name: str
    policy_url: str
    link_text: str
    acknowledge: str
    dismiss: str


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    scope: NoticeScope
    languages: tuple[str, ...]
    texts: MappingProxyType[str, BannerText]

    def ordered_texts(self) -> tuple[BannerText, ...]:
        return tuple(self.texts[lang] for lang in self.languages)


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    sources: tuple[IdentitySource, ...]
    header: str | None
    trusted_proxies: tuple[IPNetwork, ...]
    log_as: LogAs


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    source_ip: bool  # log source.ip
    url_path: bool  # log url.path (never the query string)


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    url: str
    timezone: ZoneInfo
    default_action: Action
    categories: tuple[Category, ...]
    notice: NoticeSettings
    clients: tuple[IPNetwork, ...]
    identity: IdentitySettings
    logging: LoggingSettings
    sha256: str = ""
    source: str = ""
    sites: tuple[Site, ...] = field(default=(), compare=False)

    @property
    def timezone_name(self) -> str:
        return self.timezone.key


@dataclass(frozen=True, slots=True)
class Problem:
    line: int
    message: str

    def format(self, source: str) -> str:
        return f"{source}:{self.line}: {self.message}"


class PolicyError(ValueError):
    """A policy that cannot be used. `problems` lists every problem found, with lines."""

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(p.format(source) for p in self.problems))


# ---------------------------------------------------------------------------------------
# Public entry points


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file. Raises PolicyError (a ValueError) with all problems."""
    source = str(path)
    try:
        data = Path(path).read_bytes()
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
    builder = _Builder()
    policy = builder.build(root)
    if builder.problems or policy is None:
        raise PolicyError(source, builder.problems or [Problem(1, "policy is empty")])
    return _with_provenance(policy, sha256=hashlib.sha256(raw).hexdigest(), source=source)


def _with_provenance(policy: Policy, sha256: str, source: str) -> Policy:
    sites = tuple(site for category in policy.categories for site in category.sites)
    return dataclasses.replace(policy, sha256=sha256, source=source, sites=sites)


# ---------------------------------------------------------------------------------------
# Domain names


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)\Z")


def normalize_domain(value: str) -> str:
    """A policy domain in the form hosts are compared in: lower case, punycode, no dot.

    Raises ValueError with a message an editor of the policy can act on.
    """
    text = value.strip()
    if not text:
        raise ValueError("empty domain")
    if "://" in text or "/" in text:
        raise ValueError(f"{value!r} is a URL; write the domain alone (e.g. 'facebook.com')")
    if text.startswith("*.") or "*" in text:
        raise ValueError(
            f"{value!r}: wildcards are not needed; a domain matches itself and its subdomains"
        )
    literal = text.strip("[]")
    # Only an IPv6 literal has a colon and only an IPv4 one is all digits and dots; asking
    # ipaddress about every domain name (and catching its error) is most of a big load.
    if ":" in literal or literal.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_address(literal))
        except ValueError:
            pass
    if ":" in text:
        raise ValueError(f"{value!r}: a port never changes the match; write the domain alone")
    text = text.rstrip(".").lower()
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise ValueError(f"{value!r} is not a valid internationalised domain") from e
    if len(text) > 253:
        raise ValueError(f"{value!r} is longer than 253 characters")
    for label in text.split("."):
        if not _LABEL.match(label):
            raise ValueError(f"{value!r} is not a valid domain name (label {label!r})")
    return text


# ---------------------------------------------------------------------------------------
# The builder: YAML nodes -> dataclasses, collecting problems with line numbers


_TOP_KEYS = (
    "name",
    "url",
    "timezone",
    "default_action",
    "categories",
    "notice",
    "clients",
    "identity",
    "logging",
)
_CATEGORY_KEYS = ("action", "description", "notice", "sites")
_NOTICE_KEYS = ("scope", "languages", "texts")
_TEXT_KEYS = (
    "heading",
    "disclaimer",
    "monitoring",
    "policy_name",
    "policy_url",
    "link_text",
    "acknowledge",
    "dismiss",
)
_OPTIONAL_TEXT_KEYS = ("policy_url",)
_CLIENT_KEYS = ("allow",)
_IDENTITY_KEYS = ("sources", "header", "trusted_proxies", "log_as")
_LOGGING_KEYS = ("source_ip", "url_path")
_DEFAULT_CLIENTS = ("127.0.0.0/8", "::1/128")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}\Z")
_RESERVED_NAMES = ("other",)  # "other" is the metric label for everything unclassified


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Builder:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def problem(self, node: yaml.Node | int, message: str) -> None:
        line = node if isinstance(node, int) else _line(node)
        self.problems.append(Problem(line, message))

    # --- generic node readers: each reports its own problem and returns None on failure

    def mapping(
        self, node: yaml.Node, what: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, f"{what} must be a mapping, not {_kind(node)}")
            return None
        items: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, f"{what}: keys must be plain names")
                continue
            key = str(key_node.value)
            if key in items:
                first = _line(items[key][0])
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
            self.problem(node, f"{what} must be text, not {_kind(node)}")
            return None
        value = str(node.value)
        if nonempty and not value.strip():
            self.problem(node, f"{what} must not be empty")
            return None
        return value.strip()

    def boolean(self, node: yaml.Node, what: str) -> bool | None:
        if not isinstance(node, yaml.ScalarNode) or node.tag != "tag:yaml.org,2002:bool":
            self.problem(node, f"{what} must be true or false, not {_kind(node)}")
            return None
        return str(node.value).lower() in ("true", "yes", "on")

    def sequence(self, node: yaml.Node, what: str) -> list[yaml.Node] | None:
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, f"{what} must be a list, not {_kind(node)}")
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
        identity = self.identity(top.get("identity"))
        logging = self.logging(top.get("logging"))

        if self.problems or None in (name, url, timezone, notice, clients, identity, logging):
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
        )

    def url(self, node: yaml.Node, what: str) -> str | None:
        value = self.string(node, what)
        if value is None:
            return None
        if not re.match(r"^https?://[^\s/?#]+[^\s]*\Z", value):
            self.problem(node, f"{what}: {value!r} is not an http(s) URL")
            return None
        return value

    def timezone(self, node: yaml.Node) -> ZoneInfo | None:
        value = self.string(node, "timezone")
        if value is None:
            return None
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(node, f"timezone: unknown time zone {value!r} (e.g. 'America/Toronto')")
            return None

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
            seen_sites[site_name] = (name, _line(site_key))
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
            seen[domain] = (rule, _line(item))
            domains.append(domain)
        return tuple(domains)

    def notice(
        self,
        node_pair: tuple[yaml.Node, yaml.Node] | None,
        root: yaml.Node,
        url: str,
        required: bool,
    ) -> NoticeSettings | None:
        if node_pair is None:
            if required:
                self.problem(root, "policy: missing 'notice' (a category is 'monitor')")
                return None
            return NoticeSettings(NoticeScope.SITE, (), MappingProxyType({}))
        node = node_pair[1]
        items = self.mapping(node, "notice", _NOTICE_KEYS)
        if items is None:
            return None
        scope = self.optional(
            items, "scope", lambda n: self.choice(n, "notice: scope", NoticeScope), NoticeScope.SITE
        )
        languages = self.required(items, "languages", node, "notice", self.languages)
        texts = self.required(items, "texts", node, "notice", lambda n: self.texts(n, url))
        if languages is None or texts is None:
            return None
        missing = [lang for lang in languages if lang not in texts]
        for lang in missing:
            self.problem(items["texts"][1], f"notice: texts: no texts for language {lang!r}")
        for lang in texts:
            if lang not in languages:
                self.problem(
                    items["texts"][1],
                    f"notice: texts for {lang!r} are given but {lang!r} is not in 'languages'",
                )
        if missing or None in texts.values():
            return None
        return NoticeSettings(scope, tuple(languages), MappingProxyType(dict(texts)))

    def languages(self, node: yaml.Node) -> list[str] | None:
        items = self.sequence(node, "notice: languages")
        if items is None:
            return None
        result: list[str] = []
        for item in items:
            lang = self.string(item, "notice: language")
            if lang is None:
                continue
            if not _LANG.match(lang):
                self.problem(item, f"notice: {lang!r} is not a language code (e.g. 'en', 'fr')")
            elif lang in result:
                self.problem(item, f"notice: language {lang!r} is listed twice")
            else:
                result.append(lang)
        if not items:
            self.problem(node, "notice: languages must list at least one language")
            return None
        return result

    def texts(self, node: yaml.Node, default_url: str) -> dict[str, BannerText | None] | None:
        """Each language's texts; None for a language whose texts have problems."""
        items = self.mapping(node, "notice: texts")
        if items is None:
            return None
        result: dict[str, BannerText | None] = {}
        for lang, (_, text_node) in items.items():
            what = f"notice: texts: {lang}"
            result[lang] = None
            fields = self.mapping(text_node, what, _TEXT_KEYS)
            if fields is None:
                continue
            values: dict[str, str] = {}
            for key in _TEXT_KEYS:
                if key not in fields:
                    if key not in _OPTIONAL_TEXT_KEYS:
                        self.problem(text_node, f"{what}: missing required text {key!r}")
                    continue
                reader = self.url if key == "policy_url" else self.string
                value = reader(fields[key][1], f"{what}: {key}")
                if value is not None:
                    values[key] = value
            values.setdefault("policy_url", default_url)
            if len(values) == len(_TEXT_KEYS):
                result[lang] = BannerText(lang=lang, **values)
        return result

    def clients(self, pair: tuple[yaml.Node, yaml.Node] | None) -> tuple[IPNetwork, ...] | None:
        if pair is None:
            return tuple(ipaddress.ip_network(c) for c in _DEFAULT_CLIENTS)
        items = self.mapping(pair[1], "clients", _CLIENT_KEYS)
        if items is None:
            return None
        nets = self.required(
            items, "allow", pair[1], "clients", lambda n: self.networks(n, "clients: allow")
        )
        if nets is not None and not nets and not self.problems:
            self.problem(items["allow"][1], "clients: allow is empty: nobody could use the proxy")
        return nets

    def identity(self, pair: tuple[yaml.Node, yaml.Node] | None) -> IdentitySettings | None:
        default = IdentitySettings(
            (IdentitySource.PROXY_AUTH, IdentitySource.ADDRESS), None, (), LogAs.PSEUDONYM
        )
        if pair is None:
            return default
        node = pair[1]
        items = self.mapping(node, "identity", _IDENTITY_KEYS)
        if items is None:
            return None
        sources = self.optional(items, "sources", self.identity_sources, default.sources)
        header = self.optional(items, "header", self.header_name, None)
        trusted = self.optional(
            items,
            "trusted_proxies",
            lambda n: self.networks(n, "identity: trusted_proxies"),
            (),
        )
        log_as = self.optional(
            items, "log_as", lambda n: self.choice(n, "identity: log_as", LogAs), LogAs.PSEUDONYM
        )
        if IdentitySource.HEADER in sources:
            if header is None:
                self.problem(node, "identity: source 'header' needs 'header' (its name)")
            if not trusted:
                self.problem(
                    node,
                    "identity: source 'header' needs 'trusted_proxies' "
                    "(the header is accepted only from them)",
                )
        return IdentitySettings(tuple(sources), header, tuple(trusted), log_as)

    def identity_sources(self, node: yaml.Node) -> tuple[IdentitySource, ...] | None:
        items = self.sequence(node, "identity: sources")
        if items is None:
            return None
        result: list[IdentitySource] = []
        for item in items:
            source = self.choice(item, "identity: source", IdentitySource)
            if source is None:
                continue
            if source in result:
                self.problem(item, f"identity: source {source.value!r} is listed twice")
            else:
                result.append(source)
        if not items:
            self.problem(node, "identity: sources must list at least one source")
        return tuple(result)

    def header_name(self, node: yaml.Node) -> str | None:
        value = self.string(node, "identity: header")
        if value is not None and not _HEADER_NAME.match(value):
            self.problem(node, f"identity: {value!r} is not a valid HTTP header name")
            return None
        return value

    def logging(self, pair: tuple[yaml.Node, yaml.Node] | None) -> LoggingSettings | None:
        if pair is None:
            return LoggingSettings(source_ip=False, url_path=False)
        items = self.mapping(pair[1], "logging", _LOGGING_KEYS)
        if items is None:
            return None
        source_ip = self.optional(
            items, "source_ip", lambda n: self.boolean(n, "logging: source_ip"), False
        )
        url_path = self.optional(
            items, "url_path", lambda n: self.boolean(n, "logging: url_path"), False
        )
        return LoggingSettings(source_ip=source_ip, url_path=url_path)


def _kind(node: yaml.Node) -> str:
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


def iter_domains(policy: Policy) -> Iterator[tuple[str, Site]]:
    for site in policy.sites:
        for domain in site.domains:
            yield domain, site
