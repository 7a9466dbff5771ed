"""The confirmation pages of "I understand" (`notice.confirmation`)."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import re

import pytest

from auditproxy.notice import confirmation
from auditproxy.notice.confirmation import CONFIRM, READ
from auditproxy.policy.load import load_policy
from auditproxy.policy.model import Policy
from support.notice import confirmation_link
from support.paths import EXAMPLE_POLICY

ACTION = "/.well-known/auditproxy/acknowledge"
FIELDS = [("r", "http://a.test/"), ("d", "1"), ("s", "all"), ("t", "ab"), ("n", "1"), ("c", "cd")]
SENT = f"{ACTION}?r=http%3A%2F%2Fa.test%2F&d=1&s=all&t=ab&n=1&c=cd"
BACK = "http://a.test/x?y=1&z=2"


@pytest.fixture(scope="module")
def example() -> Policy:
    return load_policy(EXAMPLE_POLICY)


def render(policy: Policy, step: int = READ, place: int = 0, **changes: object) -> bytes:
    texts = policy.notice.ordered_texts()
    code = "472" if step == CONFIRM else ""
    args = {"action": ACTION, "fields": FIELDS, "back_url": BACK, "code": code, **changes}
    return confirmation.render(texts, place=place, step=step, **args)  # type: ignore[arg-type]


def words_of(page: bytes) -> str:
    return html.unescape(re.sub(r"<[^>]+>", " ", page.decode("ascii")))


def buttons(page: bytes) -> list[str]:
    return [html.unescape(b) for b in re.findall(r"<button [^>]*>([^<]*)</button>", page.decode())]


def hrefs(page: bytes) -> list[str]:
    return [html.unescape(h) for h in re.findall(r'href="([^"]*)"', page.decode("ascii"))]


def test_first_the_notice_in_full_in_the_policys_order_and_i_have_read_it(example):
    texts = example.notice.ordered_texts()
    page = render(example, READ)
    assert page.isascii()
    words = words_of(page)
    positions = []
    for text in texts:
        for part in (text.heading, text.disclaimer, text.monitoring):
            assert part in words
        positions.append(page.index(f'<section lang="{text.lang}">'.encode()))
    assert positions == sorted(positions)  # English, then French, as the policy says
    # Each language's form sends the same: one answer for all. Not yet "I understand".
    assert page.count(b"<form ") == len(texts) and confirmation_link(page) == SENT
    assert buttons(page) == ["I have read this reminder", "J'ai lu ce rappel"]
    assert hrefs(page).count(BACK) == len(texts)  # and a way back that acknowledges nothing
    assert "Revenir \u00e0 la page sans r\u00e9pondre" in words


def test_then_i_understand_in_the_policys_words_with_a_number_to_type(example):
    texts = example.notice.ordered_texts()
    page = render(example, CONFIRM)
    words = words_of(page)
    assert buttons(page) == [t.acknowledge for t in texts]  # "I understand", "Je comprends"
    for text in texts:
        assert text.monitoring in words and text.disclaimer not in words
    assert (
        "To record that you have read the reminder, type the number below and press "
        "\u201cI understand\u201d." in " ".join(words.split())
    )
    assert "tapez le nombre ci-dessous" in " ".join(words.split())
    # The number is no text of the page (no selection holds it): drawn from an attribute,
    # read out as one image.
    assert "472" not in words
    drawn = b'<strong class="code" role="img" aria-label="4 7 2" data-n="472"></strong>'
    assert page.count(drawn) == len(texts)
    assert ".code::before{content:attr(data-n)}" in confirmation.STYLE
    # Each language's field, labelled, digits only, as long as the number; not prefilled.
    fields = re.findall(rb'<label class="code-field">[^<]*<input ([^>]*)></label>', page)
    assert len(fields) == len(texts)
    for field in fields:
        for part in (b'name="k"', b'inputmode="numeric"', b'pattern="[0-9]{3}"', b"required"):
            assert part in field
        assert b"value=" not in field
    assert confirmation_link(page) == f"{SENT}&k=472" and hrefs(page).count(BACK) == len(texts)
    assert "not the number" not in words
    again = words_of(render(example, CONFIRM, again=True))
    assert "That was not the number shown. Here is a new one." in again


@pytest.mark.parametrize("step", [READ, CONFIRM])
def test_only_its_own_script_runs_nothing_outside_is_loaded_nothing_to_fill_in(example, step):
    page = render(example, step)
    (script,) = re.findall(rb"<script>(.*?)</script>", page, re.S)
    assert script == confirmation.SCRIPT.encode()
    page = page.replace(script, b"").lower()
    for forbidden in (b"<iframe", b"javascript:", b"<img", b"<link", b"autofocus", b" src="):
        assert forbidden not in page
    assert not re.search(rb"<[^>]*\son[a-z]+=", page)
    assert not re.search(rb"\sid=", page)  # no fragment can point into it
    inputs = re.findall(rb"<input [^>]*>", page)
    typed = [i for i in inputs if b'type="hidden"' not in i]  # the number, on "I understand"
    assert len(typed) == (2 if step == CONFIRM else 0)
    assert re.findall(rb'<form [^>]*action="([^"]*)"', page) == [ACTION.encode()] * 2


def test_its_headers_sandbox_it_and_keep_fragments_out():
    headers = confirmation.headers(BACK)
    csp = headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    # Forms and its own script, nothing else the sandbox holds back: no popups, same
    # origin never (an opaque origin: no page of the site can read this one).
    (sandbox,) = [d.split()[1:] for d in csp.split("; ") if d.startswith("sandbox")]
    assert {"allow-forms", "allow-scripts"} <= set(sandbox)
    assert not {"allow-same-origin", "allow-popups", "allow-modals"} & set(sandbox)
    digest = base64.b64encode(hashlib.sha256(confirmation.SCRIPT.encode()).digest()).decode()
    assert f"; script-src 'sha256-{digest}'; " in csp  # that script and no other
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"  # no opener to cover it
    # A text fragment (#:~:text=) neither scrolls it nor moves where Tab starts.
    assert headers["Document-Policy"] == "force-load-at-top"


@pytest.mark.parametrize(
    ("back", "targets"),
    [
        ("/groups/1?x=2", "'self'"),
        ("http://a.test:8080/x", "'self' http://a.test:8080"),
        ("http://[2001:db8::1]/x", "'self' http://[2001:db8::1]"),
    ],
)
def test_the_form_may_go_only_here_and_on_to_the_page_it_came_from(back, targets):
    """Chromium checks the acknowledgement's redirect against `form-action` too: a
    plain-http page's return is another origin than this https page."""
    csp = confirmation.headers(back)["Content-Security-Policy"]
    assert f"; form-action {targets}; " in csp


@pytest.mark.parametrize("step", [READ, CONFIRM])
def test_its_style_is_allowed_by_its_own_policy(example, step):
    """The page's one <style> matches the hash its Content-Security-Policy allows."""
    page = render(example, step).decode("ascii")
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in confirmation.headers(BACK)["Content-Security-Policy"]


@pytest.mark.parametrize("step", [READ, CONFIRM])
def test_markup_in_the_policys_wording_or_the_fields_is_text(example, step):
    (first, *rest) = example.notice.ordered_texts()
    hostile = dataclasses.replace(
        first, heading='<img src=x onerror="alert(1)">', acknowledge="<script>x</script>"
    )
    fields = [*FIELDS[:-1], ("c", '"><script>')]
    page = confirmation.render([hostile, *rest], ACTION, fields, BACK, step=step, code="1")
    assert b"<img" not in page and page.count(b"<script") == 1  # its own
    assert "&c=%22%3E%3Cscript%3E" in confirmation_link(page)


@pytest.mark.parametrize("step", [READ, CONFIRM])
def test_where_the_button_appears_varies_and_stays_styled(example, step):
    """A site cannot lay a decoy where the button will be: each page moves it down from
    the text by one of `GAPS` steps, the same in every language, each step allowed by the
    page's CSP."""
    pages = {place: render(example, step, place) for place in range(confirmation.GAPS)}
    assert len(set(pages.values())) == confirmation.GAPS
    assert b"<div class=" not in pages[0]
    (style,) = re.findall(r"<style>(.*?)</style>", pages[0].decode("ascii"), re.S)
    for place, page in pages.items():
        for section in page.decode("ascii").split("<section ")[1:]:
            found = [(m.start(), int(m[1])) for m in re.finditer(r'<div class="g(\d)">', section)]
            assert [n for _, n in found] == ([place] if place else [])
            assert all(at < section.index("<button") for at, _ in found)
        if place:
            assert f".g{place}{{height:{3 * place}rem}}" in style
