# Over 300 lines: the banner's markup and its pinned styles are one template.
"""The notice's markup, rendered from the policy's texts. Pure: no mitmproxy here.

What it looks like (issue #15; after GOV.UK's cookie and notification banners and
Canada.ca's WET alerts: one short message, in the page's flow, a plain action, the detail
one activation away, both official languages with the same weight):

    Reminder: Your views are your own, not your employer's. ...    Read the policy  [I understand]
    Rappel : Vos opinions n'engagent que vous, pas votre ...   Lire la politique  [Je comprends]

One line per language, in the policy's order, the same size and weight. Each line's
sentence is the `<summary>` of a `<details>` whose content is the full text and the link
"What is recorded about me": the browser opens it natively, with the keyboard, announced
as expanded or collapsed, without script and without our CSS.

The markup has one host element holding two copies of the same content:

    <div id="auditproxy-notice" role="region" aria-label="Reminder / Rappel" style="pins">
      <template shadowrootmode="closed"><style>...</style> COPY </template>
      COPY, each element with style="all:revert!important;...!important", no "I understand"
    </div>

How the two copies coexist
    Browsers with Declarative Shadow DOM (Chromium 111+, Safari 16.4+, Firefox 123+) turn
    the template into the host's shadow root. The shadow tree has no <slot>, so the
    light-DOM copy is neither rendered nor in the accessibility tree: one copy is shown and
    read. Page CSS does not reach into a shadow root; the host itself, which page CSS does
    reach, is pinned by `:host{...!important}`, which beats even the page's !important rules.
    Older browsers keep the template inert and render the light-DOM copy, whose every
    element carries `all:revert!important` and the few properties we want, each !important.

Only the person can say "I understand"
    The root is *closed*: no script of the page can reach it (`host.shadowRoot` is null, it
    is not serialised, selections and events are retargeted to the host), and the signed
    acknowledgement link exists only there. The light-DOM copy, which scripts can read, has
    no acknowledgement link at all. The proxy counts the link only for a navigation the
    person made (`notice.navigation`).

Never blocking
    In the page's flow at the top of the body: no fixed position, no overlay, nothing to
    fill in. It is `position:relative` with a high z-index, so a site's fixed top bar does
    not hide it (nor its focus, WCAG 2.4.11) until the person scrolls past it.

Content-Security-Policy
    The page may allow our `<style>` (via the hash in `style_hash`, see insert.py) but not
    `style="..."` attributes, or neither. `Banner.markup()` has a variant for each case, so
    the page's policy (enforced or report-only) is never violated nor reported.

Output is pure ASCII: every other character is a numeric character reference, so the
bytes mean the same in any ASCII-compatible charset the page may use.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from auditproxy.policy.model import BannerText

NOTICE_ID = "auditproxy-notice"  # interface contract: outside tests look for it

# Colours, WCAG 2 contrast ratios (recomputed by tests/notice/test_banner.py):
#   light: text #1b1b1b on #f1f4f8 15.6:1, links #0b4f8a 7.6:1, accent #26374a 11.0:1
#   dark:  text #f1f3f5 on #1c2733 13.6:1, links #9ccaff 8.9:1, accent #8fb4dc 7.0:1
#   focus: a 3px outline in the text colour, 2px outside the element
_TEXT = "#1b1b1b"
_BACKGROUND = "#f1f4f8"
_LINK = "#0b4f8a"
_ACCENT = "#26374a"
_DARK_TEXT = "#f1f3f5"
_DARK_BACKGROUND = "#1c2733"
_DARK_LINK = "#9ccaff"
_DARK_ACCENT = "#8fb4dc"

# Inherited properties are set on the host, so the content inherits ours, not the page's.
# `medium` is the reader's own default size, unaffected by the page's `html{font-size}`.
_HOST = (
    "all:initial;display:block;margin:0;padding:0;"
    f"font:medium/1.5 system-ui,-apple-system,Segoe UI,Roboto,Arial,sans-serif;color:{_TEXT};"
    "text-align:start;overflow-wrap:break-word"
)

# Each part of the content: its CSS selector inside the shadow root, its class there (if the
# selector is a class) and its declarations, shared by the shadow CSS and the inline pins.
_PARTS: dict[str, tuple[str, str, str]] = {
    "box": (
        ".b",
        "b",
        # Above a site's fixed top bar (which would hide it), in the flow (covers nothing
        # once scrolled past).
        "display:block;position:relative;z-index:2147483647;margin:0;padding:2px 16px;"
        f"background:{_BACKGROUND};border-top:4px solid {_ACCENT};"
        f"border-bottom:1px solid {_ACCENT}",
    ),
    "row": (
        ".r",
        "r",
        "display:flex;flex-wrap:wrap;align-items:baseline;gap:0 16px;padding:2px 0",
    ),
    "details": ("details", "", "display:block;flex:1 1 24em;min-width:0"),
    "summary": ("summary", "", "display:list-item;cursor:pointer"),
    "strong": ("strong", "", "font-weight:700"),
    "full": (".f", "f", "display:block;max-width:48em;margin:2px 0 4px"),
    "para": ("p", "", "display:block;margin:0 0 4px"),
    "actions": (".a", "a", "display:flex;flex-wrap:wrap;gap:0 16px"),
    "link": (
        "a",
        "",
        f"color:{_LINK};text-decoration:underline;text-underline-offset:2px",
    ),
    "ack": (".k", "k", "font-weight:700"),
}

_EXTRA_CSS = (
    f":focus-visible{{outline:3px solid {_TEXT};outline-offset:2px}}"
    ".r+.r{border-top:1px solid #c9d1da}"
    # A dark page wants a dark notice; forced colours (Windows high contrast) replace
    # every colour with the system's, and the borders stay.
    "@media (prefers-color-scheme:dark){"
    f":host{{color:{_DARK_TEXT}!important}}"
    f".b{{background:{_DARK_BACKGROUND};border-color:{_DARK_ACCENT}}}"
    f"a{{color:{_DARK_LINK}}}.r+.r{{border-color:#3d4b5a}}"
    f":focus-visible{{outline-color:{_DARK_TEXT}}}}}"
    "@media (forced-colors:active){.b,.r+.r{border-color:CanvasText}"
    ":focus-visible{outline-color:Highlight}}"
    "@media (max-width:30em){.b{padding:2px 12px}}"
)

_RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "ps", "sd", "syr", "ug", "ur", "yi"}
)
_HTTP_URL = re.compile(r"https?://[^\x00-\x20\x7f/?#\\]+[^\x00-\x20\x7f]*", re.IGNORECASE)
_ABSOLUTE_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f]*")
# Controls (C0 but tab/newlines, DEL, C1) are not text; C1 references even mean cp1252.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Placeholders for the per-page URLs; texts cannot contain NUL.
_ACK_SLOT = "\x00ack\x00"
_RECORD_SLOT = "\x00record\x00"
_SLOTS = re.compile("(\x00ack\x00|\x00record\x00)")


def _declarations(css: str, *, important: bool) -> str:
    if not important:
        return css
    return ";".join(f"{d}!important" for d in css.split(";") if d)


def _shadow_css() -> str:
    rules = [f":host{{{_declarations(_HOST, important=True)}}}"]
    rules += [f"{selector}{{{css}}}" for selector, _, css in _PARTS.values() if css]
    return "".join(rules) + _EXTRA_CSS


STYLE = _shadow_css()
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"


@dataclass(frozen=True, slots=True)
class _Markup:
    """One variant of the notice, split where the per-page URLs go (`slots`: which)."""

    parts: tuple[bytes, ...]
    slots: tuple[str, ...]

    def fill(self, ack_url: bytes, record_url: bytes) -> bytes:
        urls = {_ACK_SLOT: ack_url, _RECORD_SLOT: record_url}
        out = [self.parts[0]]
        for slot, part in zip(self.slots, self.parts[1:], strict=True):
            out += (urls[slot], part)
        return b"".join(out)


@dataclass(frozen=True, slots=True)
class BannerTemplate:
    """The notice for one set of texts, rendered once; only the URLs change per page."""

    styled: _Markup  # <style> in the shadow root, pinned light-DOM copy
    without_style_attributes: _Markup  # for a CSP that allows our <style> but not style=""
    unstyled: _Markup  # for a CSP that allows neither: still readable and foldable


@dataclass(frozen=True, slots=True)
class Banner:
    html: bytes  # the full notice (styled variant) for this page
    style_hash: str  # CSP source for the <style> element's text: 'sha256-...'
    ack_url: bytes  # the acknowledgement URL, attribute-escaped ASCII ("" when none)
    template: BannerTemplate
    record_url: bytes = b""  # the page "what is recorded about me" ("" when none)

    def markup(self, *, style_element: bool = True, style_attributes: bool = True) -> bytes:
        """The variant to insert, given what the page's Content-Security-Policy allows."""
        if not style_element:
            return self.template.unstyled.fill(self.ack_url, self.record_url)
        if not style_attributes:
            return self.template.without_style_attributes.fill(self.ack_url, self.record_url)
        return self.html


def render_banner(
    texts: Sequence[BannerText], *, ack_url: str | None, record_url: str | None = None
) -> Banner:
    """The notice for these texts (in this order) with an "I understand" link to `ack_url`
    and a "What is recorded about me" link to `record_url` (each left out when None).

    Raises ValueError for no texts, a policy link that is not http(s), or a proxy link that
    is neither http(s) nor an absolute path on the page's own origin.
    """
    template = banner_template(
        tuple(texts), with_ack=ack_url is not None, with_record=record_url is not None
    )
    ack = _url(ack_url, "acknowledgement")
    record = _url(record_url, "record")
    return Banner(template.styled.fill(ack, record), STYLE_HASH, ack, template, record)


def _url(url: str | None, what: str) -> bytes:
    return b"" if url is None else _ascii(_attribute(_checked_proxy_url(url, what)))


@lru_cache(maxsize=32)
def banner_template(
    texts: tuple[BannerText, ...], *, with_ack: bool, with_record: bool = False
) -> BannerTemplate:
    if not texts:
        raise ValueError("the notice needs the texts of at least one language")
    for text in texts:
        _checked_policy_url(text.policy_url)
    links = (with_ack, with_record)
    return BannerTemplate(
        styled=_render(texts, links, style_element=True, pins=True),
        without_style_attributes=_render(texts, links, style_element=True, pins=False),
        unstyled=_render(texts, links, style_element=False, pins=False),
    )


def _render(
    texts: tuple[BannerText, ...], links: tuple[bool, bool], *, style_element: bool, pins: bool
) -> _Markup:
    with_ack, with_record = links
    style = f"<style>{STYLE}</style>" if style_element else ""
    shadow = _content(texts, _shadow_attributes, with_ack=with_ack, with_record=with_record)
    # The light-DOM copy is readable by the page's scripts: never the signed link there.
    attrs = _pinned_attributes if pins else _no_attributes
    light = _content(texts, attrs, with_ack=False, with_record=with_record)
    host = _tag(
        "div",
        id=NOTICE_ID,
        role="region",
        aria_label=" / ".join(t.heading for t in texts),
        lang=texts[0].lang,
        dir=_direction(texts[0].lang),
        style=_declarations(_HOST, important=True) if pins else None,
    )
    markup = f'{host}<template shadowrootmode="closed">{style}{shadow}</template>{light}</div>'
    pieces = _SLOTS.split(markup)
    return _Markup(tuple(_ascii(p) for p in pieces[::2]), tuple(pieces[1::2]))


type Attributes = Callable[[str], dict[str, str | None]]


def _shadow_attributes(part: str) -> dict[str, str | None]:
    return {"class": _PARTS[part][1] or None}


def _pinned_attributes(part: str) -> dict[str, str | None]:
    return {"style": "all:revert!important;" + _declarations(_PARTS[part][2], important=True)}


def _no_attributes(part: str) -> dict[str, str | None]:
    return {}


def _content(
    texts: tuple[BannerText, ...], attrs: Attributes, *, with_ack: bool, with_record: bool
) -> str:
    rows = "".join(_row(t, attrs, with_ack=with_ack, with_record=with_record) for t in texts)
    return f"{_tag('div', **attrs('box'))}{rows}</div>"


def _row(text: BannerText, attrs: Attributes, *, with_ack: bool, with_record: bool) -> str:
    """One language: its sentence (the summary of the full text), the policy link and
    "I understand"."""
    para = _tag("p", **attrs("para"))
    full = [
        f"{para}{_text(text.disclaimer)}</p>",
        f"{para}{_text(text.monitoring)}</p>",
        f"{para}{_text(text.policy_name)}</p>",
    ]
    if with_record:
        record = _tag("a", href=_RECORD_SLOT, referrerpolicy="no-referrer", **attrs("link"))
        full.append(f"{para}{record}{_text(text.record_link)}</a></p>")
    summary = (
        f"{_tag('summary', **attrs('summary'))}{_tag('strong', **attrs('strong'))}"
        f"{_text(text.heading)}</strong>{_colon(text.lang)}{_text(text.sentence)}</summary>"
    )
    details = (
        f"{_tag('details', **attrs('details'))}{summary}"
        f"{_tag('div', **attrs('full'))}{''.join(full)}</div></details>"
    )
    actions = [
        f"{_tag('a', href=text.policy_url, rel='noreferrer', **attrs('link'))}"
        f"{_text(text.link_text)}</a>"
    ]
    if with_ack:
        # The referrer (this page's origin) tells the proxy that the link was followed from
        # this host's own page, even where the page's policy would send none.
        ack = _tag("a", href=_ACK_SLOT, referrerpolicy="origin", **attrs("ack"))
        actions.append(f"{ack}{_text(text.acknowledge)}</a>")
    row = _tag("div", lang=text.lang, dir=_direction(text.lang), **attrs("row"))
    return f"{row}{details}{_tag('span', **attrs('actions'))}{''.join(actions)}</span></div>"


def _colon(lang: str) -> str:
    """The heading's colon as the language writes it (French: a no-break space before)."""
    return "\u00a0: " if lang.split("-", 1)[0].lower() == "fr" else ": "


def _tag(name: str, **attributes: str | None) -> str:
    """A start tag; `aria_label` becomes `aria-label`; None leaves an attribute out."""
    parts = [name]
    for key, value in attributes.items():
        if value is None:
            continue
        attribute = key.replace("_", "-")
        parts.append(attribute if value == "" else f'{attribute}="{_attribute(value)}"')
    return f"<{' '.join(parts)}>"


def _text(value: str) -> str:
    return html.escape(_CONTROLS.sub("\ufffd", value), quote=False)


def _attribute(value: str) -> str:
    if value in (_ACK_SLOT, _RECORD_SLOT):
        return value
    return html.escape(_CONTROLS.sub("\ufffd", value), quote=True)


def _ascii(markup: str) -> bytes:
    return markup.encode("ascii", "xmlcharrefreplace")


def _direction(lang: str) -> str:
    return "rtl" if lang.split("-", 1)[0].lower() in _RTL_LANGUAGES else "ltr"


def _checked_policy_url(url: str) -> str:
    if not _HTTP_URL.fullmatch(url):
        raise ValueError(f"policy link {url!r} is not an http(s) URL")
    return url


def _checked_proxy_url(url: str, what: str) -> str:
    if not (_HTTP_URL.fullmatch(url) or _ABSOLUTE_PATH.fullmatch(url)):
        raise ValueError(f"{what} link {url!r} is neither http(s) nor an absolute path")
    return url
