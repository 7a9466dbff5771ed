"""The proxy's own paths on a monitored site: "I understand" and "what is recorded". Pure.

    ACK_PATH     the signed acknowledgement link. It counts only for a top-level navigation
                 the person made (`notice.navigation`), with a valid token for this person,
                 scope, period, host and page; at most one `notice-acknowledged` record per
                 person, scope and period however often it is followed (the state keeps
                 the acknowledgement like a claim), and it claims the period's notice.
                 Returns the person to the page (303), never elsewhere.
    RECORD_PATH  the page "what is recorded about me" (`notice.transparency`), for the
                 person asking only, and only to a top-level navigation.

The proxy answers these paths only where it shows the notice (`NoticeStage.applies`);
elsewhere they are the site's own. `notice.stage` calls these with its keys and state.

Links on a plain-http page (which carries no fetch metadata) point to the same host over
https, where the browser sends it; the acknowledgement then returns to the http page.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, quote, urlsplit

from auditproxy.decide import pages
from auditproxy.decide.classify import Match
from auditproxy.decide.decision import Decision, override
from auditproxy.notice import transparency
from auditproxy.notice.budget import Budget
from auditproxy.notice.keys import (
    ACK_PATH,
    OWN_PREFIX,
    RECORD_PATH,
    NoticeKeys,
    Visit,
    acknowledgement_scope,
    safe_return_target,
)
from auditproxy.notice.navigation import Headers, has_fetch_metadata, person_navigation
from auditproxy.notice.store import NoticeState
from auditproxy.policy.model import Action, GroupRule, NoticeScope, Policy

logger = logging.getLogger("auditproxy")

_REDIRECT = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the proxy gives itself, instead of the origin's."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    acknowledged_scope: str | None = None  # a notice-acknowledged record stands for it


type Work = Callable[[Budget], Answer]  # an answer made off the event loop


def own_path(path: str) -> str | None:
    """Which of the proxy's paths this is (its path without the query), or None."""
    bare = path.partition("?")[0]
    return bare if bare.startswith(OWN_PREFIX) else None


def _authority(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def links(visit: Visit, host: str, path: str, scheme: str, port: int | None) -> tuple[str, str]:
    """(the return target signed into the acknowledgement link, the links' base). A page
    without fetch metadata over plain HTTP gets absolute https links to the same host."""
    if visit.certain or scheme != "http":
        return path, ""
    netloc = _authority(host) + ("" if port in (None, 80) else f":{port}")
    return f"http://{netloc}{path}", f"https://{_authority(host)}"


def ack_link(keys: NoticeKeys, visit: Visit, host: str, back: str, base: str) -> str:
    token = keys.token(visit, host, back)
    return (
        f"{base}{ACK_PATH}?r={quote(back, safe='')}&d={visit.day.toordinal()}"
        f"&s={quote(visit.scope, safe='')}&t={token}"
    )


def _refused(policy: Policy, status: int = 403) -> Answer:
    return Answer(status, dict(pages.PAGE_HEADERS), pages.notice_link_page(policy))


def acknowledge(
    keys: NoticeKeys,
    state: NoticeState,
    policy: Policy,
    decision: Decision,
    current: Visit,
    path: str,
    headers: Headers,
) -> Answer:
    """The answer to the acknowledgement link (`current`: this person's visit now).

    `acknowledged_scope` is set only for the first valid acknowledgement of this person,
    scope and period; a replay, a refused or a stale link gets an ordinary access record.
    """
    why = person_navigation(headers, decision.host)
    if why is not None:
        logger.warning("refused an acknowledgement on %s: %s", decision.host, why)
        return _refused(policy)
    query = parse_qs(urlsplit(path).query)

    def one(name: str) -> str:
        values = query.get(name, [])
        return values[0] if len(values) == 1 else ""

    back = safe_return_target(one("r"), decision.host)
    try:
        claimed = Visit(date.fromordinal(int(one("d"))), current.user, one("s"))
    except (ValueError, OverflowError):
        back, claimed = None, current
    expected = keys.token(claimed, decision.host, back or "")
    if back is None or not hmac.compare_digest(expected, one("t")):
        logger.warning(
            "refused an acknowledgement link that is not valid for this person "
            "(forged, altered, or another person's) on %s",
            decision.host,
        )
        return Answer(403, dict(pages.PAGE_HEADERS), pages.invalid_link_page(policy))
    headers_out = {"Location": back, **_REDIRECT}
    if claimed.day != current.day:  # an earlier period's link just goes back to the page
        return Answer(303, headers_out)
    first = state.claim(claimed.day, claimed.user, acknowledgement_scope(claimed.scope))
    state.claim(claimed.day, claimed.user, claimed.scope)  # the period's notice is done
    return Answer(303, headers_out, acknowledged_scope=claimed.scope if first else None)


def record_page(
    state: NoticeState,
    policy: Policy,
    decision: Decision,
    current: Visit,
    headers: Headers,
    scheme: str,
) -> Answer | Work:
    """The page "what is recorded about me", or why not. Its state reads go off the loop
    (the returned `Work`)."""
    if scheme == "http" and not has_fetch_metadata(headers):
        location = f"https://{_authority(decision.host)}{RECORD_PATH}"
        return Answer(303, {"Location": location, **_REDIRECT})
    if not _top_level(headers):  # a script's fetch, a frame, an image: never readable
        return _refused(policy)
    return lambda budget: _record_answer(state, policy, decision, current, budget)


def _top_level(headers: Headers) -> bool:
    mode, dest = headers.get(b"sec-fetch-mode"), headers.get(b"sec-fetch-dest")
    return (mode or b"").strip().lower() == b"navigate" and (
        dest or b""
    ).strip().lower() == b"document"


def _record_answer(
    state: NoticeState, policy: Policy, decision: Decision, current: Visit, budget: Budget
) -> Answer:
    group = next((g for g in policy.groups if g.name == decision.group), None)
    entries = []
    for scope in notice_scopes(policy, group):
        budget.check()
        shown = state.seen(current.day, current.user, scope)
        acknowledged = state.seen(current.day, current.user, acknowledgement_scope(scope))
        entries.append(transparency.Entry(scope, shown, acknowledged))
    view = transparency.RecordView(
        decision.user, decision.identity.source.value, current.day, tuple(entries)
    )
    return Answer(200, dict(transparency.HEADERS), transparency.render(policy, view, group))


def notice_scopes(policy: Policy, group: GroupRule | None = None) -> list[str]:
    """Every scope the notice can have for a person under this policy (`group`: the
    policy group that decides for them, with its scope and actions; None: the policy's)."""
    notice = group.notice if group is not None and group.notice else policy.notice
    if notice.scope is NoticeScope.ALL:
        return ["all"]
    sites = (site for category in policy.categories for site in category.sites)
    matches = (override(Match.for_site(site), group) for site in sites)
    monitored = [m for m in matches if m.action is Action.MONITOR and m.notice]
    if notice.scope is NoticeScope.CATEGORY:
        return list(dict.fromkeys(f"category:{m.category}" for m in monitored))
    return [f"site:{m.site}" for m in monitored]


def not_found(policy: Policy) -> Answer:
    return _refused(policy, 404)


def busy(policy: Policy) -> Answer:
    """The record page could not be made in time (a slow state store): try again."""
    return Answer(503, {**pages.PAGE_HEADERS, "Retry-After": "5"}, pages.notice_link_page(policy))
