"""The policy's model: frozen dataclasses and the vocabularies (actions, scopes, sources).

What `policy.load` builds from YAML and every later stage reads. Pure, no I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

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


class NoticeInterval(StrEnum):
    """How often the notice comes back, by the calendar in the policy's timezone."""

    DAY = "day"  # every calendar day (default)
    WEEK = "week"  # every calendar week, Monday to Sunday (ISO 8601)
    MONTH = "month"  # every calendar month


class IdentitySource(StrEnum):
    PROXY_AUTH = "proxy_auth"  # mitmproxy's proxy authentication (user name only)
    HEADER = "header"  # a header set by a trusted front proxy
    ADDRESS = "address"  # the client's IP address


class ClientRefusal(StrEnum):
    CONNECT = "connect"  # close an outsider's connection as it opens, before reading a byte
    PAGE = "page"  # answer each of its requests with the refusal page (and an access record)


class LogAs(StrEnum):
    NAME = "name"  # user.name
    PSEUDONYM = "pseudonym"  # user.hash = HMAC-SHA256(key, name), with the key's id


class AuthMethod(StrEnum):
    """Proxy authentication the proxy asks for itself (the policy's `auth: methods`)."""

    NEGOTIATE = "negotiate"  # Kerberos single sign-on (SPNEGO): no prompt, no password
    BASIC = "basic"  # user name and password, readable by anyone on the LAN


class AuthFailure(StrEnum):
    """What a request gets when its credential fails or cannot be checked in time."""

    ADDRESS = "address"  # identified by its address instead (counted, recorded)
    REFUSE = "refuse"  # 407 again: no access without a valid credential


class NameCase(StrEnum):
    """How user names compare: as the directory does (Active Directory ignores case)."""

    INSENSITIVE = "insensitive"  # `Alice` and `alice` are one person (logged lower-cased)
    SENSITIVE = "sensitive"


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
    dismiss: str  # no longer shown (the notice is collapsed); kept so old policies load
    # The reminder in one sentence, the notice's collapsed line ("" -> disclaimer and
    # monitoring), and the link to the page "what is recorded about me".
    summary: str = ""
    record_link: str = "What is recorded about me"

    @property
    def sentence(self) -> str:
        return self.summary or f"{self.disclaimer} {self.monitoring}"


@dataclass(frozen=True, slots=True)
class NoticeSettings:
    scope: NoticeScope
    languages: tuple[str, ...]
    texts: MappingProxyType[str, BannerText]
    interval: NoticeInterval = NoticeInterval.DAY

    def ordered_texts(self) -> tuple[BannerText, ...]:
        return tuple(self.texts[lang] for lang in self.languages)


@dataclass(frozen=True, slots=True)
class IdentitySettings:
    sources: tuple[IdentitySource, ...]
    header: str | None
    trusted_proxies: tuple[IPNetwork, ...]
    log_as: LogAs
    case: NameCase = NameCase.INSENSITIVE


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Proxy authentication by the proxy itself (none: `methods` is empty)."""

    methods: tuple[AuthMethod, ...] = ()
    on_failure: AuthFailure = AuthFailure.ADDRESS
    realm: str | None = None  # principals of this realm are known by their bare name

    @property
    def enabled(self) -> bool:
        return bool(self.methods)


@dataclass(frozen=True, slots=True)
class GroupRule:
    """What a directory group changes for its members (the policy's `groups`, in order:
    the first group a person is in decides). `name` is the policy's own label (records and
    metrics); `directory_group` the group's name in the directory (compared without case)."""

    name: str
    directory_group: str
    categories: MappingProxyType[str, Action]  # category name (or `other`) -> action
    sites: MappingProxyType[str, Action]  # site name -> action (wins over its category)
    notice_enabled: bool | None = None  # None: as the category says
    notice: NoticeSettings | None = None  # None: the policy's wording and scope
    log_as: LogAs | None = None  # None: the policy's


@dataclass(frozen=True, slots=True)
class DestinationSettings:
    """Where clients may make the proxy connect, beyond its built-in refusals (loopback,
    link-local and cloud metadata, unspecified, multicast, the proxy's own addresses)."""

    allow: tuple[IPNetwork, ...] = ()  # exceptions to the built-in refusals
    refuse: tuple[IPNetwork, ...] = ()  # refused too, whatever else says


@dataclass(frozen=True, slots=True)
class LoggingSettings:
    source_ip: bool  # log source.ip
    url_path: bool  # log url.path (never the query string)
    retention_days: int | None = None  # how long the department keeps the access log


@dataclass(frozen=True, slots=True)
class Contact:
    """Whom staff ask about what is recorded (shown on the page "what is recorded")."""

    name: str
    email: str | None = None
    url: str | None = None


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
    destinations: DestinationSettings = field(default_factory=DestinationSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    groups: tuple[GroupRule, ...] = ()
    # Load balancers whose X-Forwarded-For is believed (the client's real address).
    balancers: tuple[IPNetwork, ...] = ()
    sha256: str = ""
    source: str = ""
    sites: tuple[Site, ...] = field(default=(), compare=False)
    warnings: tuple[Problem, ...] = field(default=(), compare=False)  # valid, but worth a word
    refuse: ClientRefusal = ClientRefusal.CONNECT  # clients.refuse: how outsiders are turned away
    contact: Contact | None = None


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
