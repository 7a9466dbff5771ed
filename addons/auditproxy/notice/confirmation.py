"""The page that asks the person to confirm "I understand". Pure.

The notice's link is in the page's bytes, and the page's own scripts may get at them: a
plain-http page can fetch itself (no fetch metadata tells that from the person's page), a
script's `document.write` can turn the rest of the page, the notice included, into text
before the notice forms its closed shadow root, an overlay can hide the notice under a
decoy. A script that has the link can follow it on the person's next click anywhere (the
click is real, its target is not). So the link does not acknowledge: it opens this page,
the notice in full with its own "I understand", whose form carries a second token
(`NoticeKeys.confirmation`, signing when the page was made) that exists nowhere else.

No script can read it: the page is sandboxed (`Content-Security-Policy: sandbox`, an
opaque origin, so not even the site's own pages or an opener of the same origin can look
inside), cannot be framed, is not cached, sends no Referer, is never given to a service
worker, and is served only to a top-level navigation.

"I understand" is a deliberate act, not one click: the person ticks "I have read this"
and then presses "I understand" (a form, no script; the browser will not send it
unticked, and the proxy checks the tick too). Each of the two sits at one of `GAPS`
heights, chosen at random for each page, so a site that opens this page under a decoy (a
full-screen popup, a "double-click to play") cannot know where either will be, and one
stray click does nothing. Pure ASCII with character references, no script, no external
resource.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from auditproxy.decide.pages import ascii_html
from auditproxy.notice.transparency import HEADERS as _PAGE_HEADERS
from auditproxy.notice.transparency import STYLE
from auditproxy.policy.model import BannerText

# The form's tick: its name and value in the acknowledgement link.
READ_FIELD, READ_VALUE = "read", "1"

_WORDING = {
    "en": {
        "intro": (
            "The department's web proxy shows you this page itself; the site you were on "
            "does not see it."
        ),
        "read": "I have read this reminder",
        "back": "Back to the page without answering",
    },
    "fr": {
        "intro": (
            "Le serveur mandataire Web du minist\u00e8re affiche lui-m\u00eame cette page; le "
            "site que vous consultiez ne la voit pas."
        ),
        "read": "J'ai lu ce rappel",
        "back": "Revenir \u00e0 la page sans r\u00e9pondre",
    },
}


GAPS = 8  # where the tick and "I understand" may be: 0 to 7 steps of 2rem further down


def headers(back_url: str) -> dict[str, str]:
    """The transparency page's headers (sandboxed, unframed, no-store), with the one form
    allowed: to this origin, and on to the page the person came from (the acknowledgement
    answers with a redirect there, which Chromium checks against `form-action` too; a
    plain-http page's is on another origin than this https page)."""
    parts = urlsplit(back_url)
    targets = "'self'" + (f" {parts.scheme}://{parts.netloc}" if parts.scheme else "")
    csp = _PAGE_HEADERS["Content-Security-Policy"]
    csp = csp.replace("form-action 'none'", f"form-action {targets}")
    csp = csp.replace("; sandbox ", "; sandbox allow-forms ")
    assert f"form-action {targets}" in csp and "sandbox allow-forms " in csp
    return {**_PAGE_HEADERS, "Content-Security-Policy": csp}


def render(
    texts: Sequence[BannerText],
    action: str,
    fields: Sequence[tuple[str, str]],
    back_url: str,
    places: tuple[int, int] = (0, 0),
) -> bytes:
    """The notice in full, in the policy's order, each language with its own form ("I have
    read this" and "I understand"; one acknowledgement for all) and a way back that
    acknowledges nothing.

    `fields` go with the form to `action` (a GET: the acknowledgement link's query, then
    `READ_FIELD`). `places` (each 0 to GAPS - 1, chosen at random by the caller) move the
    tick down from the text, and "I understand" down from the tick, by that many steps."""
    langs = [t.lang for t in texts] or ["en"]
    title = " / ".join(t.heading for t in texts) or "Reminder"
    hidden = "".join(
        f'<input type="hidden" name="{ascii_html(name)}" value="{ascii_html(value)}">'
        for name, value in fields
    )
    form = (action, hidden, back_url, tuple(_spacer(n) for n in places))
    sections = "".join(_section(t, *form) for t in texts)
    page = (
        f'<!DOCTYPE html><html lang="{ascii_html(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{ascii_html(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{sections}</main></body></html>"
    )
    return page.encode("ascii")


def _spacer(gap: int) -> str:
    return f'<div class="g{gap}"></div>' if 0 < gap < GAPS else ""


def _section(
    text: BannerText, action: str, hidden: str, back_url: str, spacers: tuple[str, ...]
) -> str:
    words = _WORDING.get(text.lang.split("-")[0], _WORDING["en"])
    policy = ""
    if text.policy_url:
        policy = (
            f'<p><a href="{ascii_html(text.policy_url)}" rel="noreferrer">'
            f"{ascii_html(text.link_text or text.policy_name)}</a></p>"
        )
    before_tick, before_button = spacers
    return (
        f'<section lang="{ascii_html(text.lang)}">'
        f"<h1>{ascii_html(text.heading)}</h1>"
        f"<p>{ascii_html(text.disclaimer)}</p><p>{ascii_html(text.monitoring)}</p>"
        f"{policy}<p>{ascii_html(words['intro'])}</p>"
        f'<form method="get" action="{ascii_html(action)}">{hidden}{before_tick}'
        f'<p><label class="read"><input type="checkbox" name="{READ_FIELD}" '
        f'value="{READ_VALUE}" required> {ascii_html(words["read"])}</label></p>'
        f'{before_button}<p><button class="ack" type="submit">'
        f"{ascii_html(text.acknowledge)}</button>"
        f' <a href="{ascii_html(back_url)}">{ascii_html(words["back"])}</a></p></form>'
        "</section>"
    )
