"""The daily notice as a person sees it: Debian's headless Chromium through `auditproxy run`.

Each test starts its own proxy (towards the `upstream` test internet) and opens its pages
in a fresh browser context of one Chromium, which trusts the proxies' CA through an NSS
database as a managed desktop does (see support/browser.py); every proxy here shares one
confdir, so one CA. Pages are served over https:// (decrypted: monitored sites) and
http://. The small test policy gains one monitored site on a reserved name, forum.test,
because Chromium preloads HSTS for facebook.com: an http:// URL there becomes https://.

In a browser with Declarative Shadow DOM the notice's content lives twice in the DOM: in
the host's shadow root (rendered, read) and as a light-DOM fallback (neither rendered nor
in the accessibility tree). Playwright's CSS locators pierce open shadow roots and so find
both; `shown()` keeps the visible copy, and a count of 1 proves the fallback stays hidden.
"""

from __future__ import annotations

import os
import struct
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from auditproxy.notice.banner import STYLE_HASH
from support import Reply, Upstream
from support.browser import VIEWPORT, ProxiedChromium, make_proxy_ca, unavailable
from support.paths import EXAMPLE_POLICY, REPO
from support.proxy import AuditProxyProcess

_MISSING = unavailable()
if _MISSING is None:
    from playwright.sync_api import Error as BrowserError
    from playwright.sync_api import Locator, Page, expect

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.browser,
    pytest.mark.timeout(120),
    pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING)),
]

NOTICE = "#auditproxy-notice"
ACK_PATH = "/.well-known/auditproxy/acknowledge"
REGION_NAME = "Reminder / Rappel"
ENGLISH = "Views are your own."  # the small test policy's texts
FRENCH = "Les opinions sont les vôtres."
BACKGROUND = "rgb(253, 243, 215)"  # the notice's #fdf3d7: proof that its styles applied
SCREENSHOT = REPO / "docs" / "images" / "notice.png"
UPDATE_SCREENSHOTS = "AUDITPROXY_UPDATE_SCREENSHOTS"

# Collects Content-Security-Policy violations from the first script of every document.
# Playwright's init scripts run outside the page's CSP; the event is composed, so one from
# the notice's shadow root reaches the window too.
VIOLATIONS = """
window.__violations = [];
window.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(event.effectiveDirective + " " + event.blockedURI);
}, true);
"""


# ---------------------------------------------------------------------------------------
# Fixtures and helpers


@pytest.fixture
def policy(e2e_policy: Path) -> Path:
    """The small test policy plus social/forum [forum.test], which HSTS never upgrades."""
    text = e2e_policy.read_text()
    line = "      x: [x.com, twitter.com]\n"
    assert line in text
    e2e_policy.write_text(text.replace(line, line + "      forum: [forum.test]\n"))
    return e2e_policy


@pytest.fixture(scope="module")
def proxy_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitmproxy's CA in a confdir that every proxy of this module shares: one browser
    trusting it serves every test (a launch costs a second; a context, milliseconds)."""
    return make_proxy_ca(tmp_path_factory.mktemp("proxy-confdir"))


@pytest.fixture(scope="module")
def chromium(proxy_ca: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxiedChromium]:
    with ProxiedChromium(tmp_path_factory.mktemp("chromium"), proxy_ca) as browser:
        yield browser


@pytest.fixture
def proxy_for(start_proxy, proxy_ca: Path) -> Callable[[Path], AuditProxyProcess]:
    """Start `auditproxy run` with a policy and the shared CA."""

    def start(policy: Path) -> AuditProxyProcess:
        return start_proxy("--confdir", str(proxy_ca.parent), policy=policy)

    return start


@pytest.fixture
def open_page(chromium: ProxiedChromium) -> Iterator[Callable[..., Page]]:
    """A page in a fresh browser context going through a proxy; closed after the test."""
    pages: list[Page] = []

    def open_(proxy: AuditProxyProcess, **options: object) -> Page:
        pages.append(chromium.new_page(proxy.port, **options))
        return pages[-1]

    yield open_
    for page in pages:
        page.context.close()


@dataclass
class Session:
    proxy: AuditProxyProcess
    page: Page


@pytest.fixture
def session(proxy_for, policy: Path, open_page) -> Session:
    """The usual set-up: the test policy, one proxy, one page."""
    proxy = proxy_for(policy)
    return Session(proxy, open_page(proxy))


def html_page(title: str, body: str, *, head: str = "") -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>{head}</head><body>{body}</body></html>"
    )


def notice(page: Page) -> Locator:
    return page.locator(NOTICE)


def shown(page: Page, selector: str) -> Locator:
    """The rendered copy of an element of the notice (the shadow root's)."""
    return page.locator(f"{NOTICE} {selector}").filter(visible=True)


def shown_text(page: Page, text: str) -> Locator:
    return page.get_by_text(text, exact=True).filter(visible=True)


def assert_notice_shown(page: Page) -> None:
    """The notice is on screen, with a real box, in English and French, exactly once."""
    host = notice(page)
    expect(host).to_be_visible()
    box = host.bounding_box()
    assert box is not None and box["width"] > 0 and box["height"] > 0
    expect(shown_text(page, ENGLISH)).to_have_count(1)
    expect(shown_text(page, FRENCH)).to_have_count(1)
    expect(shown(page, "h2")).to_have_text(["Reminder", "Rappel"])


def assert_no_notice(page: Page) -> None:
    """Called once the page has loaded: the notice is not in its DOM at all."""
    assert notice(page).count() == 0, f"{page.url} carries the notice"


def metric_total(proxy: AuditProxyProcess, name: str) -> float:
    """The sum of a metric's samples over all label values."""
    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(proxy.metrics_url(), timeout=5) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def shown_records(proxy: AuditProxyProcess) -> list[str]:
    return [r["url.domain"] for r in proxy.records() if r["event.action"] == "notice-shown"]


def csp_directives(policy: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in policy.split(";"):
        words = part.split()
        if words:
            directives.setdefault(words[0].lower(), words[1:])
    return directives


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG whose every chunk is intact; AssertionError otherwise."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, kinds, size = 8, [], (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r}"
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        kinds.append(kind)
        pos += 12 + length
    assert kinds[0] == b"IHDR" and b"IDAT" in kinds and kinds[-1] == b"IEND"
    return size


# Realistic pages --------------------------------------------------------------------------

FEED = html_page(
    "Home feed",
    '<header><a href="/">Home</a> <a href="/groups/staff">Groups</a></header>'
    '<main><h1 id="title">Home feed</h1>'
    "<article><h2>Ada</h2><p>The new bike lanes open on Monday.</p></article>"
    "<article><h2>Blaise</h2><p>Lunch-and-learn slides are up.</p></article></main>",
)


def embedding(src: str, title: str) -> str:
    return html_page(
        title,
        f'<h1 id="title">{title}</h1><p>A shared post:</p>'
        f'<iframe src="{src}" title="Shared post" width="500" height="200"></iframe>',
    )


EMBED = html_page("Post", '<p id="embedded">An embedded post.</p>')


# ---------------------------------------------------------------------------------------
# 1. Once a day per site, on top-level pages of monitored sites


@pytest.mark.clock
def test_notice_on_the_first_page_of_each_monitored_site_only(session, upstream: Upstream):
    page, proxy = session.page, session.proxy
    upstream.route("www.facebook.com", "/", Reply.html(FEED))
    cached = Reply.html(FEED, headers={"Cache-Control": "max-age=60"})
    upstream.route("www.facebook.com", "/groups/", cached, prefix=True)

    first = page.goto("https://www.facebook.com/")
    assert first is not None and first.status == 200
    assert_notice_shown(page)
    assert first.headers["cache-control"] == "no-store"  # the changed page is never cached
    expect(page.locator("#title")).to_have_text("Home feed")

    second = page.goto("https://www.facebook.com/groups/staff")
    assert second is not None and second.status == 200
    expect(page.locator("#title")).to_be_visible()
    assert_no_notice(page)
    assert second.headers["cache-control"] == "max-age=60"  # untouched
    page.goto("https://m.facebook.com/")  # another host of the same site
    assert_no_notice(page)

    page.goto("http://forum.test/threads?page=2")  # another monitored site, plain HTTP
    assert page.url == "http://forum.test/threads?page=2"
    assert_notice_shown(page)
    page.goto("http://forum.test/threads?page=3")
    assert_no_notice(page)

    for url in ("http://news.test/", "https://news.test/today"):  # unclassified: log
        page.goto(url)
        assert_no_notice(page)

    assert shown_records(proxy) == ["www.facebook.com", "forum.test"]
    for site in ("facebook", "forum"):
        labels = dict(category="social", site=site, event="shown")
        assert proxy.metric("auditproxy_notices_total", **labels) == 1
    assert metric_total(proxy, "auditproxy_notice_skipped_total") == 0  # favicons are no pages


@pytest.mark.clock
def test_a_page_that_cannot_carry_the_notice_leaves_it_for_the_next(session, upstream):
    """A redirect page (meta refresh) is skipped and counted; the page it leads to gets it."""
    page, proxy = session.page, session.proxy
    refresh = '<meta http-equiv="refresh" content="0; url=/home">'
    upstream.route("x.com", "/", Reply.html(html_page("Redirecting", "<p>...</p>", head=refresh)))
    upstream.route("x.com", "/home", Reply.html(FEED))
    page.goto("https://x.com/")
    page.wait_for_url("https://x.com/home")
    assert_notice_shown(page)
    assert proxy.metric("auditproxy_notice_skipped_total", reason="refresh") == 1
    assert proxy.metric("auditproxy_notices_total", site="x", event="shown") == 1


def test_without_the_proxy_ca_https_pages_are_refused(
    proxy_for, policy, chromium, upstream, tmp_path
):
    """The browser checks certificates for real: nothing here ignores certificate errors."""
    proxy = proxy_for(policy)
    with ProxiedChromium(tmp_path, None, playwright=chromium.playwright) as untrusting:
        page = untrusting.new_page(proxy.port)
        with pytest.raises(BrowserError, match="ERR_CERT_AUTHORITY_INVALID"):
            page.goto("https://www.facebook.com/")
        plain = untrusting.new_page(proxy.port)  # the same browser and proxy: HTTP works
        plain.goto("http://forum.test/")
        assert_notice_shown(plain)
    assert not [r for r in upstream.requests if r.host == "www.facebook.com"]


# ---------------------------------------------------------------------------------------
# 2. A strict Content-Security-Policy: never weakened, the page's script runs, no violation

NONCE = "cmFuZG9tLW5vbmNl"
STRICT_CSP = f"default-src 'none'; script-src 'nonce-{NONCE}'; style-src 'nonce-{NONCE}'"


def csp_page(head: str = "") -> str:
    return html_page(
        "Settings",
        '<main><h1 id="status">Loading</h1><ul id="list"></ul></main>'
        f'<script nonce="{NONCE}">'
        'document.getElementById("status").textContent = "Script ran";'
        'for (const name of ["Privacy", "Notifications"]) {'
        '  const item = document.createElement("li"); item.textContent = name;'
        '  document.getElementById("list").append(item); }'
        "</script>",
        head=f'{head}<style nonce="{NONCE}">#status {{ color: rgb(0, 85, 0) }}</style>',
    )


@pytest.mark.parametrize("where", ["header", "meta"])
def test_strict_csp_page_runs_its_script_and_shows_the_styled_notice(session, upstream, where):
    page, proxy = session.page, session.proxy
    if where == "header":
        reply = Reply.html(csp_page(), headers={"Content-Security-Policy": STRICT_CSP})
    else:
        meta = f'<meta http-equiv="Content-Security-Policy" content="{STRICT_CSP}">'
        reply = Reply.html(csp_page(meta))
    upstream.route("www.facebook.com", "/settings", reply)
    page.add_init_script(VIOLATIONS)
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))

    response = page.goto("https://www.facebook.com/settings")
    assert response is not None
    expect(page.locator("#status")).to_have_text("Script ran")  # the nonce'd script ran
    expect(page.locator("#list li")).to_have_text(["Privacy", "Notifications"])
    expect(page.locator("#status")).to_have_css("color", "rgb(0, 85, 0)")  # its style too
    assert_notice_shown(page)
    expect(shown(page, "details")).to_have_css("background-color", BACKGROUND)

    # The policy the browser enforced: every original directive and source, plus our hash.
    if where == "header":
        enforced = response.headers["content-security-policy"]
    else:
        enforced = page.locator("meta[http-equiv]").get_attribute("content") or ""
    original, now = csp_directives(STRICT_CSP), csp_directives(enforced)
    assert set(now) == set(original)
    assert {name: now[name][: len(sources)] for name, sources in original.items()} == original
    added = {name: now[name][len(sources) :] for name, sources in original.items()}
    assert added == {"default-src": [], "script-src": [], "style-src": [STYLE_HASH]}

    assert page.evaluate("window.__violations") == []
    assert not [m for m in console if "Refused to" in m]
    assert proxy.metric("auditproxy_notices_unstyled_total", category="social") == 0
    # The listener works: an inline style attribute is a violation of this very policy.
    page.evaluate("document.getElementById('status').setAttribute('style', 'color: red')")
    page.wait_for_function("window.__violations.length > 0")


def test_unreadable_meta_csp_gets_the_unstyled_notice_and_no_violation(session, upstream):
    """A meta policy whose value the proxy cannot read for sure (a bare "&") is left as it
    is; the notice goes in without any style, so it cannot violate the policy."""
    page, proxy = session.page, session.proxy
    policy = "default-src 'self'; img-src 'self' https://img.forum.test/a?size=s&fmt=webp"
    meta = f'<meta http-equiv="Content-Security-Policy" content="{policy}">'
    upstream.route("forum.test", "/", Reply.html(html_page("Forum", FEED, head=meta)))
    page.add_init_script(VIOLATIONS)

    page.goto("http://forum.test/")
    assert_notice_shown(page)
    expect(shown(page, "details")).not_to_have_css("background-color", BACKGROUND)
    assert page.locator("meta[http-equiv]").get_attribute("content") == policy
    assert page.evaluate("window.__violations") == []
    assert proxy.metric("auditproxy_notices_unstyled_total", category="social") == 1
    shown(page, "summary").click()  # still dismissable
    expect(shown_text(page, ENGLISH)).to_have_count(0)


# ---------------------------------------------------------------------------------------
# 3. Frames never get it, and do not use up the day's notice


def test_iframes_never_get_the_notice(session, upstream):
    page, proxy = session.page, session.proxy
    upstream.route("www.facebook.com", "/", Reply.html(embedding("https://x.com/embed/1", "Feed")))
    upstream.route(
        "www.facebook.com", "/events", Reply.html(embedding("https://x.com/embed/1", "Ev"))
    )
    upstream.route("news.test", "/", Reply.html(embedding("https://twitter.com/embed/2", "News")))
    upstream.route("*", "/embed/", Reply.html(EMBED), prefix=True)

    def frame_loaded_without_notice() -> None:
        frame = page.frame_locator("iframe")
        expect(frame.locator("#embedded")).to_be_visible()
        assert frame.locator(NOTICE).count() == 0, "the iframe carries the notice"

    page.goto("https://www.facebook.com/")  # first visit, embedding a first visit to x
    assert_notice_shown(page)
    frame_loaded_without_notice()
    page.goto("https://www.facebook.com/events")  # seen today, still embedding x
    assert_no_notice(page)
    frame_loaded_without_notice()
    page.goto("https://news.test/")  # a log site embedding x
    assert_no_notice(page)
    frame_loaded_without_notice()
    embeds = [r for r in upstream.requests if r.path.startswith("/embed/")]
    assert [r.headers.get("sec-fetch-dest") for r in embeds] == ["iframe"] * 3

    page.goto("https://x.com/")  # the frames did not use up x's notice
    assert_notice_shown(page)
    assert shown_records(proxy) == ["www.facebook.com", "x.com"]
    assert metric_total(proxy, "auditproxy_notice_skipped_total") == 0


def test_plain_http_iframe_gets_no_notice(session, upstream):
    page = session.page
    upstream.route("news.test", "/", Reply.html(embedding("http://forum.test/embed/3", "News")))
    upstream.route("forum.test", "/embed/3", Reply.html(EMBED))
    page.goto("http://news.test/")
    frame = page.frame_locator("iframe")
    expect(frame.locator("#embedded")).to_be_visible()
    assert frame.locator(NOTICE).count() == 0


# ---------------------------------------------------------------------------------------
# 4. The acknowledgement link


@pytest.mark.parametrize(
    ("url", "link", "site"),
    [
        ("https://www.facebook.com/groups/staff?view=posts&sort=new", "I understand", "facebook"),
        ("http://forum.test/threads/42?page=2#reply", "Je comprends", "forum"),
    ],
)
@pytest.mark.clock
def test_acknowledgement_link_returns_to_the_same_page(session, upstream, url, link, site):
    page, proxy = session.page, session.proxy
    upstream.route("*", "/", Reply.html(FEED), prefix=True)
    redirects: list[tuple[str, str | None]] = []

    def note_redirect(response) -> None:
        if response.status == 303:
            redirects.append((response.url, response.headers.get("location")))

    page.on("response", note_redirect)

    page.goto(url)
    assert_notice_shown(page)
    ack = page.get_by_role("link", name=link, exact=True)
    assert (ack.get_attribute("href") or "").startswith(f"{ACK_PATH}?")
    ack.click()
    page.wait_for_url(url.partition("#")[0])

    path = url.partition("://")[2].partition("/")[2].partition("#")[0]
    ((ack_url, location),) = redirects
    assert ACK_PATH in ack_url and location == f"/{path}"  # back to the page's own path
    expect(page.locator("#title")).to_have_text("Home feed")
    assert_no_notice(page)  # seen today
    (record,) = proxy.wait_for_records(1, lambda r: r["event.action"] == "notice-acknowledged")
    assert record["url.domain"] == url.split("/")[2] and record["labels.site"] == site
    labels = dict(category="social", site=site, event="acknowledged")
    assert proxy.metric("auditproxy_notices_total", **labels) == 1
    assert not [r for r in upstream.requests if r.path.startswith(ACK_PATH)]  # never sent on
    assert [r.path for r in upstream.requests if r.path == f"/{path}"] == [f"/{path}"] * 2


def test_refused_acknowledgement_link_leaves_an_access_record(session, upstream):
    page, proxy = session.page, session.proxy
    forged = f"https://www.facebook.com{ACK_PATH}?r=%2F&d=1&s=site%3Afacebook&t=00"
    response = page.goto(forged)
    assert response is not None and response.status == 403
    expect(page.get_by_text("This link is not valid")).to_be_visible()
    page.goto("https://news.test/later")  # records go out in order: wait for this one's
    proxy.wait_for_records(1, lambda r: r.get("url.path") == "/later")
    assert [r for r in proxy.records() if r.get("url.path") == ACK_PATH]


# ---------------------------------------------------------------------------------------
# 5. Folds without script; reachable with the keyboard


def test_notice_folds_and_is_keyboard_reachable_without_any_script(
    proxy_for, policy, open_page, upstream
):
    proxy = proxy_for(policy)
    page = open_page(proxy, java_script_enabled=False)
    upstream.route("www.facebook.com", "/", Reply.html(FEED))
    page.goto("https://www.facebook.com/")
    assert_notice_shown(page)
    summary = shown(page, "summary")
    expect(summary).to_have_text("Hide / Masquer", use_inner_text=True)  # open, styled

    # Tab goes through the summary and every link of the notice, then on to the page.
    focused = page.locator(f"{NOTICE} :focus")
    for name in ("Hide / Masquer", "Read it", "I understand", "Lire", "Je comprends"):
        page.keyboard.press("Tab")
        expect(focused).to_have_text(name, use_inner_text=True)
    page.keyboard.press("Tab")
    expect(focused).to_have_count(0)
    expect(page.get_by_role("link", name="Home")).to_be_focused()

    # Enter on the summary folds the notice to one line; the page moves up.
    for _ in range(5):
        page.keyboard.press("Shift+Tab")
    expect(focused).to_have_text("Hide / Masquer", use_inner_text=True)
    title_before = page.locator("#title").bounding_box()
    page.keyboard.press("Enter")
    expect(shown_text(page, ENGLISH)).to_have_count(0)
    expect(shown(page, "h2")).to_have_count(0)
    expect(summary).to_have_text(REGION_NAME, use_inner_text=True)  # collapsed: one line
    title_after = page.locator("#title").bounding_box()
    assert title_before is not None and title_after is not None
    assert title_after["y"] < title_before["y"]

    # A click opens and folds it the same way; the page stays usable.
    summary.click()
    expect(shown_text(page, ENGLISH)).to_have_count(1)
    summary.click()
    expect(shown_text(page, ENGLISH)).to_have_count(0)
    page.get_by_role("link", name="Groups").click()
    page.wait_for_url("https://www.facebook.com/groups/staff")


# ---------------------------------------------------------------------------------------
# 6. Accessibility: a named landmark, each language marked


def test_notice_is_a_named_landmark_with_each_language_marked(session, upstream):
    page = session.page
    upstream.route("www.facebook.com", "/", Reply.html(FEED))
    page.goto("https://www.facebook.com/")
    region = page.get_by_role("region", name=REGION_NAME, exact=True)
    expect(region).to_be_visible()
    expect(region).to_have_attribute("id", "auditproxy-notice")
    expect(region).to_have_attribute("lang", "en")
    expect(shown(page, "div[lang]")).to_have_count(2)
    assert [c.get_attribute("lang") for c in shown(page, "div[lang]").all()] == ["en", "fr"]
    expect(shown(page, "div[lang=fr]")).to_contain_text(FRENCH)

    # Chromium's own accessibility tree, what a screen reader is given: one region, and
    # each heading and link once (the light-DOM fallback copy is not read a second time).
    cdp = page.context.new_cdp_session(page)
    nodes = [n for n in cdp.send("Accessibility.getFullAXTree")["nodes"] if not n["ignored"]]

    def named(role: str) -> list[str]:
        return [n["name"]["value"] for n in nodes if n.get("role", {}).get("value") == role]

    assert named("region") == [REGION_NAME]
    assert [h for h in named("heading") if h in ("Reminder", "Rappel")] == ["Reminder", "Rappel"]
    links = ["Read it", "I understand", "Lire", "Je comprends"]
    assert [name for name in named("link") if name in links] == links


# ---------------------------------------------------------------------------------------
# 7. The page itself: content, scripts and styles intact; the notice isolated from it

# Rules a site may well have, which would wreck the notice if they reached it.
HOSTILE_CSS = (
    "header { position: fixed; top: 0; left: 0; right: 0; height: 48px; z-index: 1000;"
    " background: rgb(30, 40, 60); color: white }"
    "main { padding-top: 56px }"
    "body div, details, summary, h2 { display: none !important }"
    "p { font-size: 40px !important; background: rgb(0, 128, 0) !important }"
    "a { color: rgb(255, 0, 255) !important }"
)
APP_SCRIPT = """
document.addEventListener("DOMContentLoaded", () => {
  const articles = document.querySelectorAll("article");
  document.getElementById("count").textContent = String(articles.length);
  document.getElementById("children").textContent = String(document.body.children.length);
  document.getElementById("greeting").textContent = document.querySelector("h1").textContent;
});
"""


def test_page_content_scripts_and_styles_stay_intact(session, upstream):
    page = session.page
    body = (
        "<header>Staff club</header><main><h1>Welcome back</h1>"
        '<div class="own">Own div</div>'
        "<article>One</article><article>Two</article><article>Three</article>"
        '<p>Articles: <output id="count"></output>, body elements: '
        '<output id="children"></output>, heading: <output id="greeting"></output></p>'
        '<label>Search <input id="q"></label></main>'
    )
    head = f"<style>{HOSTILE_CSS}</style><script>{APP_SCRIPT}</script>"
    upstream.route("x.com", "/", Reply.html(html_page("Staff club", body, head=head)))
    page.goto("https://x.com/")

    # The page: its scripts ran and read its own elements; its styles apply to it.
    expect(page.locator("#count")).to_have_text("3")
    expect(page.locator("#greeting")).to_have_text("Welcome back")
    expect(page.locator("#children")).to_have_text("3")  # header, main, and the notice
    expect(page.locator("header")).to_have_css("position", "fixed")
    expect(page.locator("div.own")).to_be_hidden()  # the page's own rules, on its own div
    expect(page.locator("main p")).to_have_css("font-size", "40px")  # and on its own p
    expect(page.locator("h1")).to_be_visible()
    page.locator("#q").fill("lunch")
    expect(page.locator("#q")).to_have_value("lunch")

    # The notice: the page's !important rules do not reach it, nor its fixed bar hide it.
    assert_notice_shown(page)
    expect(shown(page, "details")).to_have_css("background-color", BACKGROUND)
    expect(shown(page, "p").first).not_to_have_css("font-size", "40px")
    expect(shown(page, "a").first).not_to_have_css("color", "rgb(255, 0, 255)")
    box = notice(page).bounding_box()
    assert box is not None and box["y"] == 8  # the top of the body (its default margin)
    assert on_top(page, 640, box["y"] + 16) == "DIV#auditproxy-notice"
    shown(page, "summary").click()  # collapsed: while focused it stays visible (WCAG 2.4.11)
    assert on_top(page, 640, 10) == "DIV#auditproxy-notice"
    page.locator("h1").click()  # focus elsewhere: it covers nothing, the site's bar is on top
    assert on_top(page, 640, 10) == "HEADER#"


def on_top(page: Page, x: float, y: float) -> str:
    """The element drawn on top at (x, y), as TAG#id (shadow content shows as its host)."""
    return page.evaluate(
        "([x, y]) => { const e = document.elementFromPoint(x, y); return `${e.tagName}#${e.id}` }",
        [x, y],
    )


def test_focused_collapsed_summary_is_not_hidden_under_a_fixed_top_bar(session, upstream):
    page = session.page
    bar = (
        "<style>body { margin: 0 } header { position: fixed; top: 0; left: 0; right: 0;"
        " height: 56px; z-index: 10; background: rgb(30, 40, 60); color: white }"
        " main { padding-top: 64px }</style>"
    )
    body = '<header>Staff club</header><main><h1 id="title">Welcome back</h1></main>'
    upstream.route("x.com", "/", Reply.html(html_page("Staff club", body, head=bar)))
    page.goto("https://x.com/")
    assert_notice_shown(page)
    summary = shown(page, "summary")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")  # collapse it, with the keyboard; the focus stays on it
    expect(shown_text(page, ENGLISH)).to_have_count(0)
    expect(page.locator(f"{NOTICE} :focus")).to_have_text(REGION_NAME, use_inner_text=True)
    box = summary.bounding_box()
    assert box is not None
    assert on_top(page, box["x"] + box["width"] / 2, box["y"] + box["height"] / 2) == (
        "DIV#auditproxy-notice"
    )


# ---------------------------------------------------------------------------------------
# 8. The screenshot for the README

SAMPLE_CSS = """
* { box-sizing: border-box }
body { margin: 0; font: 15px/1.45 "Liberation Sans", Arial, sans-serif; color: #1c1e21;
  background: #eef0f3 }
.top { display: flex; align-items: center; gap: 24px; height: 56px; padding: 0 24px;
  background: #fff; border-bottom: 1px solid #d8dbe0 }
.logo { font-weight: 700; font-size: 22px; color: #2d5b9a }
.search { flex: 0 1 320px; padding: 8px 14px; border-radius: 18px; background: #eef0f3;
  color: #65676b }
.top nav { margin-left: auto; display: flex; gap: 20px; color: #4b4f56 }
.layout { display: grid; grid-template-columns: 220px 1fr 260px; gap: 20px;
  max-width: 1180px; margin: 20px auto; padding: 0 20px }
.side a { display: block; padding: 8px 10px; border-radius: 6px; color: #1c1e21;
  text-decoration: none }
.side a.on { background: #dfe6f1; font-weight: 700 }
.card { background: #fff; border-radius: 8px; padding: 14px 16px; margin-bottom: 14px;
  box-shadow: 0 1px 2px rgba(0, 0, 0, .12) }
.who { display: flex; align-items: center; gap: 10px; margin-bottom: 8px }
.avatar { width: 40px; height: 40px; border-radius: 50%; display: grid; place-items: center;
  color: #fff; font-weight: 700 }
.who small { display: block; color: #65676b }
.actions { display: flex; gap: 24px; border-top: 1px solid #e4e6eb; padding-top: 8px;
  color: #65676b; font-weight: 700 }
.card h3 { margin: 0 0 8px; font-size: 15px }
.card ul { margin: 0; padding-left: 18px }
"""


def post(initials: str, colour: str, name: str, when: str, text: str) -> str:
    return (
        f'<article class="card"><div class="who"><span class="avatar" '
        f'style="background:{colour}">{initials}</span><div><b>{name}</b>'
        f"<small>{when}</small></div></div><p>{text}</p>"
        '<div class="actions"><span>Like</span><span>Comment</span><span>Share</span></div>'
        "</article>"
    )


SAMPLE_PAGE = html_page(
    "Neighbourly",
    '<div class="top"><span class="logo">neighbourly</span>'
    '<span class="search">Search</span><nav><span>Home</span><span>Groups</span>'
    "<span>Events</span><span>Messages</span></nav></div>"
    '<div class="layout"><aside class="side"><a class="on" href="/">Feed</a>'
    '<a href="/groups">Groups</a><a href="/events">Events</a><a href="/saved">Saved</a></aside>'
    "<main>"
    + post(
        "MT",
        "#7a4fb5",
        "Maya Tremblay",
        "12 min",
        "Our running club meets at the canal at noon on Thursday. All paces welcome!",
    )
    + post(
        "JO",
        "#2f8f6b",
        "Jonah Okafor",
        "1 h",
        "Photos from Saturday's community garden "
        "clean-up are in the album. Thanks to everyone who came out.",
    )
    + post(
        "LC",
        "#c0582f",
        "Léa Côté",
        "3 h",
        "Does anyone have a recommendation for a bilingual book club downtown?",
    )
    + '</main><aside><div class="card"><h3>Upcoming events</h3><ul><li>Farmers\' market, '
    "Saturday</li><li>Charity 5 km, May 12</li><li>Open-air concert, June 2</li></ul></div>"
    "</aside></div>",
    head=f"<style>{SAMPLE_CSS}</style>",
)


def test_screenshot_of_the_notice_on_a_sample_page(proxy_for, open_page, upstream, tmp_path):
    """The README's picture: the example policy's notice on a social-media-like page.

    Written to docs/images/notice.png only with AUDITPROXY_UPDATE_SCREENSHOTS=1."""
    proxy = proxy_for(EXAMPLE_POLICY)
    page = open_page(proxy)
    upstream.route("www.facebook.com", "/", Reply.html(SAMPLE_PAGE))
    page.goto("https://www.facebook.com/")
    expect(notice(page)).to_be_visible()
    expect(page.get_by_role("region", name="Reminder / Rappel")).to_be_visible()
    expect(shown_text(page, "Read the policy")).to_be_visible()
    page.evaluate("document.fonts.ready.then(() => true)")

    target = SCREENSHOT if os.environ.get(UPDATE_SCREENSHOTS) == "1" else tmp_path / "notice.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    data = page.screenshot(path=str(target))
    assert target.read_bytes() == data
    assert png_size(data) == (VIEWPORT["width"], VIEWPORT["height"])
    box = notice(page).bounding_box()
    assert box is not None and box["x"] >= 0 and box["y"] >= 0
    assert box["x"] + box["width"] <= VIEWPORT["width"]
    assert box["y"] + box["height"] <= VIEWPORT["height"]
    assert shown_records(proxy) == ["www.facebook.com"]
