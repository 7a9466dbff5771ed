"""The daily notice's decisions for one response, as data. Pure: the hooks in `addon.py`
read the flow, call these, and apply what they return.

    responseheaders  `candidate`: is this a top-level page on a monitored site, for a
                     person who has not had today's notice for this scope? Decided here
                     because whether a body is streamed is decided here.
    response         `claim` the day (atomic), then `work`: decode, scan, put the banner
                     in, a pure callable that the hook runs off the event loop with a
                     deadline (`offload`, `notice.worker`); if the page cannot carry it
                     (or the deadline passes), give the claim back and say why, so the
                     next page tries again. `deliver` does both in the caller's thread.
    error            `give_back`: the page failed after the notice went in.
    requestheaders   `acknowledge`: the signed link (`ACK_PATH` on the page's own origin),
                     checked against the person asking, answered by the proxy itself.

What counts as skipped: a person's top-level GET page with status 200, due the notice,
that could not carry it (not HTML, CSP, charset, too large, ...). Requests that are not
pages at all (images, XHR, frames, redirects, HEAD) are not candidates and not counted.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, quote, urlsplit

from auditproxy.decide import pages
from auditproxy.decide.decision import Decision, Engine
from auditproxy.notice import decode, eligibility, insert
from auditproxy.notice.banner import render_banner
from auditproxy.notice.budget import Budget, DeadlineExceeded
from auditproxy.notice.keys import ACK_PATH, NoticeKeys, Visit, safe_return_path, scope_of
from auditproxy.notice.reasons import SkipReason
from auditproxy.notice.store import NoticeState
from auditproxy.notice.worker import Offload
from auditproxy.policy.days import Calendar
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


def wording(engine: Engine, decision: Decision) -> NoticeSettings:
    """The notice this person gets: their policy group's wording and scope, or the policy's."""
    return decision.notice or engine.policy.notice


@dataclass(frozen=True, slots=True)
class Delivery:
    """The changed page: its new body (decoded; the hook re-encodes it) and headers."""

    body: bytes
    csp_headers: tuple[str, ...] | None  # new Content-Security-Policy values; None: unchanged
    styled: bool


@dataclass(frozen=True, slots=True)
class Answer:
    """A response the proxy gives itself, instead of the origin's."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    acknowledged_scope: str | None = None  # a notice-acknowledged record stands for it


def _insert(
    raw: bytes | None,
    content_encoding: str | None,
    content_type: str | None,
    csp_headers: Sequence[str],
    texts: Sequence[BannerText],
    ack_url: str,
    max_bytes: int,
    budget: Budget,
) -> Delivery | SkipReason:
    if raw is None:
        return SkipReason.STREAMED
    content = decode.decode_body(raw, content_encoding, max_bytes, budget)
    if isinstance(content, SkipReason):
        return content
    banner = render_banner(texts, ack_url=ack_url)
    result = insert.inject(
        content,
        banner,
        content_type=content_type,
        csp_headers=csp_headers,
        unstyled_ok=True,
        max_bytes=max_bytes,
        budget=budget,
    )
    if isinstance(result, SkipReason):
        return result
    return Delivery(result.body, result.csp_headers, result.styled)


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
                render_banner(texts, ack_url=ACK_PATH)

    def configure(self, engine: Engine, calendar: Calendar) -> None:
        self.keys = NoticeKeys(engine.secret)
        self.calendar = calendar

    def visit(self, engine: Engine, decision: Decision) -> Visit:
        assert self.keys is not None and self.calendar is not None
        return Visit(
            self.calendar.today(),
            self.keys.user(decision.identity.key),
            scope_of(decision, wording(engine, decision).scope),
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
        if not (decision.allowed_client and decision.match.notice):
            return None
        if decision.action is not Action.MONITOR or not wording(engine, decision).languages:
            return None
        if fetch_dest is not None and fetch_dest.strip().lower() != b"document":
            return None  # an image, a script, a frame, fetch(): not a page (most requests)
        if method != "GET" or status != 200:
            return None  # not a page (eligibility would say so too, at more cost)
        visit = self.visit(engine, decision)
        if self.state.seen(visit.day, visit.user, visit.scope):
            return None  # the common case: already seen today
        reason = eligibility.eligibility(
            method, status, request_headers, response_headers, max_bytes=self.max_bytes
        )
        if reason in NOT_A_PAGE:
            return None
        if reason is None and streamed:
            reason = SkipReason.STREAMED  # never buffer what mitmproxy streams
        return reason if reason is not None else visit

    def claim(self, visit: Visit) -> bool:
        """Claim the day for this page (atomic): False when another page won the race."""
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
    ) -> Callable[[Budget], Delivery | SkipReason]:
        """The page's work (decode, scan, insert), pure and bounded, as one callable for a
        worker thread: it raises `DeadlineExceeded` when its budget runs out."""
        assert self.keys is not None
        token = self.keys.token(visit, decision.host, path)
        ack_url = (
            f"{ACK_PATH}?r={quote(path, safe='')}&d={visit.day.toordinal()}"
            f"&s={quote(visit.scope, safe='')}&t={token}"
        )
        texts = wording(engine, decision).ordered_texts()  # a policy group's, or the policy's
        return functools.partial(
            _insert, raw, content_encoding, content_type, tuple(csp_headers), texts, ack_url,
            self.max_bytes,
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
        self.state.release(visit.day, visit.user, visit.scope)

    @staticmethod
    def is_acknowledgement(path: str) -> bool:
        return path.startswith(ACK_PATH)

    def acknowledge(self, engine: Engine, decision: Decision, path: str) -> Answer:
        """The answer to the acknowledgement link; it never reaches the site.

        `acknowledged_scope` is set when the acknowledgement counts (a valid link for this
        person, today); a refused or stale link gets an ordinary access record instead.
        """
        assert self.keys is not None
        query = parse_qs(urlsplit(path).query)

        def one(name: str) -> str:
            values = query.get(name, [])
            return values[0] if len(values) == 1 else ""

        back = safe_return_path(one("r"))
        visit = self.visit(engine, decision)
        claimed = Visit(visit.day, visit.user, one("s"))
        try:
            claimed = Visit(date.fromordinal(int(one("d"))), visit.user, claimed.scope)
        except (ValueError, OverflowError):
            back = None
        expected = self.keys.token(claimed, decision.host, back or "")
        if back is None or not hmac.compare_digest(expected, one("t")):
            logger.warning(
                "refused an acknowledgement link that is not valid for this person "
                "(forged, altered, or another person's) on %s",
                decision.host,
            )
            return Answer(403, dict(pages.PAGE_HEADERS), pages.invalid_link_page(engine.policy))
        headers = {"Location": back, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        if claimed.day != visit.day:  # yesterday's link just goes back to the page
            return Answer(303, headers)
        return Answer(303, headers, acknowledged_scope=claimed.scope)
