# Over 300 lines: the banner's markup and its pinned styles are one template.
"""The daily notice's markup, rendered from the policy's texts. Pure: no mitmproxy here.

The markup has one host element holding two copies of the same content:

    <div id="auditproxy-notice" role="region" aria-label="Reminder / Rappel" style="pins">
      <template shadowrootmode="open"><style>...</style> COPY </template>
      COPY, each element with style="all:revert!important;...!important"
    </div>

How the two copies coexist
    Browsers with Declarative Shadow DOM (Chromium 111+, Safari 16.4+, Firefox 123+) turn
    the template into the host's shadow root. The shadow tree has no <slot>, so the
    light-DOM copy is neither rendered nor in the accessibility tree: one copy is shown and
    read. Page CSS does not reach into a shadow root; the host itself, which page CSS does
    reach, is pinned by `:host{...!important}`, which beats even the page's !important rules
    (the cascade's context step favours the shadow for important declarations).
    Older browsers keep the template inert and render the light-DOM copy. Page CSS applies
    there, so every element carries `all:revert!important` (which discards every page rule
    for that element while keeping the browser's defaults: link underline, focus ring,
    disclosure triangle) followed by the few properties we want, each !important. Inline
    !important declarations beat any style sheet.

Dismissing without script
    The content sits in `<details open>`; its `<summary>` collapses it to one line. The
    browser does this natively, with the keyboard, announced as expanded/collapsed, and it
    works unstyled (when a Content-Security-Policy blocks our CSS). A checkbox with
    `:checked` rules would need the CSS to work. The summary reads "Reminder / Rappel";
    when styled and open it reads the policy's "dismiss" text instead (a `hidden` span that
    the CSS reveals, so unstyled it never claims "Hide" while collapsed). The
    acknowledgement link, served by the proxy, is the way to stop the notice for the day.

Never blocking
    An in-flow block at the top of the body: no fixed position, no overlay, nothing to
    fill in. While open (styled) it is `position:relative` with a high z-index, so a
    site's fixed top bar does not hide it; collapsed, it drops back under such a bar and
    covers nothing.

Content-Security-Policy
    The page may allow our `<style>` (via the hash in `style_hash`, see inject.py) but not
    `style="..."` attributes, or neither. `Banner.markup()` has a variant for each case, so
    the page's policy is never violated (a violation would also be reported to the site).

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

# Colours, WCAG 2 contrast ratios (recomputed by tests/test_banner.py::test_contrast):
#   text    #1f1f1f on #fdf3d7   14.9:1  (AA needs 4.5:1 for text, 3:1 for UI parts)
#   links   #0a4d8c on #fdf3d7    7.7:1
#   button  #ffffff on #0a4d8c    8.6:1
#   border  #8a5a00 on #fdf3d7    5.4:1
#   focus   3px #1f1f1f outline, 2px outside the element, on #fdf3d7: 14.9:1
_TEXT = "#1f1f1f"
_BACKGROUND = "#fdf3d7"
_LINK = "#0a4d8c"
_BORDER = "#8a5a00"

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
        "details",
        "",
        f"display:block;margin:0;padding:8px 16px;background:{_BACKGROUND};"
        f"border-bottom:3px solid {_BORDER}",
    ),
    "summary": ("summary", "", "display:list-item;cursor:pointer;font-weight:700"),
    "span": ("span", "", ""),
    "columns": (".g", "g", "display:flex;flex-wrap:wrap;gap:0 32px"),
    "column": (".l", "l", "display:block;flex:1 1 20em;min-width:0"),
    "heading": (
        "h2",
        "",
        "display:block;margin:8px 0 4px;font-size:1.125em;line-height:1.3;font-weight:700",
    ),
    "para": ("p", "", "display:block;margin:0 0 8px"),
    "link": ("a", "", f"color:{_LINK};text-decoration:underline"),
    "ack": (
        ".k",
        "k",
        f"display:inline-block;padding:4px 12px;border-radius:4px;background:{_LINK};"
        "color:#fff;font-weight:700;text-decoration:none",
    ),
}

_EXTRA_CSS = (
    # While open (or focused: WCAG 2.4.11, focus not obscured), stay above a site's fixed
    # top bar; collapsed and unfocused, cover nothing.
    "details[open],details:focus-within{position:relative;z-index:2147483647}"
    f":focus-visible{{outline:3px solid {_TEXT};outline-offset:2px}}"
    # The summary's label: the headings when collapsed, the "dismiss" text when open.
    "[open] .c{display:none}[open] .o{display:inline}"
)

_RTL_LANGUAGES = frozenset(
    {"ar", "arc", "ckb", "dv", "fa", "he", "ps", "sd", "syr", "ug", "ur", "yi"}
)
_HTTP_URL = re.compile(r"https?://[^\x00-\x20\x7f/?#\\]+[^\x00-\x20\x7f]*", re.IGNORECASE)
_ABSOLUTE_PATH = re.compile(r"/(?![/\\])[^\x00-\x20\x7f]*")
# Controls (C0 but tab/newlines, DEL, C1) are not text; C1 references even mean cp1252.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_ACK_SLOT = "\x00ack\x00"  # placeholder for the acknowledgement URL; texts cannot contain NUL


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
    """One variant of the notice, split where the acknowledgement URL goes."""

    parts: tuple[bytes, ...]

    def fill(self, ack_url: bytes) -> bytes:
        return ack_url.join(self.parts)


@dataclass(frozen=True, slots=True)
class BannerTemplate:
    """The notice for one set of texts, rendered once; only the ack URL changes per page."""

    styled: _Markup  # <style> in the shadow root, pinned light-DOM copy
    without_style_attributes: _Markup  # for a CSP that allows our <style> but not style=""
    unstyled: _Markup  # for a CSP that allows neither: still readable and dismissable


@dataclass(frozen=True, slots=True)
class Banner:
    html: bytes  # the full notice (styled variant) for this page
    style_hash: str  # CSP source for the <style> element's text: 'sha256-...'
    ack_url: bytes  # the acknowledgement URL, attribute-escaped ASCII ("" when none)
    template: BannerTemplate

    def markup(self, *, style_element: bool = True, style_attributes: bool = True) -> bytes:
        """The variant to insert, given what the page's Content-Security-Policy allows."""
        if not style_element:
            return self.template.unstyled.fill(self.ack_url)
        if not style_attributes:
            return self.template.without_style_attributes.fill(self.ack_url)
        return self.html


def render_banner(texts: Sequence[BannerText], *, ack_url: str | None) -> Banner:
    """The notice for these texts (in this order) with an "I understand" link to `ack_url`.

    Raises ValueError for no texts, a policy link that is not http(s), or an ack URL that is
    neither http(s) nor an absolute path on the page's own origin.
    """
    template = banner_template(tuple(texts), with_ack=ack_url is not None)
    ack = _ascii(_attribute(_checked_ack_url(ack_url))) if ack_url is not None else b""
    return Banner(template.styled.fill(ack), STYLE_HASH, ack, template)


@lru_cache(maxsize=32)
def banner_template(texts: tuple[BannerText, ...], *, with_ack: bool) -> BannerTemplate:
    if not texts:
        raise ValueError("the notice needs the texts of at least one language")
    for text in texts:
        _checked_policy_url(text.policy_url)
    return BannerTemplate(
        styled=_render(texts, with_ack, style_element=True, pins=True),
        without_style_attributes=_render(texts, with_ack, style_element=True, pins=False),
        unstyled=_render(texts, with_ack, style_element=False, pins=False),
    )


def _render(
    texts: tuple[BannerText, ...], with_ack: bool, *, style_element: bool, pins: bool
) -> _Markup:
    style = f"<style>{STYLE}</style>" if style_element else ""
    shadow = _content(texts, with_ack, _shadow_attributes, in_shadow=True)
    light = _content(texts, with_ack, _pinned_attributes if pins else _no_attributes)
    host = _tag(
        "div",
        id=NOTICE_ID,
        role="region",
        aria_label=" / ".join(t.heading for t in texts),
        lang=texts[0].lang,
        dir=_direction(texts[0].lang),
        style=_declarations(_HOST, important=True) if pins else None,
    )
    markup = f'{host}<template shadowrootmode="open">{style}{shadow}</template>{light}</div>'
    return _Markup(tuple(_ascii(part) for part in markup.split(_ACK_SLOT)))


type Attributes = Callable[[str], dict[str, str | None]]


def _shadow_attributes(part: str) -> dict[str, str | None]:
    return {"class": _PARTS[part][1] or None}


def _pinned_attributes(part: str) -> dict[str, str | None]:
    return {"style": "all:revert!important;" + _declarations(_PARTS[part][2], important=True)}


def _no_attributes(part: str) -> dict[str, str | None]:
    return {}


def _content(
    texts: tuple[BannerText, ...], with_ack: bool, attrs: Attributes, *, in_shadow: bool = False
) -> str:
    headings = " / ".join(_in_language(t, t.heading, attrs) for t in texts)
    label = f'<span class="c">{headings}</span>' if in_shadow else headings
    if in_shadow:  # revealed by the CSS while open; unstyled, the headings stay the label
        dismiss = " / ".join(_in_language(t, t.dismiss, attrs) for t in texts)
        label += f'<span class="o" hidden>{dismiss}</span>'
    columns = "".join(_column(t, with_ack, attrs) for t in texts)
    return (
        f"{_tag('details', open='', **attrs('box'))}"
        f"{_tag('summary', **attrs('summary'))}{label}</summary>"
        f"{_tag('div', **attrs('columns'))}{columns}</div></details>"
    )


def _column(text: BannerText, with_ack: bool, attrs: Attributes) -> str:
    policy_link = _tag("a", href=text.policy_url, rel="noreferrer", **attrs("link"))
    para = _tag("p", **attrs("para"))
    lines = [
        f"{_tag('h2', **attrs('heading'))}{_text(text.heading)}</h2>",
        f"{para}{_text(text.disclaimer)}</p>",
        f"{para}{_text(text.monitoring)}</p>",
        f"{para}{policy_link}{_text(text.link_text)}</a> ({_text(text.policy_name)})</p>",
    ]
    if with_ack:
        ack = _tag("a", href=_ACK_SLOT, **attrs("ack"))
        lines.append(f"{para}{ack}{_text(text.acknowledge)}</a></p>")
    column = _tag("div", lang=text.lang, dir=_direction(text.lang), **attrs("column"))
    return f"{column}{''.join(lines)}</div>"


def _in_language(text: BannerText, words: str, attrs: Attributes) -> str:
    span = _tag("span", lang=text.lang, dir=_direction(text.lang), **attrs("span"))
    return f"{span}{_text(words)}</span>"


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
    if value == _ACK_SLOT:
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


def _checked_ack_url(url: str) -> str:
    if not (_HTTP_URL.fullmatch(url) or _ABSOLUTE_PATH.fullmatch(url)):
        raise ValueError(f"acknowledgement link {url!r} is neither http(s) nor an absolute path")
    return url
