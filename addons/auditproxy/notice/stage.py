# Over 300 lines: one response's notice from candidate to claim, work and give-back, in one place.
"""The daily notice's decisions for one response, as data. Pure: the hooks in `addon.py`
read the flow, call these, and apply what they return.

    responseheaders  `candidate`: is this a top-level page on a monitored site, for a
                     person who has not had this period's notice for this scope? Decided
                     here because whether a body is streamed is decided here.
    response         `claim` the period (atomic), then `work`: decode, scan, put the banner
                     in, a pure callable that the hook runs off the event loop with a
                     deadline (`offload`, `notice.worker`); if the page cannot carry it
                     (or the deadline passes), give the claim back and say why, so the
                     next page tries again. `deliver` does both in the caller's thread.
    error            `give_back`: the page failed after the notice went in.
    requestheaders   `own_path`: the proxy's own paths on the page's origin (`ownpaths`),
                     answered by the proxy itself where the notice applies, to top-level
                     navigations only (`answers`).

Only a certain top-level page (fetch metadata: `Sec-Fetch-Dest: document`) claims the
period. A page without fetch metadata (plain HTTP, where a frame looks like a page) may
show the notice but never uses it up: the person's own certain page or "I understand" does.
The period is the policy's `notice.interval` (a day, a week, a month) by the calendar.

What counts as skipped: a person's top-level page (a GET, or a form's POST with fetch
metadata) due the notice that could not carry it: status 200 but not HTML, CSP, charset,
too large, ...; or a page the browser shows with another status, of any type (`not_ok`:
only 200 pages get the notice). Requests that are not pages at all (images, XHR, frames,
redirects, HEAD) are not candidates and not counted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from auditproxy.decide.decision import Decision, Engine
from auditproxy.notice import decode, eligibility, insert, ownpaths
from auditproxy.notice.banner import render_banner
from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.keys import ACK_PATH, RECORD_PATH, NoticeKeys, Visit, scope_of
from auditproxy.notice.navigation import Headers, is_top_level
from auditproxy.notice.ownpaths import Answer, Work
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.store import NoticeState
from auditproxy.notice.worker import Offload
from auditproxy.policy.days import Calendar, period_start
from auditproxy.policy.model import Action, BannerText, NoticeSettings, Policy

logger = logging.getLogger("auditproxy")

# Eligibility answers that mean "not a page a person opened": never counted as skips.
NOT_A_PAGE = frozenset(
    {
        SkipReason.METHOD,
        SkipReason.WEBSOCKET,
        SkipReason.STATUS,
        SkipReason.PREFETCH,
        SkipReason.NOT_DOCUMENT,
    }
)


# Statuses whose answer is no page the person reads (no body).
_NO_PAGE = frozenset({204, 205, 304, *range(100, 200)})
# The redirects a browser follows (with a Location); any other 3xx shows its body.
_FOLLOWED = frozenset({301, 302, 303, 307, 308})


def _maybe_shown(status: int, response_headers: Mapping[str, str]) -> bool:
    """Whether the browser shows the body of a response with a status other than 200."""
    if status in _NO_PAGE:
        return False
    return not (status in _FOLLOWED and "location" in response_headers)


def wording(engine: Engine, decision: Decision) -> NoticeSettings:
    """The notice this person gets: their policy group's wording and scope, or the policy's."""
    return decision.notice or engine.policy.notice


@dataclass(frozen=True, slots=True)
class Delivery:
    """The changed page: its new body (decoded; the hook re-encodes it) and headers."""

    body: bytes
    csp_headers: tuple[str, ...] | None  # new Content-Security-Policy values; None: unchanged
    styled: bool
    report_only_headers: tuple[str, ...] | None = None  # new Report-Only values; None: same


__all__ = ["Answer", "Delivery", "NoticeStage"]


def _insert(
    raw: bytes | None,
    content_encoding: str | None,
    content_type: str | None,
    policies: tuple[tuple[str, ...], tuple[str, ...]],  # enforced, report-only
    texts: Sequence[BannerText],
    links: tuple[str, str],  # the acknowledgement and record URLs
    max_bytes: int,
    budget: Budget,
) -> Delivery | SkipReason:
    if raw is None:
        return SkipReason.STREAMED
    content = decode.decode_body(raw, content_encoding, max_bytes, budget)
    if isinstance(content, SkipReason):
        return content
    banner = render_banner(texts, ack_url=links[0], record_url=links[1])
    result = insert.inject(
        content,
        banner,
        content_type=content_type,
        csp_headers=policies[0],
        unstyled_ok=True,
        max_bytes=max_bytes,
        budget=budget,
        report_only_headers=policies[1],
    )
    if isinstance(result, SkipReason):
        return result
    return Delivery(result.body, result.csp_headers, result.styled, result.report_only_headers)


class NoticeStage:
    """The notice's part of the pipeline, for the policy in force."""

    def __init__(self, state: NoticeState, max_bytes: int) -> None:
        self.state = state  # NoticeState (Resilient in production)
        self.max_bytes = max_bytes
        self.keys: NoticeKeys | None = None
        self.calendar: Calendar | None = None
        self.offload = Offload()  # the worker threads for `work`, with the deadline

    @staticmethod
    def check(policy: Policy) -> None:
        """Render the policy's notices once (its own, and each group's): a bad link fails
        the policy load, not a page."""
        for notice in (policy.notice, *(g.notice for g in policy.groups if g.notice)):
            texts = notice.ordered_texts()
            if texts:
                render_banner(texts, ack_url=ACK_PATH, record_url=RECORD_PATH)

    def configure(self, engine: Engine, calendar: Calendar) -> None:
        self.keys = NoticeKeys(engine.secret)
        self.calendar = calendar

    def visit(self, engine: Engine, decision: Decision, *, certain: bool = True) -> Visit:
        """This person's visit in the current period (its first day names it)."""
        assert self.keys is not None and self.calendar is not None
        notice = engine.policy.notice
        return Visit(
            period_start(self.calendar.today(), notice.interval),
            self.keys.user(decision.identity.key),
            scope_of(decision, wording(engine, decision).scope),
            certain,
        )

    def period(self, engine: Engine) -> date:
        """The current period's first day (what the state's keys of today start from)."""
        assert self.calendar is not None
        return period_start(self.calendar.today(), engine.policy.notice.interval)

    @staticmethod
    def applies(engine: Engine, decision: Decision) -> bool:
        """Whether the notice applies to this request's site and person at all: a client the
        policy allows, a `monitor` site whose category keeps the notice on, texts to show.
        The proxy's own paths exist only there."""
        return (
            decision.allowed_client
            and decision.match.notice
            and decision.action is Action.MONITOR
            and bool(wording(engine, decision).languages)
        )

    def candidate(
        self,
        engine: Engine,
        decision: Decision,
        *,
        method: str,
        status: int,
        request_headers: Mapping[str, str],
        response_headers: Mapping[str, str],
        fetch_dest: bytes | None,
        streamed: bool,
    ) -> Visit | SkipReason | None:
        """The Visit this response may carry, why a page due the notice cannot (to be
        counted), or None: not a page, not due, or already seen today."""
        if not self.applies(engine, decision):
            return None
        if fetch_dest is not None and fetch_dest.strip().lower() != b"document":
            return None  # an image, a script, a frame, fetch(): not a page (most requests)
        certain = fetch_dest is not None
        if method != "GET" and (method != "POST" or not certain):
            return None  # not a page (eligibility would say so too, at more cost)
        if status != 200:
            # A page, but an error page (or a 203): counted, since a site could answer
            # every page so, whatever its type (the browser shows or sniffs it), if it
            # looks like a page the person opened: the same tests as a 200 page (without
            # fetch metadata, a same-site frame counts too).
            if not _maybe_shown(status, response_headers):
                return None
            why = eligibility.eligibility(
                method, 200, request_headers, response_headers, max_bytes=self.max_bytes
            )
            if why in NOT_A_PAGE:
                return None
        # Without fetch metadata (plain HTTP) a frame looks like a page: it may show the
        # notice, never use it up.
        visit = self.visit(engine, decision, certain=certain)
        if self.state.seen(visit.day, visit.user, visit.scope):
            return None  # the common case: already seen today
        if status != 200:
            return SkipReason.NOT_OK
        reason = eligibility.eligibility(
            method, status, request_headers, response_headers, max_bytes=self.max_bytes
        )
        if reason in NOT_A_PAGE:
            return None
        if reason is None and streamed:
            reason = SkipReason.STREAMED  # never buffer what mitmproxy streams
        return reason if reason is not None else visit

    def claim(self, visit: Visit) -> bool:
        """Claim the period for this page (atomic): False when another page won the race.
        A page that is not certainly top-level claims nothing (and always may go on)."""
        if not visit.certain:
            return True
        return self.state.claim(visit.day, visit.user, visit.scope)

    def work(
        self,
        engine: Engine,
        decision: Decision,
        visit: Visit,
        *,
        raw: bytes | None,
        content_encoding: str | None,
        content_type: str | None,
        csp_headers: Sequence[str],
        path: str,
        report_only_headers: Sequence[str] = (),
        scheme: str = "https",
        port: int | None = None,
    ) -> Callable[[Budget], Delivery | SkipReason]:
        """The page's work (decode, scan, insert), pure and bounded, as one callable for a
        worker thread: it raises `DeadlineExceeded` when its budget runs out."""
        assert self.keys is not None
        back, base = ownpaths.links(visit, decision.host, path, scheme, port)
        ack_url = ownpaths.ack_link(self.keys, visit, decision.host, back, base)
        texts = wording(engine, decision).ordered_texts()  # a policy group's, or the policy's
        policies = (tuple(csp_headers), tuple(report_only_headers))
        return functools.partial(
            _insert, raw, content_encoding, content_type, policies, texts,
            (ack_url, base + RECORD_PATH), self.max_bytes,
        )  # fmt: skip

    def deliver(
        self,
        engine: Engine,
        decision: Decision,
        visit: Visit,
        *,
        raw: bytes | None,
        content_encoding: str | None,
        content_type: str | None,
        csp_headers: Sequence[str],
        path: str,
        budget: Budget | None = None,
    ) -> Delivery | SkipReason | None:
        """Claim the day and put the notice in, in this thread. None: another page of this
        person's won the race. A SkipReason: the claim was given back."""
        if not self.claim(visit):
            return None
        try:
            work = self.work(
                engine,
                decision,
                visit,
                raw=raw,
                content_encoding=content_encoding,
                content_type=content_type,
                csp_headers=csp_headers,
                path=path,
            )
            result = work(budget or Budget())
        except DeadlineExceeded:
            result = SkipReason.DEADLINE
        except BaseException:
            self.give_back(visit)
            raise
        if isinstance(result, SkipReason):
            self.give_back(visit)
        return result

    def give_back(self, visit: Visit) -> None:
        """The notice did not reach the person after all: let the next page show it."""
        if visit.certain:
            self.state.release(visit.day, visit.user, visit.scope)

    @staticmethod
    def owns(path: str) -> bool:
        """Whether the path is one of the proxy's own (a cheap test, for every request)."""
        return ownpaths.own_path(path) is not None

    @staticmethod
    def answers(headers: Headers) -> bool:
        """Only a top-level navigation gets the proxy's own answer, and not one a service
        worker preloads (the site's worker reads that answer); the rest is the site's."""
        return is_top_level(headers) and b"service-worker-navigation-preload" not in headers

    def own_path(
        self, engine: Engine, decision: Decision, path: str, headers: Headers
    ) -> Answer | Work:
        """The answer to one of the proxy's own paths on a site where the notice applies
        (`applies`), for a top-level navigation (`answers`); it never reaches the site. A
        `Work` is the answer made off the event loop."""
        assert self.keys is not None and self.calendar is not None
        current, which = self.visit(engine, decision), ownpaths.own_path(path)
        if which == ACK_PATH:
            texts, now = wording(engine, decision).ordered_texts(), self.calendar.clock()
            return ownpaths.acknowledge(
                self.keys, self.state, engine.policy, decision, current, path, headers, texts, now
            )
        if which == RECORD_PATH:
            return ownpaths.record_page(self.state, engine.policy, decision, current, headers)
        return ownpaths.not_found(engine.policy)
