"""The policy's settings sections: the notice and its texts, clients, identity, logging.

Readers of YAML nodes in the manner of `policy.nodes`: each reports its problems with
their lines and returns None when a section cannot be used.
"""

from __future__ import annotations

import ipaddress
import re
from types import MappingProxyType
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from auditproxy.policy.model import (
    BannerText,
    ClientRefusal,
    DestinationSettings,
    IdentitySettings,
    IdentitySource,
    IPNetwork,
    LogAs,
    LoggingSettings,
    NameCase,
    NoticeInterval,
    NoticeScope,
    NoticeSettings,
)
from auditproxy.policy.privacy import PrivacyReader

_NOTICE_KEYS = ("scope", "interval", "languages", "texts")
_TEXT_KEYS = (
    "heading",
    "summary",
    "disclaimer",
    "monitoring",
    "policy_name",
    "policy_url",
    "link_text",
    "acknowledge",
    "record_link",
    "dismiss",
)
_OPTIONAL_TEXT_KEYS = ("policy_url", "summary", "record_link", "dismiss")
# Wording built in for the optional texts (other languages: the English link text, and
# the disclaimer and monitoring texts as the collapsed line). `dismiss` is no longer shown.
_BUILT_IN_TEXTS = {
    "en": {
        "summary": "Your views are your own, not your employer's. This network is monitored.",
        "record_link": "What is recorded about me",
    },
    "fr": {
        "summary": (
            "Vos opinions n'engagent que vous, pas votre employeur. Ce r\u00e9seau est "
            "surveill\u00e9."
        ),
        "record_link": "Ce qui est enregistr\u00e9 \u00e0 mon sujet",
    },
}
_EN_RECORD = _BUILT_IN_TEXTS["en"]["record_link"]
_CLIENT_KEYS = ("allow", "refuse")
_IDENTITY_KEYS = ("sources", "header", "trusted_proxies", "log_as", "case")
_DESTINATION_KEYS = ("allow", "refuse")
_LOGGING_KEYS = ("source_ip", "url_path", "retention_days")
_DEFAULT_CLIENTS = ("127.0.0.0/8", "::1/128")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*\Z")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")


class SettingsReader(PrivacyReader):
    """Readers for the sections after `categories` (and the time zone)."""

    def timezone(self, node: yaml.Node) -> ZoneInfo | None:
        value = self.string(node, "timezone")
        if value is None:
            return None
        try:
            return ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.problem(node, f"timezone: unknown time zone {value!r} (e.g. 'America/Toronto')")
            return None

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
        interval = self.optional(
            items,
            "interval",
            lambda n: self.choice(n, "notice: interval", NoticeInterval),
            NoticeInterval.DAY,
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
        return NoticeSettings(scope, tuple(languages), MappingProxyType(dict(texts)), interval)

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
            values.setdefault("dismiss", "")
            built_in = _BUILT_IN_TEXTS.get(lang.split("-")[0], {})
            values.setdefault("summary", built_in.get("summary", ""))
            values.setdefault("record_link", built_in.get("record_link", "") or _EN_RECORD)
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

    def client_refusal(self, pair: tuple[yaml.Node, yaml.Node] | None) -> ClientRefusal | None:
        """`clients.refuse`: connect (default) or page. Problems are reported by `clients`."""
        if pair is None or not isinstance(pair[1], yaml.MappingNode):
            return ClientRefusal.CONNECT
        for key, value in pair[1].value:
            if isinstance(key, yaml.ScalarNode) and key.value == "refuse":
                return self.choice(value, "clients: refuse", ClientRefusal)
        return ClientRefusal.CONNECT

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
        case = self.optional(
            items, "case", lambda n: self.choice(n, "identity: case", NameCase), default.case
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
        return IdentitySettings(tuple(sources), header, tuple(trusted), log_as, case)

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

    def destinations(self, pair: tuple[yaml.Node, yaml.Node] | None) -> DestinationSettings | None:
        if pair is None:
            return DestinationSettings()
        items = self.mapping(pair[1], "destinations", _DESTINATION_KEYS)
        if items is None:
            return None
        allow = self.optional(items, "allow", lambda n: self.networks(n, "destinations: allow"), ())
        refuse = self.optional(
            items, "refuse", lambda n: self.networks(n, "destinations: refuse"), ()
        )
        return DestinationSettings(tuple(allow), tuple(refuse))

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
        retention = self.optional(items, "retention_days", self.retention_days, None)
        return LoggingSettings(source_ip, url_path, retention)
