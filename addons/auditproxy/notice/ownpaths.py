"""The proxy's own paths on a monitored site: "I understand" and "what is recorded". Pure.

    ACK_PATH     the signed acknowledgement link. It opens the confirmation page; that
                 page and the next ("I have read this", then "I understand") acknowledge, for a
                 top-level navigation the person made (`notice.navigation`), with valid
                 tokens for this person, scope, period, host and page; at most one
                 `notice-acknowledged` record per person, scope and period however often
                 it is followed (the state keeps the acknowledgement like a claim), and it
                 claims the period's notice. Returns the person to the page (303), never
                 elsewhere.
    RECORD_PATH  the page "what is recorded about me" (`notice.transparency`), for the
                 person asking only.

The proxy answers these paths only where it shows the notice (`NoticeStage.applies`) and
only to a top-level navigation (`navigation.is_top_level`) that no service worker asked
for; anything else (a script's `fetch()`, an image, a frame, a request without fetch
metadata, a service worker's navigation preload) goes on to the site as if there were no
proxy. Every page the proxy answers with here is sandboxed (an opaque origin: no script of
the site can read it, even from a window it opened), cannot be framed, is not cached.

"I understand" is never one click: the notice's link is in the page's bytes, which the
page's own scripts may read, so it only opens the proxy's confirmation pages
(`notice.confirmation`, where the reasons are), each made when asked and answered with
its own token, time and, on the last, the number it shows (`NoticeKeys.reading_code`).
Links on a plain-http page point to the same host over https, where the browser sends
fetch metadata; the acknowledgement then returns to the http page.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from auditproxy.decide import pages
from auditproxy.decide.classify import Match
from auditproxy.decide.decision import Decision, override
from auditproxy.notice import confirmation, transparency
from auditproxy.notice.budget import Budget
from auditproxy.notice.keys import (
    ACK_PATH,
    OWN_PREFIX,
    WRONG_NUMBERS,
    NoticeKeys,
    Visit,
    acknowledgement_scope,
    safe_return_target,
    wrong_number_scope,
)
from auditproxy.notice.navigation import Headers, is_top_level, person_navigation
from auditproxy.notice.store import NoticeState
from auditproxy.policy.model import Action, BannerText, GroupRule, NoticeScope, Policy

logger = logging.getLogger("auditproxy")

_REDIRECT = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
# The proxy's refusals on its own paths: what the person sees, and no script of the site.
_PAGE = {
    **pages.PAGE_HEADERS,
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'; sandbox"
    ),
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Referrer-Policy": "no-referrer",
}


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
    return base + _ack_path(visit, back, keys.token(visit, host, back))


def _ack_fields(visit: Visit, back: str, token: str) -> list[tuple[str, str]]:
    """The acknowledgement link's query: where to return, the period, the scope, the token."""
    return [("r", back), ("d", str(visit.day.toordinal())), ("s", visit.scope), ("t", token)]


def _ack_path(visit: Visit, back: str, token: str) -> str:
    return f"{ACK_PATH}?{urlencode(_ack_fields(visit, back, token), quote_via=quote, safe='')}"


# The least time between a confirmation page and its answer: a decoy's double-click is
# faster, a person who reads is not. A quicker answer just gets the first page again.
READING_SECONDS = 1.0


def _confirmation_page(
    keys: NoticeKeys,
    visit: Visit,
    back: str,
    token: str,
    texts: Sequence[BannerText],
    now: float,
    step: int,
    again: bool = False,
) -> Answer:
    issued = int(now * 1000)
    fields = [
        *_ack_fields(visit, back, token),
        ("n", str(step)),
        ("i", str(issued)),
        ("c", keys.confirmation(token, issued, step)),
    ]
    place = secrets.randbelow(confirmation.GAPS)  # where the button is: not a decoy's to know
    code = keys.reading_code(token, issued) if step == confirmation.CONFIRM else ""
    page = confirmation.render(texts, ACK_PATH, fields, back, place, step, code, again)
    return Answer(200, confirmation.headers(back), page)


def _refused(policy: Policy, status: int = 403) -> Answer:
    return Answer(status, dict(_PAGE), pages.notice_link_page(policy))


def acknowledge(
    keys: NoticeKeys,
    state: NoticeState,
    policy: Policy,
    decision: Decision,
    current: Visit,
    path: str,
    headers: Headers,
    texts: Sequence[BannerText] = (),
    now: float = 0.0,
) -> Answer:
    """The answer to the acknowledgement link (`current`: this person's visit now;
    `texts`: their notice, for the confirmation page; `now`: the proxy's clock).

    `acknowledged_scope` is set only for the first valid acknowledgement of this person,
    scope and period; a replay, a refused or a stale link gets an ordinary access record.
    """
    query = parse_qs(urlsplit(path).query)

    def one(name: str) -> str:
        values = query.get(name, [])
        return values[0] if len(values) == 1 else ""

    back = safe_return_target(one("r"), decision.host)
    # From anywhere: this link only opens the confirmation page; its own form comes from
    # that page, an opaque origin, which the browser calls cross-site.
    why = person_navigation(headers, any_site=True)
    if why is not None:
        logger.warning("refused an acknowledgement on %s: %s", decision.host, why)
        return _refused(policy)
    try:
        claimed = Visit(date.fromordinal(int(one("d"))), current.user, one("s"))
    except (ValueError, OverflowError):
        back, claimed = None, current
    token = one("t")
    if back is None or not hmac.compare_digest(keys.token(claimed, decision.host, back), token):
        return _invalid(policy, decision)
    headers_out = {"Location": back, **_REDIRECT}
    if claimed.day != current.day:  # an earlier period's link just goes back to the page
        return Answer(303, headers_out)
    confirmed, issued, step = one("c"), one("i"), one("n")
    if not confirmed:
        return _confirmation_page(keys, claimed, back, token, texts, now, confirmation.READ)
    well_formed = issued.isascii() and issued.isdigit() and len(issued) <= 16
    steps = {str(n): n for n in (confirmation.READ, confirmation.CONFIRM)}
    if not well_formed or step not in steps:
        return _invalid(policy, decision)
    if not hmac.compare_digest(keys.confirmation(token, int(issued), steps[step]), confirmed):
        return _invalid(policy, decision)
    if state.seen(claimed.day, claimed.user, wrong_number_scope(claimed.scope, WRONG_NUMBERS)):
        return _locked(texts, back, decision)
    if now - int(issued) / 1000 < READING_SECONDS:
        # The first page again, through the first link: a confirmed URL that answered with
        # a page would stay in the history, where a reload would answer with no press.
        logger.info("an acknowledgement on %s came too quickly: the page again", decision.host)
        return Answer(303, {"Location": _ack_path(claimed, back, token), **_REDIRECT})
    if steps[step] == confirmation.READ:  # "I have read this reminder": now "I understand"
        return _confirmation_page(keys, claimed, back, token, texts, now, confirmation.CONFIRM)
    typed = one(confirmation.CODE_FIELD).strip()
    if not hmac.compare_digest(typed.encode(), keys.reading_code(token, int(issued)).encode()):
        # Not the number that page showed (a typo, or keys typed blind): a new one, a few
        # times a period at most (each wrong one marked in the state, shared by instances).
        wrong = next(
            (
                n
                for n in range(1, WRONG_NUMBERS + 1)
                if state.claim(claimed.day, claimed.user, wrong_number_scope(claimed.scope, n))
            ),
            WRONG_NUMBERS,
        )
        logger.warning(
            "an acknowledgement on %s had the wrong number (%d of %d this period)",
            decision.host,
            wrong,
            WRONG_NUMBERS,
        )
        if wrong >= WRONG_NUMBERS:
            return _locked(texts, back, decision)
        return _confirmation_page(
            keys, claimed, back, token, texts, now, confirmation.CONFIRM, again=True
        )
    first = state.claim(claimed.day, claimed.user, acknowledgement_scope(claimed.scope))
    state.claim(claimed.day, claimed.user, claimed.scope)  # the period's notice is done
    return Answer(303, headers_out, acknowledged_scope=claimed.scope if first else None)


def _locked(texts: Sequence[BannerText], back: str, decision: Decision) -> Answer:
    """Too many wrong numbers this period: "I understand" cannot be recorded until the
    next (the notice is done for the period either way)."""
    logger.warning("acknowledgements on %s are closed for this period", decision.host)
    return Answer(403, confirmation.headers(back), confirmation.render_locked(texts, back))


def _invalid(policy: Policy, decision: Decision) -> Answer:
    logger.warning(
        "refused an acknowledgement link that is not valid for this person "
        "(forged, altered, or another person's) on %s",
        decision.host,
    )
    return Answer(403, dict(_PAGE), pages.invalid_link_page(policy))


def record_page(
    state: NoticeState, policy: Policy, decision: Decision, current: Visit, headers: Headers
) -> Answer | Work:
    """The page "what is recorded about me", made off the loop (the returned `Work`: its
    state reads), for a top-level navigation only."""
    if not is_top_level(headers):  # the caller passes anything else on to the site
        return _refused(policy)
    return lambda budget: _record_answer(state, policy, decision, current, budget)


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
    return Answer(503, {**_PAGE, "Retry-After": "5"}, pages.notice_link_page(policy))
