"""The daily notice stage: which page gets it, putting it in, and its acknowledgement.

A request's notice, step by step (all steps read `flow.metadata["auditproxy"]`, the
Decision, and leave their own mark in `flow.metadata`):

    responseheaders  a *candidate*: a top-level page (`inject.eligibility`) on a monitored
                     site, for a person who has not had today's notice for this scope.
                     Decided here because whether a body is streamed is decided here.
    response         claim the day (atomic), insert the banner (`inject.inject`); if the
                     page cannot carry it, give the claim back and count the reason, so
                     the next page tries again.
    requestheaders   the acknowledgement link (`ACK_PATH` on the page's own origin): a
                     signed token, checked against the person asking, answered by the
                     proxy with a redirect back to the page's own path.

What counts as skipped: a person's top-level GET page with status 200, due the notice,
that could not carry it (not HTML, CSP, charset, too large, ...). Requests that are not
pages at all (images, XHR, frames, redirects, HEAD) are not candidates and not counted.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import date
from urllib.parse import parse_qs, quote, urlsplit

from mitmproxy import http

from auditproxy import inject, pages
from auditproxy.accesslog import notice_event
from auditproxy.banner import render_banner
from auditproxy.days import Calendar
from auditproxy.engine import Decision, Engine
from auditproxy.flowheaders import request_headers
from auditproxy.policy import Action, NoticeScope, Policy

logger = logging.getLogger("auditproxy")

ACK_PATH = "/.well-known/auditproxy/acknowledge"
PENDING = "auditproxy.notice"  # flow.metadata: the Visit this response may carry
SHOWN = "auditproxy.notice_shown"  # flow.metadata: the Visit whose notice went in

# Eligibility answers that mean "not a page a person opened": never counted as skips.
NOT_A_PAGE = frozenset(
    {
        inject.SkipReason.METHOD,
        inject.SkipReason.WEBSOCKET,
        inject.SkipReason.STATUS,
        inject.SkipReason.PREFETCH,
        inject.SkipReason.NOT_DOCUMENT,
    }
)


@dataclass(frozen=True, slots=True)
class Visit:
    """One person's claim on one scope's notice for one day."""

    day: date
    user: str  # keyed hash of the identity: the state never holds a name
    scope: str  # "site:facebook", "category:social" or "all"


class NoticeKeys:
    """Keyed hashes for the notice: state user keys and acknowledgement tokens.

    Derived from the proxy's secret (the pseudonym key file) with a purpose label, so a
    state file or a token says nothing about a pseudonym, and tokens work across restarts
    and across instances that share the key.
    """

    def __init__(self, secret: bytes) -> None:
        self._user_key = hmac.new(secret, b"auditproxy notice user", hashlib.sha256).digest()
        self._token_key = hmac.new(secret, b"auditproxy notice token", hashlib.sha256).digest()
        self._users: dict[str, str] = {}

    def user(self, identity: str) -> str:
        hit = self._users.get(identity)
        if hit is None:
            digest = hmac.new(self._user_key, identity.encode(), hashlib.sha256)
            hit = digest.hexdigest()[:32]
            if len(self._users) > 65536:
                self._users.clear()
            self._users[identity] = hit
        return hit

    def token(self, visit: Visit, host: str, path: str) -> str:
        message = "\0".join((visit.user, str(visit.day.toordinal()), visit.scope, host, path))
        return hmac.new(self._token_key, message.encode(), hashlib.sha256).hexdigest()[:32]


def scope_of(decision: Decision, scope: NoticeScope) -> str:
    if scope is NoticeScope.SITE:
        return f"site:{decision.match.site}"
    if scope is NoticeScope.CATEGORY:
        return f"category:{decision.match.category}"
    return "all"


def safe_return_path(path: str) -> str | None:
    """A path on the same origin, or None: never `//host`, `/\\host` or a scheme."""
    if not path.startswith("/") or path.startswith(("//", "/\\")):
        return None
    if any(c in path for c in "\r\n\t\\") or not path.isascii():
        return None
    return path


class NoticeStage:
    """The notice's part of the pipeline. `AuditProxy` calls it from its hooks."""

    def __init__(self, metrics, emit, state, max_bytes: int) -> None:
        self.metrics = metrics
        self.emit = emit  # (fields) -> None: the access log
        self.state = state  # NoticeState (Resilient in production)
        self.max_bytes = max_bytes
        self.keys: NoticeKeys | None = None
        self.calendar: Calendar | None = None

    @staticmethod
    def check(policy: Policy) -> None:
        """Render the policy's notice once: a bad link fails the policy load, not a page."""
        texts = policy.notice.ordered_texts()
        if texts:
            render_banner(texts, ack_url=ACK_PATH)

    def configure(self, engine: Engine, calendar: Calendar) -> None:
        self.keys = NoticeKeys(engine.secret)
        self.calendar = calendar

    def visit(self, engine: Engine, decision: Decision) -> Visit:
        assert self.keys is not None and self.calendar is not None
        return Visit(
            self.calendar.today(),
            self.keys.user(decision.identity.name),
            scope_of(decision, engine.policy.notice.scope),
        )

    # ------------------------------------------------------------------ responseheaders

    def consider(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> None:
        """Mark the response as a candidate for the notice, or count why it cannot be."""
        if not (decision.allowed_client and decision.match.notice):
            return
        if decision.action is not Action.MONITOR or not engine.policy.notice.languages:
            return
        destination = request_headers(flow).get(b"sec-fetch-dest")
        if destination is not None and destination.strip().lower() != b"document":
            return  # an image, a script, a frame, fetch(): not a page (most requests)
        response = flow.response
        assert response is not None
        if flow.request.method != "GET" or response.status_code != 200:
            return  # not a page (eligibility would say so too, at more cost)
        visit = self.visit(engine, decision)
        if self.state.seen(visit.day, visit.user, visit.scope):
            return  # the common case: already seen today
        reason = inject.eligibility(
            flow.request.method,
            response.status_code,
            flow.request.headers,
            response.headers,
            max_bytes=self.max_bytes,
        )
        if reason in NOT_A_PAGE:
            return
        if reason is None and response.stream:
            reason = inject.SkipReason.STREAMED  # never buffer what mitmproxy streams
        if reason is not None:
            self.skipped(reason)
            return
        flow.metadata[PENDING] = visit

    # ------------------------------------------------------------------ response

    def deliver(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> None:
        visit: Visit | None = flow.metadata.pop(PENDING, None)
        if visit is None or flow.response is None:
            return
        if not self.state.claim(visit.day, visit.user, visit.scope):
            return  # another page of this person's won the race
        try:
            shown = self._inject(engine, flow, decision, visit)
        except BaseException:
            self.state.release(visit.day, visit.user, visit.scope)
            raise
        if not shown:
            self.state.release(visit.day, visit.user, visit.scope)
            return
        flow.metadata[SHOWN] = visit
        match = decision.match
        self.metrics.notices.labels(match.category, match.site, "shown").inc()
        self.emit(notice_event(decision, "notice-shown", visit.scope))

    def _inject(
        self, engine: Engine, flow: http.HTTPFlow, decision: Decision, visit: Visit
    ) -> bool:
        response = flow.response
        assert response is not None and self.keys is not None
        if response.raw_content is None:
            self.skipped(inject.SkipReason.STREAMED)
            return False
        content = inject.decode_body(
            response.raw_content, response.headers.get("content-encoding"), self.max_bytes
        )
        if isinstance(content, inject.SkipReason):
            self.skipped(content)
            return False
        path = flow.request.path
        token = self.keys.token(visit, decision.host, path)
        ack_url = (
            f"{ACK_PATH}?r={quote(path, safe='')}&d={visit.day.toordinal()}"
            f"&s={quote(visit.scope, safe='')}&t={token}"
        )
        banner = render_banner(engine.policy.notice.ordered_texts(), ack_url=ack_url)
        result = inject.inject(
            content,
            banner,
            content_type=response.headers.get("content-type"),
            csp_headers=response.headers.get_all("content-security-policy"),
            unstyled_ok=True,
            max_bytes=self.max_bytes,
        )
        if isinstance(result, inject.SkipReason):
            self.skipped(result)
            return False
        response.content = result.body  # re-encoded with the response's own encoding
        if result.csp_headers is not None:
            response.headers.set_all("Content-Security-Policy", list(result.csp_headers))
        inject.update_headers_after_injection(response.headers)
        if not result.styled:
            self.metrics.notices_unstyled.labels(decision.match.category).inc()
        return True

    def undelivered(self, flow: http.HTTPFlow) -> None:
        """The page failed after the notice went in: let the next page show it."""
        visit: Visit | None = flow.metadata.pop(SHOWN, None)
        if visit is not None and flow.error is not None:
            self.state.release(visit.day, visit.user, visit.scope)

    def skipped(self, reason: inject.SkipReason) -> None:
        self.metrics.notice_skipped.labels(reason.value).inc()

    # ------------------------------------------------------------------ requestheaders

    def is_acknowledgement(self, flow: http.HTTPFlow) -> bool:
        return flow.request.path.startswith(ACK_PATH)

    def acknowledge(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> bool:
        """Answer the acknowledgement link ourselves; it never reaches the site.

        True when the acknowledgement was recorded (its record stands for the request);
        a refused or stale link gets an ordinary access record instead.
        """
        assert self.keys is not None
        query = parse_qs(urlsplit(flow.request.path).query)

        def one(name: str) -> str:
            values = query.get(name, [])
            return values[0] if len(values) == 1 else ""

        path = safe_return_path(one("r"))
        visit = self.visit(engine, decision)
        claimed = Visit(visit.day, visit.user, one("s"))
        try:
            claimed = Visit(date.fromordinal(int(one("d"))), visit.user, claimed.scope)
        except (ValueError, OverflowError):
            path = None
        expected = self.keys.token(claimed, decision.host, path or "")
        if path is None or not hmac.compare_digest(expected, one("t")):
            logger.warning(
                "refused an acknowledgement link that is not valid for this person "
                "(forged, altered, or another person's) on %s",
                decision.host,
            )
            flow.response = http.Response.make(
                403, pages.invalid_link_page(engine.policy), pages.PAGE_HEADERS
            )
            return False
        flow.response = http.Response.make(
            303,
            b"",
            {"Location": path, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
        )
        if claimed.day != visit.day:  # yesterday's link just goes back to the page
            return False
        match = decision.match
        self.metrics.notices.labels(match.category, match.site, "acknowledged").inc()
        self.emit(notice_event(decision, "notice-acknowledged", claimed.scope))
        return True
