"""Inputs the benchmarks generate at run time (never committed), and the request mixes.

Used by `bench/run.py` (the one command) and `bench/test_micro.py` (pytest-benchmark).
Everything here is deterministic: the same sizes give the same bytes.
"""

from __future__ import annotations

import asyncio
import inspect
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_POLICY = REPO / "addons" / "auditproxy" / "data" / "department.yaml"

# ---------------------------------------------------------------------------------------
# Request mixes: what one page view looks like to a proxy (a browser's Accept and
# Sec-Fetch-* headers), on monitored sites (b) and on sites the policy does not name (c).

CHROME_UA = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
COMMON = {
    "User-Agent": CHROME_UA,
    "Accept-Language": "en-CA,en;q=0.9,fr-CA;q=0.8",
    "Accept-Encoding": "gzip, deflate, br, zstd",
}
KINDS: dict[str, tuple[str, dict[str, str]]] = {
    # kind: (path on the origin, request headers)
    "document": (
        "/",
        {
            "Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,"
            "image/webp,*/*;q=0.8",
            "Sec-Fetch-Dest": "document",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Site": "none",
            "Sec-Fetch-User": "?1",
            "Upgrade-Insecure-Requests": "1",
        },
    ),
    "script": (
        "/static/app.js",
        {"Accept": "*/*", "Sec-Fetch-Dest": "script", "Sec-Fetch-Mode": "no-cors"},
    ),
    "style": (
        "/static/app.css",
        {"Accept": "text/css,*/*;q=0.1", "Sec-Fetch-Dest": "style", "Sec-Fetch-Mode": "no-cors"},
    ),
    "image": (
        "/img/photo.png",
        {
            "Accept": "image/avif,image/webp,image/apng,image/*,*/*;q=0.8",
            "Sec-Fetch-Dest": "image",
            "Sec-Fetch-Mode": "no-cors",
        },
    ),
    "fetch": (
        "/api/feed.json?cursor=abc",
        {"Accept": "application/json", "Sec-Fetch-Dest": "empty", "Sec-Fetch-Mode": "cors"},
    ),
}
# One page view: the page, then what it loads (about what a light page does).
PAGE_VIEW = ("document", "script", "style", "image", "image", "image", "fetch", "fetch")

# (page host, asset host) per site. Five hosts at most in each mix: in upstream mode
# mitmproxy opens one connection to the upstream per target host for each client
# connection, and allows only five at once to one address (`ProxyConnectionHandler.
# max_conns`); a sixth host on the same keep-alive client connection waits forever.
MONITORED_SITES = (
    ("www.facebook.com", "static.xx.fbcdn.net"),
    ("www.youtube.com", "i.ytimg.com"),
    ("www.linkedin.com", "www.linkedin.com"),
)
UNCLASSIFIED_SITES = (
    ("www.cbc.ca", "www.cbc.ca"),
    ("en.wikipedia.org", "upload.wikimedia.org"),
    ("www.canada.ca", "www.canada.ca"),
    ("github.com", "github.com"),
)


@dataclass(frozen=True)
class Request:
    host: str
    kind: str
    path: str
    headers: dict[str, str]  # without Host

    @property
    def url(self) -> str:
        return f"http://{self.host}{self.path}"


def request_mix(sites: tuple[tuple[str, str], ...]) -> list[Request]:
    """One page view per site, in order: the sequence the load generator cycles through."""
    mix = []
    for page_host, asset_host in sites:
        for kind in PAGE_VIEW:
            path, headers = KINDS[kind]
            host = page_host if kind in ("document", "fetch") else asset_host
            mix.append(Request(host, kind, path, {**COMMON, **headers}))
    return mix


def document_requests(sites: tuple[tuple[str, str], ...]) -> list[Request]:
    """One page per site: what warms the day's notice (it is shown once, then seen)."""
    return [r for r in request_mix(sites) if r.kind == "document"]


# Bodies the origin serves (sizes of a light page and its assets).
def origin_files() -> dict[str, tuple[bytes, str]]:
    """path -> (body, content type), for the load test's origin."""
    return {
        "/index.html": (small_page(6_000), "text/html; charset=utf-8"),
        "/static/app.js": (b"/* app */\n" + b"var x = 1;\n" * 900, "application/javascript"),
        "/static/app.css": (b"body { margin: 0 }\n" * 160, "text/css"),
        "/img/photo.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 6, "image/png"),
        "/api/feed.json": (b'{"items": [' + b'{"id": 1},' * 50 + b"{}]}", "application/json"),
    }


# ---------------------------------------------------------------------------------------
# Pages


def small_page(size: int) -> bytes:
    head = (
        b"<!doctype html><html lang=en><head><meta charset=utf-8>"
        b"<meta name=viewport content='width=device-width, initial-scale=1'>"
        b"<title>Feed</title><link rel=stylesheet href=/static/app.css>"
        b"<script src=/static/app.js defer></script></head><body><main>"
    )
    para = b"<article><h2>Post</h2><p>Lorem ipsum dolor sit amet, consectetur.</p></article>\n"
    body = head
    while len(body) < size - 30:
        body += para
    return body + b"</main></body></html>\n"


def large_page(size: int = 2 * 1024 * 1024, head_size: int = 130 * 1024) -> bytes:
    """A 2 MB page of the heavy kind: a 130 KB head (inline scripts and styles, metas,
    JSON-LD, comments), then a long body of articles, tables and inline SVG."""
    rng = random.Random(2)
    parts = [
        b'<!DOCTYPE html>\n<html lang="en" class="no-js">\n<head>\n',
        b'<meta charset="utf-8">\n<meta http-equiv="X-UA-Compatible" content="IE=edge">\n',
        b"<title>News &amp; views | Example</title>\n",
    ]
    n = 0
    while sum(map(len, parts)) < head_size:
        n += 1
        kind = n % 5
        if kind == 0:
            parts.append(
                b'<script>window.__d%d = {"a": "</sc" + "ript>", "b": [1, 2, 3], '
                b'"c": "x < y && y > z"};\n'
                % n
                + b"function f%d(a, b) { return a < b ? a : b; }\n" % n * 20
                + b"</script>\n"
            )
        elif kind == 1:
            parts.append(
                b"<style>\n"
                + b".c%d-%d { color: #%06x; margin: 0 auto; }\n"
                % (n, rng.randrange(999), rng.randrange(1 << 24))
                * 30
                + b"</style>\n"
            )
        elif kind == 2:
            parts.append(
                b'<meta property="og:t%d" content="A title with &quot;quotes&quot; and > signs">\n'
                % n
                + b'<link rel="preload" href="/static/font%d.woff2" as="font" crossorigin>\n' % n
            )
        elif kind == 3:
            parts.append(b"<!-- build %d: <body> is not here -->\n" % n)
        else:
            parts.append(
                b'<script type="application/ld+json">{"@type": "NewsArticle", "headline": '
                b'"<b>%d</b>", "x": "' % n + b"y" * 400 + b'"}</script>\n'
            )
    parts.append(b'</head>\n<body class="article">\n<header><nav>menu</nav></header>\n<main>\n')
    para = (
        b'<article class="post"><h2>Headline %d</h2><p>Lorem ipsum dolor sit amet, '
        b'<a href="/a/%d?x=1&amp;y=2">consectetur</a> adipiscing elit &amp; more.</p>'
        b'<table><tr><td>1</td><td>2</td></tr></table><svg width="10" height="10">'
        b'<circle cx="5" cy="5" r="4"/></svg><img src="/img/%d.png" alt="photo"></article>\n'
    )
    i = 0
    total = sum(map(len, parts))
    while total < size - 40:
        i += 1
        chunk = para % (i, i, i)
        parts.append(chunk)
        total += len(chunk)
    parts.append(b"</main>\n</body>\n</html>\n")
    return b"".join(parts)


# ---------------------------------------------------------------------------------------
# Policies


def generated_policy(domains: int, per_site: int = 10, categories: int = 10) -> str:
    """The example policy with `domains` more domains in generated `monitor` and `log`
    categories (a policy built from a commercial category feed looks like this)."""
    text = EXAMPLE_POLICY.read_text(encoding="utf-8")
    marker = "\ncategories:\n"
    assert marker in text
    lines = [marker.rstrip("\n")]
    sites = (domains + per_site - 1) // per_site
    per_category = (sites + categories - 1) // categories
    made = 0
    for c in range(categories):
        action = "monitor" if c % 2 == 0 else "log"
        lines += [f"  gen-{c:02d}:", f"    action: {action}", "    sites:"]
        for s in range(c * per_category, min(sites, (c + 1) * per_category)):
            names = []
            for d in range(per_site):
                if made == domains:
                    break
                names.append(generated_domain(s, d))
                made += 1
            if names:
                lines.append(f"      gen-{s}: [{', '.join(names)}]")
    return text.replace(marker, "\n".join(lines) + "\n", 1)


def generated_domain(site: int, index: int) -> str:
    prefix = "www." if index == 1 else ""
    return f"{prefix}s{site}d{index}-example.{('com', 'ca', 'org')[index % 3]}"


def lookup_hosts(domains: int, count: int = 1000, per_site: int = 10) -> list[str]:
    """Hosts a proxy sees, for a generated policy: hits (the domain itself, deep
    subdomains) and misses (unclassified, look-alikes), mixed."""
    rng = random.Random(1)
    sites = max(1, domains // per_site)
    hosts = []
    for i in range(count):
        site, index = rng.randrange(sites), rng.randrange(per_site)
        domain = generated_domain(site, index)
        kind = i % 4
        if kind == 0:
            hosts.append(domain)
        elif kind == 1:
            hosts.append(f"cdn{i}.static.{domain}")
        elif kind == 2:
            hosts.append(f"www.unlisted{i}.example.net")
        else:
            hosts.append(f"not{domain}")
    return hosts


# ---------------------------------------------------------------------------------------
# Notice state


def state_keys(users: int, sites: int, day: date) -> Iterator[tuple[int, str, str]]:
    """Rows of the day's notice state: users x sites, with keys shaped like the real ones
    (32 hex digits of a keyed hash, "site:NAME")."""
    ordinal = day.toordinal()
    for u in range(users):
        user = state_user(u)
        for s in range(sites):
            yield ordinal, user, f"site:site-{s}"


def state_user(u: int) -> str:
    return f"{(u * 0x9E3779B97F4A7C15) & ((1 << 128) - 1):032x}"


def fill_state(path: Path, users: int, sites: int, day: date) -> None:
    """Create a notice state file through SQLiteState (its schema and pragmas), then add
    the day's rows in one transaction (as a busy day would, but quickly)."""
    from auditproxy.notice.store import SQLiteState

    SQLiteState(path).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    db.executemany(
        "INSERT OR IGNORE INTO notice_seen (day, user, scope) VALUES (?, ?, ?)",
        state_keys(users, sites, day),
    )
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def state_size(path: Path) -> int:
    """Bytes on disk: the database and its WAL and shared-memory files."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = Path(f"{path}{suffix}")
        if p.exists():
            total += p.stat().st_blocks * 512
    return total


# ---------------------------------------------------------------------------------------
# The add-on's hooks, driven in-process (mitmproxy's test context, no sockets)


async def _wait(pending: Any) -> None:
    await pending


class HookDriver:
    """`AuditProxy` in `taddons`, with the example policy, a real access log file and a real
    SQLite notice state: one request at a time through requestheaders, responseheaders and
    response, exactly the hooks (and the wrappers that time them) the proxy runs.

    Use as a context manager; `exchange(request)` returns the add-on's time for that request
    in nanoseconds (the three hooks; building the flow is not counted).
    """

    def __init__(
        self, tmp: Path, policy: Path = EXAMPLE_POLICY, connections: int | None = None
    ) -> None:
        """`connections`: the requests go round over that many kept client connections (a
        browser's, or `wrk -c10`'s); None: each on a new one (the worst case, and the
        figure of record since issue #16 began)."""
        self.tmp, self.policy = tmp, policy
        self.bodies = origin_files()
        self._upkept = 0.0
        self._kept: list[tuple[Any, Any]] = []
        self._next = 0
        if connections:
            from mitmproxy.test import tflow

            for n in range(connections):
                client, server = tflow.tclient_conn(), tflow.tserver_conn()
                client.peername, client.sni = ("127.0.0.1", 50000 + n), None
                self._kept.append((client, server))

    def __enter__(self) -> HookDriver:
        from mitmproxy import hooks
        from mitmproxy.addonmanager import traverse
        from mitmproxy.options import Options
        from mitmproxy.proxy.layers import http as http_layer
        from mitmproxy.test import taddons

        from auditproxy import dispatch
        from auditproxy.addon import AuditProxy

        self.addon = AuditProxy()
        self._context = taddons.context(self.addon, options=Options(confdir=str(self.tmp / "conf")))
        tctx = self._context.__enter__()

        # `auditproxy run`'s dispatch (`dispatch.HookIndex`), for a chain of this add-on
        # alone: the index's entry for the hook, then the add-on's handlers as the index
        # calls them (`dispatch.call`, found once: `AuditProxy.addons` cannot change), or
        # mitmproxy's way (`AddonManager.invoke_addon`) for an add-on the index walks. Not
        # counted, as before: `safecall` and the coroutines around each add-on.
        index = dispatch.HookIndex(SimpleNamespace(chain=[self.addon]))  # type: ignore[arg-type]

        def invoke(event: hooks.Hook) -> None:
            """An awaitable answer (the notice's work off the loop) is awaited, here on a
            loop of its own; the check for one is part of the cost, as in mitmproxy."""
            for asked, _busy, fixed in index.asked(event.name):
                if fixed is not None and asked.addons is fixed.children:
                    pending = dispatch.call(fixed.handlers, event)
                    if pending is not None:
                        asyncio.run(_wait(pending))
                    continue
                for a in traverse([asked]):
                    func = getattr(a, event.name, None)
                    if func is not None:
                        res = func(*event.args())
                        if res is not None and inspect.isawaitable(res):
                            asyncio.run(_wait(res))

        self.hook_requestheaders = lambda f: invoke(http_layer.HttpRequestHeadersHook(f))
        self.hook_responseheaders = lambda f: invoke(http_layer.HttpResponseHeadersHook(f))
        self.hook_response = lambda f: invoke(http_layer.HttpResponseHook(f))
        self.hook_done = lambda: invoke(hooks.DoneHook())
        tctx.configure(
            self.addon,
            auditproxy_access_log=str(self.tmp / "hooks-access.log"),
            auditproxy_policy=str(self.policy),
            auditproxy_state=str(self.tmp / "hooks-state.sqlite3"),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        self.hook_done()
        self._context.__exit__(*exc)

    def flow(self, request: Request):
        from mitmproxy import http
        from mitmproxy.test import tflow

        headers = {"Host": request.host, **request.headers}
        req = http.Request.make("GET", request.url, b"", headers)
        if self._kept:
            client, server = self._kept[self._next % len(self._kept)]
            self._next += 1
            return tflow.tflow(client_conn=client, server_conn=server, req=req)
        f = tflow.tflow(req=req)
        f.client_conn.peername = ("127.0.0.1", 50000)
        f.client_conn.sni = None
        return f

    def response(self, request: Request):
        from mitmproxy import http

        origin_path = "/index.html" if request.path == "/" else request.path.split("?")[0]
        body, content_type = self.bodies[origin_path]
        headers = {"Content-Type": content_type, "Content-Length": str(len(body))}
        return http.Response.make(200, body, headers)

    def prepare(self, request: Request) -> tuple:
        """A fresh flow (no response yet) and the origin's response for it."""
        return self.flow(request), self.response(request)

    def run(self, f, response) -> None:
        """The hooks of one request, in mitmproxy's order."""
        self.hook_requestheaders(f)
        f.response = response
        self.hook_responseheaders(f)
        self.hook_response(f)

    def upkeep(self) -> None:
        """The log's upkeep, at most once a second as `auditproxy run` runs it (`Runtime`'s
        maintenance tick): the sink forgets the lines it keeps in case the file is removed
        (`LogSink.maintain`). Without it they pile up to 100,000 over a long run, which
        no proxy does. Not counted: it is the tick's work, not a request's."""
        from time import monotonic

        now = monotonic()
        if now - self._upkept >= 1.0:
            self._upkept = now
            sink = self.addon.runtime.sink
            if sink is not None:
                sink.maintain()

    def exchange(self, request: Request) -> int:
        """One request through the hooks: the add-on's time in nanoseconds."""
        from time import perf_counter_ns

        self.upkeep()
        f, response = self.prepare(request)
        t0 = perf_counter_ns()
        self.hook_requestheaders(f)
        t1 = perf_counter_ns()
        f.response = response
        t2 = perf_counter_ns()
        self.hook_responseheaders(f)
        self.hook_response(f)
        t3 = perf_counter_ns()
        return (t1 - t0) + (t3 - t2)
