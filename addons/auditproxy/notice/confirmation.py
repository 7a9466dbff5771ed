"""The page that asks the person to confirm "I understand". Pure.

The notice's link is in the page's bytes, and the page's own scripts may get at them: a
plain-http page can fetch itself (no fetch metadata tells that from the person's page), a
script's `document.write` can turn the rest of the page, the notice included, into text
before the notice forms its closed shadow root, an overlay can hide the notice under a
decoy. A script that has the link can follow it on the person's next click anywhere (the
click is real, its target is not). So the link does not acknowledge: it opens this page,
the notice in full with its own "I understand" link, which carries a second token
(`NoticeKeys.confirmation`, signing when the page was made) that exists nowhere else.

No script can read it: the page is sandboxed (`Content-Security-Policy: sandbox`, an
opaque origin, so not even the site's own pages or an opener of the same origin can look
inside), cannot be framed, is not cached, sends no Referer, is never given to a service
worker, and is served only to a top-level navigation. "I understand" sits at one of
`GAPS` heights, chosen at random for each page, so a decoy cannot be laid where it will
appear. Pure ASCII with character references, no script, no form, no external resource.
"""

from __future__ import annotations

from collections.abc import Sequence

from auditproxy.decide.pages import ascii_html
from auditproxy.notice.transparency import HEADERS as _PAGE_HEADERS
from auditproxy.notice.transparency import STYLE
from auditproxy.policy.model import BannerText

HEADERS = dict(_PAGE_HEADERS)  # the transparency page's: sandboxed, unframed, no-store

_WORDING = {
    "en": {
        "intro": (
            "The department's web proxy shows you this page itself; the site you were on "
            "does not see it."
        ),
        "back": "Back to the page without answering",
    },
    "fr": {
        "intro": (
            "Le serveur mandataire Web du minist\u00e8re affiche lui-m\u00eame cette page; le "
            "site que vous consultiez ne la voit pas."
        ),
        "back": "Revenir \u00e0 la page sans r\u00e9pondre",
    },
}


GAPS = 8  # where "I understand" may be: 0 to 7 steps of 2rem below the text


def render(texts: Sequence[BannerText], confirm_url: str, back_url: str, gap: int = 0) -> bytes:
    """The notice in full, in the policy's order, each language with its own "I
    understand" (one link for all) and a way back that acknowledges nothing.

    `gap` (0 to GAPS - 1, chosen at random by the caller) moves the links down by that many
    steps: a site that lays a decoy where "I understand" will appear (a double-click whose
    second press lands on it) cannot know where that is."""
    langs = [t.lang for t in texts] or ["en"]
    title = " / ".join(t.heading for t in texts) or "Reminder"
    spacer = f'<div class="g{gap}"></div>' if 0 < gap < GAPS else ""
    sections = "".join(_section(t, confirm_url, back_url, spacer) for t in texts)
    page = (
        f'<!DOCTYPE html><html lang="{ascii_html(langs[0])}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{ascii_html(title)}</title><style>{STYLE}</style></head>"
        f"<body><main>{sections}</main></body></html>"
    )
    return page.encode("ascii")


def _section(text: BannerText, confirm_url: str, back_url: str, spacer: str) -> str:
    words = _WORDING.get(text.lang.split("-")[0], _WORDING["en"])
    policy = ""
    if text.policy_url:
        policy = (
            f'<p><a href="{ascii_html(text.policy_url)}" rel="noreferrer">'
            f"{ascii_html(text.link_text or text.policy_name)}</a></p>"
        )
    return (
        f'<section lang="{ascii_html(text.lang)}">'
        f"<h1>{ascii_html(text.heading)}</h1>"
        f"<p>{ascii_html(text.disclaimer)}</p><p>{ascii_html(text.monitoring)}</p>"
        f"{policy}<p>{ascii_html(words['intro'])}</p>{spacer}"
        f'<p><a class="ack" href="{ascii_html(confirm_url)}">{ascii_html(text.acknowledge)}</a>'
        f' <a href="{ascii_html(back_url)}">{ascii_html(words["back"])}</a></p>'
        "</section>"
    )
