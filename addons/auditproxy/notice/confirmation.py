"""The pages that ask the person to confirm "I understand". Pure.

The notice's link is in the page's bytes, and the page's own scripts may get at them: a
plain-http page can fetch itself (no fetch metadata tells that from the person's page), a
script's `document.write` can turn the rest of the page, the notice included, into text
before the notice forms its closed shadow root, an overlay can hide the notice under a
decoy. A script that has the link can follow it on the person's next click anywhere (the
click is real, its target is not). So the link does not acknowledge: it opens these
pages, whose forms carry a second token (`NoticeKeys.confirmation`, signing the step and
when the page was made) that exists nowhere else.

No script can read them: each page is sandboxed (`Content-Security-Policy: sandbox`, an
opaque origin, so not even the site's own pages or an opener of the same origin can look
inside), cannot be framed, is not cached, sends no Referer, is never given to a service
worker, and is served only to a top-level navigation.

"I understand" is a deliberate act in two pages, each made by the proxy when asked: this
page (`READ`: the notice in full, "I have read this reminder") and then `CONFIRM` ("I
understand"), each answered no sooner than `ownpaths.READING_SECONDS` after it was made.
A site can open the first under a decoy (a full-screen window of its own over the tab, a
game that asks for keys or clicks); the person's keys or clicks that reach it have put
the tab in front, and no script of the site can cover it again (this page severs its
opener: `Cross-Origin-Opener-Policy`), so the second page is seen for that time before
its answer. The button sits at one of `GAPS` heights, chosen at random for each page,
and a text fragment (`#:~:text=`) cannot scroll the page or move where Tab starts
(`Document-Policy: force-load-at-top`). Forms without script, to this origin only. Pure
ASCII with character references, no external resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from auditproxy.decide.pages import ascii_html
from auditproxy.notice.transparency import HEADERS as _PAGE_HEADERS
from auditproxy.notice.transparency import STYLE
from auditproxy.policy.model import BannerText

# The two pages, by the step their form sends (the `n` field of the acknowledgement link).
READ, CONFIRM = 1, 2

_WORDING = {
    "en": {
        "intro": (
            "The department's web proxy shows you this page itself; the site you were on "
            "does not see it."
        ),
        "read": "I have read this reminder",
        "confirm": "Press \u201c{ack}\u201d to record that you have read the reminder.",
        "back": "Back to the page without answering",
    },
    "fr": {
        "intro": (
            "Le serveur mandataire Web du minist\u00e8re affiche lui-m\u00eame cette page; le "
            "site que vous consultiez ne la voit pas."
        ),
        "read": "J'ai lu ce rappel",
        "confirm": (
            "Appuyez sur \u00ab\u00a0{ack}\u00a0\u00bb pour enregistrer que vous avez lu le rappel."
        ),
        "back": "Revenir \u00e0 la page sans r\u00e9pondre",
    },
}


GAPS = 8  # where the button may be: 0 to 7 steps of 2rem further down


def headers(back_url: str) -> dict[str, str]:
    """The transparency page's headers (sandboxed, unframed, no-store), with the one form
    allowed: to this origin, and on to the page the person came from (the acknowledgement
    answers with a redirect there, which Chromium checks against `form-action` too; a
    plain-http page's is on another origin than this https page). No text fragment may
    scroll it or move where Tab starts."""
    parts = urlsplit(back_url)
    targets = "'self'" + (f" {parts.scheme}://{parts.netloc}" if parts.scheme else "")
    csp = _PAGE_HEADERS["Content-Security-Policy"]
    csp = csp.replace("form-action 'none'", f"form-action {targets}")
    csp = csp.replace("; sandbox ", "; sandbox allow-forms ")
    assert f"form-action {targets}" in csp and "sandbox allow-forms " in csp
    return {**_PAGE_HEADERS, "Content-Security-Policy": csp, **_NO_FRAGMENT}


_NO_FRAGMENT = {"Document-Policy": "force-load-at-top"}


def render(
    texts: Sequence[BannerText],
    action: str,
    fields: Sequence[tuple[str, str]],
    back_url: str,
    place: int = 0,
    step: int = READ,
) -> bytes:
    """One of the two pages, each language in the policy's order with its own form (one
    acknowledgement for all) and a way back that acknowledges nothing. `READ`: the notice
    in full and "I have read this reminder"; `CONFIRM`: its monitoring sentence and "I
    understand" (the policy's wording).

    `fields` go with the form to `action` (a GET: the acknowledgement link's query).
    `place` (0 to GAPS - 1, chosen at random by the caller) moves the button down from the
    text by that many steps."""
    langs = [t.lang for t in texts] or ["en"]
    title = " / ".join(t.heading for t in texts) or "Reminder"
    hidden = "".join(
        f'<input type="hidden" name="{ascii_html(name)}" value="{ascii_html(value)}">'
        for name, value in fields
    )
    spacer = f'<div class="g{place}"></div>' if 0 < place < GAPS else ""
    sections = "".join(_section(t, step, action, hidden + spacer, back_url) for t in texts)
    page = (
        f'<!DOCTYPE html><html lang="{ascii_html(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{ascii_html(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{sections}</main></body></html>"
    )
    return page.encode("ascii")


def _section(text: BannerText, step: int, action: str, hidden: str, back_url: str) -> str:
    words = _WORDING.get(text.lang.split("-")[0], _WORDING["en"])
    if step == CONFIRM:
        body = f"<p>{ascii_html(text.monitoring)}</p>"
        body += f"<p>{ascii_html(words['confirm'].format(ack=text.acknowledge))}</p>"
        button = text.acknowledge
    else:
        policy = ""
        if text.policy_url:
            policy = (
                f'<p><a href="{ascii_html(text.policy_url)}" rel="noreferrer">'
                f"{ascii_html(text.link_text or text.policy_name)}</a></p>"
            )
        body = (
            f"<p>{ascii_html(text.disclaimer)}</p><p>{ascii_html(text.monitoring)}</p>"
            f"{policy}<p>{ascii_html(words['intro'])}</p>"
        )
        button = words["read"]
    return (
        f'<section lang="{ascii_html(text.lang)}"><h1>{ascii_html(text.heading)}</h1>{body}'
        f'<form method="get" action="{ascii_html(action)}">{hidden}'
        f'<p><button class="ack" type="submit">{ascii_html(button)}</button>'
        f' <a href="{ascii_html(back_url)}">{ascii_html(words["back"])}</a></p></form>'
        "</section>"
    )
