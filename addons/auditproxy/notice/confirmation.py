"""The pages that ask the person to confirm "I understand". Pure.

The notice's link is in the page's bytes, and the page's own scripts may get at them: a
plain-http page can fetch itself (no fetch metadata tells that from the person's page), a
script's `document.write` can turn the rest of the page, the notice included, into text
before the notice forms its closed shadow root, an overlay can hide the notice under a
decoy. A script that has the link can follow it on the person's next click anywhere (the
click is real, its target is not). So the link does not acknowledge: it opens these
pages, whose forms carry a second token (`NoticeKeys.confirmation`, signing the step and
when the page was made) that exists nowhere else.

No script of the site can read them: each page is sandboxed (`Content-Security-Policy:
sandbox`, an opaque origin, so not even the site's own pages or an opener of the same
origin can look inside), cannot be framed, is not cached, sends no Referer, is never
given to a service worker, and is served only to a top-level navigation.

"I understand" is a deliberate act in two pages, each made by the proxy when asked: this
page (`READ`: the notice in full, "I have read this reminder") and then `CONFIRM` ("I
understand"), each answered no sooner than `ownpaths.READING_SECONDS` after it was made.
That alone says nothing about what the person saw: a site can open the pages under a
window of its own and raise it over the tab again at any time (its opener may, with no
act of the person), lay an always-on-top Picture-in-Picture window over them, or open
them in a tiny window, then ask for keys or clicks. So "I understand" asks for a number
that only that page shows (`NoticeKeys.reading_code`): keys typed blind cannot know it.
And the pages' own script (`SCRIPT`) holds a press back until the page has been in
front of the person for a second. The
button sits at one of `GAPS` heights, chosen at random for each page, and a text
fragment (`#:~:text=`) cannot scroll the page or move where Tab starts
(`Document-Policy: force-load-at-top`). Forms to this origin only. Pure ASCII with
character references, no external resource.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from urllib.parse import urlsplit

from auditproxy.decide.pages import ascii_html
from auditproxy.notice.transparency import HEADERS as _PAGE_HEADERS
from auditproxy.notice.transparency import STYLE
from auditproxy.policy.model import BannerText

# The two pages, by the step their form sends (the `n` field of the acknowledgement link).
READ, CONFIRM = 1, 2
CODE_FIELD = "k"  # the number the "I understand" page shows, as the person typed it

_WORDING = {
    "en": {
        "intro": (
            "The department's web proxy shows you this page itself; the site you were on "
            "does not see it."
        ),
        "read": "I have read this reminder",
        "confirm": (
            "To record that you have read the reminder, type the number {code} below and "
            "press \u201c{ack}\u201d."
        ),
        "number": "The number shown above",
        "locked": (
            "That was not the number shown, too many times. \u201c{ack}\u201d cannot be "
            "recorded again before the next reminder."
        ),
        "again": "That was not the number shown. Here is a new one.",
        "back": "Back to the page without answering",
    },
    "fr": {
        "intro": (
            "Le serveur mandataire Web du minist\u00e8re affiche lui-m\u00eame cette page; le "
            "site que vous consultiez ne la voit pas."
        ),
        "read": "J'ai lu ce rappel",
        "confirm": (
            "Pour enregistrer que vous avez lu le rappel, tapez le nombre {code} ci-dessous "
            "et appuyez sur \u00ab\u00a0{ack}\u00a0\u00bb."
        ),
        "number": "Le nombre indiqu\u00e9 ci-dessus",
        "locked": (
            "Ce n'\u00e9tait pas le nombre indiqu\u00e9, trop de fois. \u00ab\u00a0{ack}"
            "\u00a0\u00bb ne peut plus \u00eatre enregistr\u00e9 avant le prochain rappel."
        ),
        "again": "Ce n'\u00e9tait pas le nombre indiqu\u00e9. En voici un nouveau.",
        "back": "Revenir \u00e0 la page sans r\u00e9pondre",
    },
}


GAPS = 8  # where the button may be: 0 to 7 steps of 3rem (taller than it) further down

# The pages' one script, our own (its hash in the CSP; the site cannot reach an opaque
# origin that severed its opener): a press counts only once the page has been in front
# of the person for a second without a break: visible, its window focused, and a window
# that shows it (at least `MIN_WINDOW` device pixels, so that zooming in never counts
# against anyone; a site can open it in a tiny popup that takes the keys). A site's
# window can be raised over the tab at any time by its opener, with no act of the
# person, so the time since the page was made says nothing about what was seen. Until
# then a press does nothing (the button stays in the tab order, `aria-disabled`). The
# number to type is never copied (nor cut, nor dragged: a site's game could have the
# person paste it into a window of the site; the style also makes it unselectable). With
# scripting off the site's pages run no script either: the server's time alone applies.
MIN_WINDOW = (480, 360)
SCRIPT = (
    (
        "(()=>{const need=1000;let since=null;"
        "const big=()=>innerWidth*devicePixelRatio>=WIDE&&innerHeight*devicePixelRatio>=HIGH;"
        "const front=()=>document.visibilityState==='visible'&&document.hasFocus()&&big();"
        "const ready=()=>{if(!front())since=null;else if(since===null)since=performance.now();"
        "const ok=since!==null&&performance.now()-since>=need;"
        "for(const b of document.querySelectorAll('button'))"
        "b.setAttribute('aria-disabled',ok?'false':'true');return ok};"
        "for(const e of['focus','blur','pageshow','resize'])addEventListener(e,ready);"
        "document.addEventListener('visibilitychange',ready);setInterval(ready,100);ready();"
        "for(const f of document.forms)f.addEventListener('submit',e=>{if(!ready())"
        "e.preventDefault()});"
        "for(const t of['copy','cut','dragstart'])document.addEventListener(t,e=>{"
        "for(const c of document.querySelectorAll('.code'))"
        "if(getSelection().containsNode(c,true))e.preventDefault()})})()"
    )
    .replace("WIDE", str(MIN_WINDOW[0]))
    .replace("HIGH", str(MIN_WINDOW[1]))
)
SCRIPT_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode() + "'"


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
    csp = csp.replace("; sandbox ", "; sandbox allow-forms allow-scripts ")
    csp = csp.replace("default-src 'none'; ", f"default-src 'none'; script-src {SCRIPT_HASH}; ")
    assert f"form-action {targets}" in csp and "sandbox allow-forms allow-scripts " in csp
    assert f"script-src {SCRIPT_HASH}" in csp
    return {**_PAGE_HEADERS, "Content-Security-Policy": csp, **_NO_FRAGMENT}


_NO_FRAGMENT = {"Document-Policy": "force-load-at-top"}


def render(
    texts: Sequence[BannerText],
    action: str,
    fields: Sequence[tuple[str, str]],
    back_url: str,
    place: int = 0,
    step: int = READ,
    code: str = "",
    again: bool = False,
) -> bytes:
    """One of the two pages, each language in the policy's order with its own form (one
    acknowledgement for all) and a way back that acknowledges nothing. `READ`: the notice
    in full and "I have read this reminder"; `CONFIRM`: its monitoring sentence and "I
    understand" (the policy's wording).

    `fields` go with the form to `action` (a GET: the acknowledgement link's query), and
    on `CONFIRM` the `code` the person types (`CODE_FIELD`; `again`: the last one typed
    was wrong). `place` (0 to GAPS - 1, chosen at random by the caller) moves the button
    down from the text by that many steps."""
    hidden = "".join(
        f'<input type="hidden" name="{ascii_html(name)}" value="{ascii_html(value)}">'
        for name, value in fields
    )
    spacer = f'<div class="g{place}"></div>' if 0 < place < GAPS else ""
    form = (action, hidden + spacer, back_url, code, again)
    sections = "".join(_section(t, step, *form) for t in texts)
    return _page(texts, sections, f"<script>{SCRIPT}</script>")


def render_locked(texts: Sequence[BannerText], back_url: str) -> bytes:
    """Too many wrong numbers: nothing to answer, only the way back."""
    sections = ""
    for text in texts:
        words = _WORDING.get(text.lang.split("-")[0], _WORDING["en"])
        said = ascii_html(words["locked"]).replace("{ack}", ascii_html(text.acknowledge))
        sections += (
            f'<section lang="{ascii_html(text.lang)}"><h1>{ascii_html(text.heading)}</h1>'
            f'<p>{said}</p><p><a href="{ascii_html(back_url)}">{ascii_html(words["back"])}'
            "</a></p></section>"
        )
    return _page(texts, sections)


def _page(texts: Sequence[BannerText], sections: str, after: str = "") -> bytes:
    """The page around `sections` (and `after` them, outside <main>): in the policy's
    first language, titled by the headings, with the shared style."""
    langs = [t.lang for t in texts] or ["en"]
    title = " / ".join(t.heading for t in texts) or "Reminder"
    page = (
        f'<!DOCTYPE html><html lang="{ascii_html(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{ascii_html(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{sections}</main>{after}</body></html>"
    )
    return page.encode("ascii")


def _section(
    text: BannerText,
    step: int,
    action: str,
    hidden: str,
    back_url: str,
    code: str,
    again: bool,
) -> str:
    words = _WORDING.get(text.lang.split("-")[0], _WORDING["en"])
    if step == CONFIRM:
        body = f"<p>{ascii_html(text.monitoring)}</p>"
        if again:
            body += f'<p class="again">{ascii_html(words["again"])}</p>'
        # The number is drawn from an attribute (CSS generated content), never the page's
        # text: no selection holds it, not even Linux's primary selection, which a
        # select-all fills without a copy event (red team on ff573ba). Read out by its
        # label as one image.
        spaced = " ".join(code)
        shown = (
            f'<strong class="code" role="img" aria-label="{ascii_html(spaced)}" '
            f'data-n="{ascii_html(code)}"></strong>'
        )
        asked = ascii_html(words["confirm"]).replace("{code}", shown)
        body += f"<p>{asked.replace('{ack}', ascii_html(text.acknowledge))}</p>"
        hidden += (
            f'<p><label class="code-field">{ascii_html(words["number"])} '
            f'<input type="text" name="{CODE_FIELD}" inputmode="numeric" '
            f'pattern="[0-9]{{{len(code)}}}" maxlength="{len(code)}" size="4" '
            'autocomplete="off" required></label></p>'
        )
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
