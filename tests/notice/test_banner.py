"""The notice's markup: safe, accessible, bilingual, isolated, cheap to render."""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import replace
from html.parser import HTMLParser

import pytest

from auditproxy.notice import banner as banner_module
from auditproxy.notice.banner import NOTICE_ID, Banner, banner_template, render_banner
from auditproxy.policy.load import load_policy
from auditproxy.policy.model import BannerText
from support.paths import EXAMPLE_POLICY

ACK = "https://proxy.example/auditproxy/ack?site=facebook&sig=abc"


@pytest.fixture(scope="module")
def texts() -> tuple[BannerText, ...]:
    return load_policy(EXAMPLE_POLICY).notice.ordered_texts()


@pytest.fixture(scope="module")
def notice(texts: tuple[BannerText, ...]) -> Banner:
    return render_banner(texts, ack_url=ACK)


def english(**changes: str) -> BannerText:
    base = BannerText(
        lang="en",
        heading="Reminder",
        disclaimer="Views are your own.",
        monitoring="Use is monitored.",
        policy_name="Policy",
        policy_url="https://intranet.example/policy",
        link_text="Read the policy",
        acknowledge="I understand",
        dismiss="Hide this notice",
    )
    return replace(base, **changes)


def variants(notice: Banner) -> dict[str, bytes]:
    return {
        "styled": notice.html,
        "without_style_attributes": notice.markup(style_attributes=False),
        "unstyled": notice.markup(style_element=False),
    }


# --- a small tree of the markup, enough to check structure -------------------------------


class Element:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: Element | None):
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Element | str] = []

    def iter(self):
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str) -> list[Element]:
        return [e for e in self.iter() if e.tag == tag]

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def ancestors(self):
        node = self.parent
        while node is not None:
            yield node
            node = node.parent


VOID = {"meta", "link", "br", "img", "input", "hr"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#root", {}, None)
        self.current = self.root

    def handle_starttag(self, tag, attrs):
        element = Element(tag, dict(attrs), self.current)
        self.current.children.append(element)
        if tag not in VOID:
            self.current = element

    def handle_endtag(self, tag):
        assert self.current.tag == tag, f"</{tag}> closes <{self.current.tag}>"
        self.current = self.current.parent

    def handle_data(self, data):
        self.current.children.append(data)


def tree(markup: bytes) -> Element:
    builder = TreeBuilder()
    builder.feed(markup.decode("ascii"))
    builder.close()
    assert builder.current is builder.root, "unclosed elements"
    return builder.root


def host(markup: bytes) -> Element:
    (only,) = [c for c in tree(markup).children if isinstance(c, Element)]
    return only


def copies(markup: bytes) -> tuple[Element, Element]:
    """(the closed shadow root's content, the light-DOM fallback)."""
    outer = host(markup)
    template, light = [c for c in outer.children if isinstance(c, Element)]
    assert template.tag == "template"
    (shadow,) = [c for c in template.children if isinstance(c, Element) and c.tag != "style"]
    return shadow, light


# --- the contract -------------------------------------------------------------------------


def test_the_outermost_element_carries_the_notice_id(notice: Banner) -> None:
    for markup in variants(notice).values():
        outer = host(markup)
        assert outer.attrs["id"] == NOTICE_ID == "auditproxy-notice"
        assert markup.startswith(b'<div id="auditproxy-notice"')
        assert markup.endswith(b"</div>")
        assert markup.count(b'id="') == 1  # no ids inside: the light copy shares the page's


def test_markup_is_pure_ascii_with_character_references(notice: Banner) -> None:
    for markup in variants(notice).values():
        assert markup.isascii()
    assert "médias sociaux".encode("ascii", "xmlcharrefreplace") in notice.html
    assert b"m&#233;dias" in notice.html


def test_no_script_no_form_no_credentials(notice: Banner) -> None:
    for markup in variants(notice).values():
        lowered = markup.lower()
        for forbidden in (b"<script", b"<form", b"<input", b"<iframe", b"javascript:"):
            assert forbidden not in lowered
        assert not re.search(rb"\son[a-z]+=", lowered), "no event handler attributes"
        assert b"password" not in lowered


def test_policy_texts_cannot_inject_markup() -> None:
    hostile = english(
        heading='"><img src=x onerror=alert(1)>',
        disclaimer="<script>alert('x')</script>",
        monitoring="</details></template><p>",
        link_text="<b>link</b>",
        policy_name="A & B",
    )
    markup = render_banner([hostile], ack_url=None).html
    assert b"<script" not in markup and b"<img" not in markup and b"<b>" not in markup
    assert b"&lt;script&gt;alert('x')&lt;/script&gt;" in markup
    assert b"A &amp; B" in markup
    shadow, _ = copies(markup)
    assert "<script>alert('x')</script>" in shadow.text()
    assert host(markup).attrs["aria-label"] == '"><img src=x onerror=alert(1)>'


def test_controls_in_texts_become_replacement_characters() -> None:
    markup = render_banner([english(disclaimer="a\x00b\x85c\x07d")], ack_url=ACK).html
    assert b"a&#65533;b&#65533;c&#65533;d" in markup
    assert b"\x00" not in markup


# --- content ------------------------------------------------------------------------------


def rows(copy: Element) -> list[Element]:
    return [e for e in copy.iter() if e.tag == "div" and "lang" in e.attrs]


def test_both_languages_in_policy_order_each_with_lang(notice: Banner) -> None:
    for copy in copies(notice.html):
        assert [r.attrs["lang"] for r in rows(copy)] == ["en", "fr"]
        english_text, french_text = (r.text() for r in rows(copy))
        assert "views expressed are your own" in english_text
        assert "monitored" in english_text
        assert "les opinions exprim\u00e9es sont les v\u00f4tres" in french_text
        assert "surveillance" in french_text
        assert [s.text() for s in copy.find_all("strong")] == ["Reminder", "Rappel"]


def test_one_short_line_per_language_the_full_text_one_activation_away(notice: Banner) -> None:
    """Collapsed by default: each language's line is its reminder in one sentence (the
    summary of a closed <details> holding the full text), its policy link and, in the
    shadow copy only, "I understand"."""
    shadow, _ = copies(notice.html)
    for row, sentence in zip(
        rows(shadow),
        [
            "Reminder: Your views are your own, not your employer's. This network is monitored.",
            "Rappel\u00a0: Vos opinions n'engagent que vous, pas votre employeur. Ce r\u00e9seau "
            "est surveill\u00e9.",
        ],
        strict=True,
    ):
        details, actions = (c for c in row.children if isinstance(c, Element))
        assert details.tag == "details" and "open" not in details.attrs  # collapsed
        summary = details.children[0]
        assert isinstance(summary, Element) and summary.tag == "summary"
        assert summary.text() == sentence
        assert len(sentence) <= 90  # a sentence, not a paragraph
        full = details.children[1]
        assert isinstance(full, Element)
        assert "monitored" in full.text() or "surveillance" in full.text()
        assert [a.text() for a in actions.find_all("a")] in (
            ["Read the policy", "I understand"],
            ["Lire la politique", "Je comprends"],
        )


def test_equal_prominence_same_markup_for_each_language(notice: Banner) -> None:
    """The Official Languages Act: neither language smaller, bolder or further down."""
    for copy in copies(notice.html):
        shapes = []
        for row in rows(copy):
            shapes.append([(e.tag, e.attrs.get("class"), e.attrs.get("style")) for e in row.iter()])
        english, french = shapes
        assert [(t, c) for t, c, _ in english] == [(t, c) for t, c, _ in french]
        styles = {s for t, c, s in english} | {s for t, c, s in french}
        assert all(s is None or s.startswith("all:revert") for s in styles)


def test_without_a_summary_text_the_line_is_the_disclaimer_and_monitoring() -> None:
    markup = render_banner([english()], ack_url=None).html
    shadow, _ = copies(markup)
    assert shadow.find_all("summary")[0].text() == "Reminder: Views are your own. Use is monitored."


def test_order_follows_the_texts_given(texts: tuple[BannerText, ...]) -> None:
    french_first = render_banner(tuple(reversed(texts)), ack_url=None)
    shadow, _ = copies(french_first.html)
    assert [e.attrs["lang"] for e in rows(shadow)] == ["fr", "en"]
    assert host(french_first.html).attrs["lang"] == "fr"


def test_landmark_with_a_label_in_both_languages(notice: Banner) -> None:
    outer = host(notice.html)
    assert outer.attrs["role"] == "region"
    assert outer.attrs["aria-label"] == "Reminder / Rappel"
    assert outer.attrs["lang"] == "en" and outer.attrs["dir"] == "ltr"


RECORD = "/.well-known/auditproxy/recorded"


def test_policy_record_and_acknowledgement_links(texts: tuple[BannerText, ...]) -> None:
    shadow, light = copies(render_banner(texts, ack_url=ACK, record_url=RECORD).html)
    links = [(a.attrs["href"], a.text()) for a in shadow.find_all("a")]
    assert links == [
        (RECORD, "What is recorded about me"),
        ("https://intranet.example.gc.ca/policies/electronic-networks", "Read the policy"),
        (ACK, "I understand"),
        (RECORD, "Ce qui est enregistr\u00e9 \u00e0 mon sujet"),
        ("https://intranet.example.gc.ca/politiques/reseaux-electroniques", "Lire la politique"),
        (ACK, "Je comprends"),
    ]
    policy_link = shadow.find_all("a")[1]
    assert policy_link.attrs["rel"] == "noreferrer"  # the intranet need not see the page
    assert "target" not in policy_link.attrs  # a sandboxed page may forbid popups
    ack = shadow.find_all("a")[2]
    assert ack.attrs["referrerpolicy"] == "origin"  # the proxy sees where it was followed
    assert "Policy on the Use of Electronic Networks" in shadow.text()
    # The light-DOM copy is readable by the page's scripts: never the signed link there.
    assert [a.attrs["href"] for a in light.find_all("a")] == [
        RECORD,
        "https://intranet.example.gc.ca/policies/electronic-networks",
        RECORD,
        "https://intranet.example.gc.ca/politiques/reseaux-electroniques",
    ]


def test_the_shadow_root_is_closed_and_holds_the_only_signed_link(notice: Banner) -> None:
    for markup in variants(notice).values():
        assert markup.count(b'<template shadowrootmode="closed">') == 1
        assert b'shadowrootmode="open"' not in markup
        assert b"shadowrootserializable" not in markup and b"shadowrootclonable" not in markup
        template_end = markup.index(b"</template>")
        assert markup.count(notice.ack_url) == 2  # one per language, both in the template
        assert markup.rindex(notice.ack_url) < template_end


def test_ack_url_is_attribute_escaped(notice: Banner) -> None:
    assert b'href="https://proxy.example/auditproxy/ack?site=facebook&amp;sig=abc"' in notice.html
    quoted = render_banner([english()], ack_url='/ack?x="><script>').html
    assert b"<script" not in quoted
    assert b'href="/ack?x=&quot;&gt;&lt;script&gt;"' in quoted


def test_without_ack_url_there_is_no_acknowledgement(texts: tuple[BannerText, ...]) -> None:
    markup = render_banner(texts, ack_url=None).html
    assert b"I understand" not in markup and b"Je comprends" not in markup
    assert len(tree(markup).find_all("a")) == 4  # the policy links, twice each


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JAVASCRIPT:alert(1)",
        " https://intranet.example/",
        "java\tscript:alert(1)",
        "data:text/html,x",
        "ftp://intranet.example/",
        "//intranet.example/",
        "https:///path",
        "https://intra net.example/",
        "https://\\evil.example/",
    ],
)
def test_policy_link_must_be_http(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        render_banner([english(policy_url=url)], ack_url=None)


@pytest.mark.parametrize("url", ["javascript:void(0)", "//evil.example/", "/\\evil", "ack", ""])
def test_ack_link_must_be_http_or_an_absolute_path(url: str) -> None:
    with pytest.raises(ValueError, match="acknowledgement"):
        render_banner([english()], ack_url=url)


@pytest.mark.parametrize("url", ["/.well-known/auditproxy/ack?t=1", "http://proxy:8080/ack"])
def test_ack_link_accepts_paths_and_http(url: str) -> None:
    assert url.encode() in render_banner([english()], ack_url=url).html


def test_non_ascii_url_becomes_references() -> None:
    markup = render_banner(
        [english(policy_url="https://intranet.example/politique-r\u00e9seaux")], ack_url=None
    ).html
    assert b'href="https://intranet.example/politique-r&#233;seaux"' in markup


def test_rtl_language_gets_rtl_direction() -> None:
    arabic = english(lang="ar", heading="\u062a\u0630\u0643\u064a\u0631")
    markup = render_banner([english(), arabic], ack_url=None).html
    shadow, _ = copies(markup)
    columns = [e for e in shadow.iter() if e.tag == "div" and "lang" in e.attrs]
    directions = {e.attrs["lang"]: e.attrs["dir"] for e in columns}
    assert directions == {"en": "ltr", "ar": "rtl"}


def test_no_texts_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one language"):
        render_banner([], ack_url=None)


# --- folding and never blocking ------------------------------------------------------------


def test_folds_without_script_by_a_closed_details_per_language(notice: Banner) -> None:
    for markup in variants(notice).values():
        for copy in copies(markup):
            details = copy.find_all("details")
            assert len(details) == 2 and not any("open" in d.attrs for d in details)
            for d in details:
                summary = d.children[0]
                assert isinstance(summary, Element) and summary.tag == "summary"
                assert not summary.find_all("a")  # nothing interactive inside the toggle


def test_in_flow_never_an_overlay(notice: Banner) -> None:
    css = banner_module.STYLE + notice.html.decode()
    for forbidden in ("position:fixed", "position:absolute", "position:sticky", "100vh", "inset"):
        assert forbidden not in css
    assert "display:block!important" in banner_module.STYLE.split("}")[0]  # the host


def test_no_motion_at_all(notice: Banner) -> None:
    for markup in variants(notice).values():
        for motion in (b"animation", b"transition", b"@keyframes", b"scroll-behavior"):
            assert motion not in markup


def test_contrast_meets_wcag_aa() -> None:
    def luminance(colour: str) -> float:
        channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
        linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    def ratio(a: str, b: str) -> float:
        high, low = sorted((luminance(a), luminance(b)), reverse=True)
        return (high + 0.05) / (low + 0.05)

    # AA: 4.5:1 for text, 3:1 for UI parts; the figures are the ones banner.py states.
    m = banner_module
    assert round(ratio(m._TEXT, m._BACKGROUND), 1) == 15.6
    assert round(ratio(m._LINK, m._BACKGROUND), 1) == 7.6
    assert round(ratio(m._ACCENT, m._BACKGROUND), 1) == 11.0
    assert round(ratio(m._DARK_TEXT, m._DARK_BACKGROUND), 1) == 13.6
    assert round(ratio(m._DARK_LINK, m._DARK_BACKGROUND), 1) == 8.9
    assert round(ratio(m._DARK_ACCENT, m._DARK_BACKGROUND), 1) == 7.0
    for fg, bg in ((m._TEXT, m._BACKGROUND), (m._DARK_TEXT, m._DARK_BACKGROUND)):
        assert ratio(fg, bg) >= 4.5  # AA text; the focus ring is the text colour
    assert "prefers-color-scheme:dark" in m.STYLE and "forced-colors:active" in m.STYLE


# --- style isolation ----------------------------------------------------------------------


def test_one_style_element_inside_the_shadow_root_and_its_hash(notice: Banner) -> None:
    styles = re.findall(rb"<style>(.*?)</style>", notice.html, re.S)
    assert len(styles) == 1
    digest = base64.b64encode(hashlib.sha256(styles[0]).digest()).decode()
    assert notice.style_hash == f"'sha256-{digest}'"
    template = re.search(rb'<template shadowrootmode="closed">(.*?)</template>', notice.html, re.S)
    assert template is not None and b"<style>" in template.group(1)


def test_light_copy_is_never_slotted(notice: Banner) -> None:
    assert b"<slot" not in notice.html  # unslotted: not rendered, not read, under DSD


def test_both_copies_say_the_same_but_i_understand(notice: Banner) -> None:
    shadow, light = copies(notice.html)
    assert shadow.text().replace("I understand", "").replace("Je comprends", "") == light.text()


def test_every_light_element_is_pinned(notice: Banner) -> None:
    outer = host(notice.html)
    assert outer.attrs["style"].startswith("all:initial!important;display:block!important")
    _, light = copies(notice.html)
    for element in light.iter():
        style = element.attrs.get("style") or ""
        assert style.startswith("all:revert!important;"), element.tag
        declarations = [d for d in style.split(";") if d]
        assert all(d.endswith("!important") for d in declarations), style


def test_host_is_pinned_from_inside_too(notice: Banner) -> None:
    """`:host` !important rules beat the page's, even if style="" is blocked by a CSP."""
    host_rule = re.match(r":host\{([^}]*)\}", banner_module.STYLE)
    assert host_rule is not None
    assert all(d.endswith("!important") for d in host_rule.group(1).split(";"))


def test_variants_for_what_a_csp_allows(notice: Banner) -> None:
    without_attributes = notice.markup(style_attributes=False)
    assert b"<style>" in without_attributes and b" style=" not in without_attributes
    unstyled = notice.markup(style_element=False, style_attributes=True)
    assert b"<style" not in unstyled and b" style=" not in unstyled
    assert b'<template shadowrootmode="closed"><div class="b">' in unstyled
    for markup in (without_attributes, unstyled):
        shadow, light = copies(markup)
        assert shadow.text().replace("I understand", "").replace("Je comprends", "") == (
            light.text()
        )


def test_small(notice: Banner) -> None:
    assert len(notice.html) < 8 * 1024
    assert len(notice.markup(style_element=False)) < 4 * 1024


# --- cheap ----------------------------------------------------------------------------------


def test_rendering_reuses_the_template(texts: tuple[BannerText, ...]) -> None:
    banner_template.cache_clear()
    first = render_banner(texts, ack_url="/ack?n=1", record_url="/r")
    second = render_banner(list(texts), ack_url="/ack?n=2", record_url="https://x.test/r")
    assert first.template is second.template
    assert banner_template.cache_info().hits >= 1
    assert (
        first.html.replace(b"/ack?n=1", b"/ack?n=2").replace(b'"/r"', b'"https://x.test/r"')
        == second.html
    )


def test_policy_link_is_checked_once_per_template(texts: tuple[BannerText, ...]) -> None:
    banner_template.cache_clear()
    render_banner(texts, ack_url=None)
    with pytest.raises(ValueError):
        render_banner([english(policy_url="ftp://x/")], ack_url=None)
