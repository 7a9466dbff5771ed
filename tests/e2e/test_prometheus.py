"""Every dashboard panel, run against real Prometheus scraping a real `auditproxy run`.

The stack, all on 127.0.0.1 with free ports:

    ProxyClient --> auditproxy run --upstream mode--> Upstream (the test "internet")
                        | /metrics
                    Prometheus (Debian's package), started by scripts/monitor-local.sh

Two such stacks. The first carries every kind of traffic: every action (monitor over HTTP
and decrypted HTTPS, log, bypass, block, refuse), origin errors, the daily notice (shown,
acknowledged, skipped). The second carries only ordinary browsing (plain HTTP to a monitored
and an unclassified site): no block, refusal, acknowledgement, tunnel, skipped notice or
error. Every query of both dashboards, with Grafana's variables filled in as Grafana would,
goes through Prometheus's HTTP API against each: each must succeed and return data, on the
quiet stack too (a panel says 0 when nothing happened, never "No data"), and there the
queries that count only what did not happen must read exactly 0. The dashboards'
`label_values` variables must find the running job and instance.

Needs the `prometheus` binary (Debian package `prometheus`; .ci/run installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from auditproxy.notice.ownpaths import READING_SECONDS
from support import CertAuthority, ProxyClient, Reply, Upstream, free_port, wait_for_http
from support.notice import through_confirmation

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("prometheus") is None,
        reason="needs Prometheus: apt-get install --no-install-recommends prometheus",
    ),
]

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "dashboards"
MONITOR_LOCAL = REPO / "scripts" / "monitor-local.sh"
EXAMPLE_POLICY = REPO / "policy" / "department.yaml"

REFUSED_SOURCE = "127.0.0.2"  # outside the test policy's clients.allow (127.0.0.1/32)
RATE_INTERVAL = "1m"  # what Grafana's $__rate_interval becomes (4 x the 1 s scrape interval
# at least; 1m is what Grafana picks for a 15 s scrape interval)
RANGE = "5m"  # $__range: the dashboard's time range
DOCUMENT = {
    "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8",
    "Sec-Fetch-Dest": "document",
    "Sec-Fetch-Mode": "navigate",
    "Sec-Fetch-Site": "none",
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) auditproxy-e2e",
}
# The person's click on the notice's "I understand" (a navigation with their activation).
CLICK = {**DOCUMENT, "Sec-Fetch-User": "?1", "Sec-Fetch-Site": "same-origin"}
# ... and on the proxy's confirmation page (sandboxed: the browser says cross-site).
CONFIRM_CLICK = {**CLICK, "Sec-Fetch-Site": "cross-site"}
PAGE = "<!doctype html><html><head><title>{t}</title></head><body><p>{t}</p></body></html>"
# Pages that are due the notice but cannot carry it safely (a CSP sandbox, no-transform,
# a frameset, a charset that is not ASCII-compatible): one per monitored site, since the
# notice is once a day per site. Any of them counting a skip is enough; which reasons
# exist is the banner's business. Values: (response headers, body or None for PAGE).
UNSAFE_PAGES = {
    "www.linkedin.com": ({"Content-Security-Policy": "default-src 'none'; sandbox"}, None),
    "www.youtube.com": ({"Cache-Control": "no-transform"}, None),
    "www.reddit.com": ({}, '<html><frameset><frame src="/a"></frameset></html>'),
    "www.pinterest.com": ({"Content-Type": "text/html; charset=utf-16"}, None),
}


@dataclass
class Stack:
    proxy_port: int
    metrics_port: int
    prometheus_url: str
    ca_file: Path  # the proxy's CA (for decrypted HTTPS)
    upstream_ca_file: Path  # the test CA (for bypassed HTTPS)
    notice_seen: bool
    acknowledged: bool
    proxy_log: Path

    @property
    def instance(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"


# ------------------------------------------------------------------------------ helpers


def _api(base: str, path: str, **params: str) -> dict:
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=10) as response:
            return json.load(response)
    except urllib.error.HTTPError as e:  # Prometheus answers 400/422 with a JSON error
        return json.load(e)


def _query(base: str, expr: str) -> list:
    answer = _api(base, "/api/v1/query", query=expr)
    assert answer.get("status") == "success", f"{expr}\n-> {answer}"
    return answer["data"]["result"]


def _wait_until(what: str, condition, timeout: float = 20.0, interval: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def _proxy_command() -> list[str]:
    script = Path(sys.executable).with_name("auditproxy")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "auditproxy.cli"]


def _test_policy(path: Path) -> None:
    """The example policy, with only 127.0.0.1 allowed so that 127.0.0.2 is refused (with
    the refusal page, so that its request is counted with action="refuse")."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    policy["clients"] = {"allow": ["127.0.0.1/32"], "refuse": "page"}
    path.write_text(yaml.safe_dump(policy, allow_unicode=True, sort_keys=False), "utf-8")


def _stop(process: subprocess.Popen, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)  # our own process group (start_new_session)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


def _refused_request(proxy_port: int) -> bytes:
    """A request from 127.0.0.2, outside the policy's allowed networks."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.bind((REFUSED_SOURCE, 0))
        sock.connect(("127.0.0.1", proxy_port))
        sock.sendall(
            b"GET http://www.example.org/ HTTP/1.1\r\nHost: www.example.org\r\n"
            b"Connection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


_NOTICE = re.compile(r'<[^>]*id="auditproxy-notice".*', re.S)
_HREF = re.compile(r'href="([^"]+)"')


def _acknowledgement_links(page: str, policy_urls: set[str]) -> list[str]:
    """The links in the notice that are neither the policy, a fragment nor the page "what
    is recorded about me": the ack link."""
    notice = _NOTICE.search(page)
    if notice is None:
        return []
    links = [h.replace("&amp;", "&") for h in _HREF.findall(notice.group(0))]
    return [
        h for h in links if h not in policy_urls and not h.startswith("#") and "/recorded" not in h
    ]


def _drive_traffic(
    client: ProxyClient, tls_client: ProxyClient, bypass_client: ProxyClient, port: int
) -> tuple[bool, bool]:
    """One round of every kind of traffic. Returns (notice seen, acknowledgement followed)."""
    policy = yaml.safe_load(EXAMPLE_POLICY.read_text(encoding="utf-8"))
    policy_urls = {policy["url"]} | {
        t.get("policy_url") for t in policy["notice"]["texts"].values() if t.get("policy_url")
    }

    # monitor, plain HTTP: the first page on the site today gets the notice
    page = client.get("http://www.facebook.com/", DOCUMENT)
    assert page.status == 200, page.status
    text = page.text
    notice_seen = 'id="auditproxy-notice"' in text
    acknowledged = False
    for link in _acknowledgement_links(text, policy_urls):
        url = urllib.parse.urljoin("http://www.facebook.com/", link)
        if urllib.parse.urlsplit(url).scheme == "http":
            confirm = client.get(url, CLICK)  # the proxy's confirmation page, then its link
            assert confirm.status == 200, confirm.status
            second = urllib.parse.urljoin(  # the person reads each page before answering
                url,
                through_confirmation(
                    confirm.body,
                    lambda link, url=url: (
                        client.get(urllib.parse.urljoin(url, link), CONFIRM_CLICK).body
                    ),
                    lambda: time.sleep(READING_SECONDS + 0.2),
                ),
            )
            answer = client.get(second, CONFIRM_CLICK)
            acknowledged = acknowledged or answer.status < 400
    # monitor, decrypted HTTPS (a tunnel the proxy opens, counted by action monitor)
    assert tls_client.get("https://www.instagram.com/", DOCUMENT).status == 200
    # monitor, not a document: no notice, just counted
    assert client.get("http://static.xx.fbcdn.net/app.js", {"Accept": "*/*"}).status == 200
    # pages that cannot carry the notice safely
    for host in UNSAFE_PAGES:
        assert client.get(f"http://{host}/", DOCUMENT).status == 200
    # log: unclassified
    assert client.get("http://www.example.org/", DOCUMENT).status == 200
    # origin errors: a 503 and a connection reset (status class 5xx and none)
    assert client.get("http://status.example.net/", DOCUMENT).status == 503
    with contextlib.suppress(Exception):
        client.get("http://reset.example.net/", DOCUMENT)
    # block
    blocked = client.get("http://testsafebrowsing.appspot.com/", DOCUMENT)
    assert blocked.status == 403, blocked.status
    # bypass: the client's TLS session ends at the test upstream, not at the proxy
    assert bypass_client.get("https://www.rbc.com/", DOCUMENT).status == 200
    assert bypass_client.get("https://www.mayoclinic.org/", DOCUMENT).status == 200
    # refuse: a client outside clients.allow
    refused = _refused_request(port)
    assert refused.startswith(b"HTTP/1.1 403"), refused[:80]
    return notice_seen, acknowledged


# ------------------------------------------------------------------------------ fixture


Traffic = Callable[[ProxyClient, ProxyClient, ProxyClient, int], tuple[bool, bool]]


def _drive_ordinary_traffic(
    client: ProxyClient, tls_client: ProxyClient, bypass_client: ProxyClient, port: int
) -> tuple[bool, bool]:
    """A quiet day: plain HTTP browsing of a monitored and an unclassified site, nothing
    else. No block, refusal, acknowledgement, bypass, TLS tunnel, skipped notice or origin
    error: the panels about those must say 0, not "No data"."""
    page = client.get("http://www.facebook.com/", DOCUMENT)
    assert page.status == 200, page.status
    assert client.get("http://static.xx.fbcdn.net/app.js", {"Accept": "*/*"}).status == 200
    assert client.get("http://www.example.org/", DOCUMENT).status == 200
    return 'id="auditproxy-notice"' in page.text, False


@contextlib.contextmanager
def _running_stack(tmp: Path, traffic: Traffic, scraped_all: str) -> Iterator[Stack]:
    """`auditproxy run` and Prometheus scraping it, after two rounds of `traffic`; yields
    once Prometheus has scraped the second round (`scraped_all` returns a sample)."""
    policy = tmp / "policy.yaml"
    _test_policy(policy)
    confdir = tmp / "confdir"
    proxy_log = tmp / "mitmproxy.log"
    processes: list[subprocess.Popen] = []
    with contextlib.ExitStack() as cleanup:
        ca = cleanup.enter_context(CertAuthority())
        upstream_ca_file = ca.write_ca(tmp)
        upstream = cleanup.enter_context(Upstream(ca))
        for host, (headers, body) in UNSAFE_PAGES.items():
            upstream.route(host, "/", Reply.html(body or PAGE.format(t=host), headers=headers))
        upstream.route("status.example.net", "/", Reply.html(PAGE.format(t="busy"), status=503))
        upstream.route("reset.example.net", "/", Reply.reset())
        cleanup.callback(lambda: [_stop(p) for p in reversed(processes)])

        proxy_port, metrics_port, prometheus_port = free_port(), free_port(), free_port()
        log_file = cleanup.enter_context(proxy_log.open("wb"))
        processes.append(
            subprocess.Popen(
                [
                    *_proxy_command(),
                    "run",
                    "--policy",
                    str(policy),
                    "--listen-port",
                    str(proxy_port),
                    "--metrics-port",
                    str(metrics_port),
                    "--confdir",
                    str(confdir),
                    "--state",
                    str(tmp / "state.sqlite3"),
                    "--access-log",
                    str(tmp / "access.log"),
                    "--set",
                    f"mode={upstream.proxy_mode}",
                    "--set",
                    f"ssl_verify_upstream_trusted_ca={upstream_ca_file}",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        try:
            wait_for_http(f"http://127.0.0.1:{metrics_port}/healthz", timeout=30)
        except TimeoutError:
            pytest.fail("auditproxy run did not come up:\n" + proxy_log.read_text()[-3000:])

        prometheus_url = f"http://127.0.0.1:{prometheus_port}"
        processes.append(
            subprocess.Popen(
                [
                    "bash",
                    str(MONITOR_LOCAL),
                    "--target",
                    f"127.0.0.1:{metrics_port}",
                    "--listen",
                    f"127.0.0.1:{prometheus_port}",
                    "--scrape-interval",
                    "1s",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        )
        wait_for_http(f"{prometheus_url}/-/ready", timeout=30)

        def scraped() -> bool:
            result = _query(prometheus_url, 'up{job="auditproxy"}')
            return bool(result) and result[0]["value"][1] == "1"

        _wait_until("Prometheus to scrape the proxy", scraped)

        client = ProxyClient("127.0.0.1", proxy_port)
        tls_client = ProxyClient("127.0.0.1", proxy_port, ca_file=confdir / "mitmproxy-ca-cert.pem")
        bypass_client = ProxyClient("127.0.0.1", proxy_port, ca_file=upstream_ca_file)
        # Two rounds a few scrapes apart, so that rates see counters move, not just appear.
        notice_seen, acknowledged = traffic(client, tls_client, bypass_client, proxy_port)
        time.sleep(2.5)
        traffic(client, tls_client, bypass_client, proxy_port)

        _wait_until(
            "the second round of traffic to be scraped",
            lambda: _query(prometheus_url, scraped_all),
        )
        time.sleep(2.5)  # a couple more scrapes after the last increment

        yield Stack(
            proxy_port=proxy_port,
            metrics_port=metrics_port,
            prometheus_url=prometheus_url,
            ca_file=confdir / "mitmproxy-ca-cert.pem",
            upstream_ca_file=upstream_ca_file,
            notice_seen=notice_seen,
            acknowledged=acknowledged,
            proxy_log=proxy_log,
        )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Every kind of traffic."""
    with _running_stack(
        tmp_path_factory.mktemp("prometheus-e2e"),
        _drive_traffic,
        'sum(auditproxy_requests_total{action="refuse"}) >= 2',
    ) as running:
        yield running


@pytest.fixture(scope="module")
def quiet_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Ordinary traffic only (_drive_ordinary_traffic: three requests a round)."""
    with _running_stack(
        tmp_path_factory.mktemp("prometheus-e2e-quiet"),
        _drive_ordinary_traffic,
        "sum(auditproxy_requests_total) >= 6",
    ) as running:
        yield running


# ------------------------------------------------------------------------------ panels


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel_id: int
    title: str
    exprs: tuple[tuple[str, bool], ...]  # (expr, instant)

    def __str__(self) -> str:
        return f"{self.dashboard}#{self.panel_id} {self.title}"


def _panels() -> list[PanelQuery]:
    out = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        for panel in model["panels"]:
            targets = panel.get("targets") or []
            if targets:
                exprs = tuple((t["expr"], bool(t.get("instant"))) for t in targets)
                out.append(PanelQuery(path.stem, panel["id"], panel["title"], exprs))
    return out


PANELS = _panels()
NOTICE_METRICS = ("auditproxy_notices_total", "auditproxy_notice_skipped_total")


def _substitute(expr: str, stack: Stack) -> str:
    values = {
        "$__rate_interval": RATE_INTERVAL,
        "$__range": RANGE,
        "$instance": stack.instance,
        "$job": "auditproxy",
        "$category": ".+",
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def _why_no_data_is_expected(panel: PanelQuery, stack: Stack) -> str | None:
    """Notice panels need the banner (and its acknowledgement link) in this build."""
    exprs = [e for e, _ in panel.exprs]
    if any(m in e for e in exprs for m in NOTICE_METRICS) and not stack.notice_seen:
        return (
            'the daily notice is not in this build yet (no id="auditproxy-notice" in a '
            "monitored page), so its metrics have no data"
        )
    if all('event="acknowledged"' in e for e in exprs) and not stack.acknowledged:
        return "the notice carries no acknowledgement link the test could follow"
    return None


def test_there_are_panels_to_check() -> None:
    assert len(PANELS) >= 30, [str(p) for p in PANELS]


def _evaluate(stack: Stack, panel: PanelQuery, expr: str, instant: bool) -> list:
    """The query as Grafana sends it for this panel; its result (series or samples)."""
    now = time.time()
    query = _substitute(expr, stack)
    if instant:
        answer = _api(stack.prometheus_url, "/api/v1/query", query=query, time=str(now))
    else:  # what Grafana sends for a time series panel
        answer = _api(
            stack.prometheus_url,
            "/api/v1/query_range",
            query=query,
            start=str(now - 120),
            end=str(now),
            step="1",
        )
    assert answer.get("status") == "success", f"{panel}: {query}\n-> {answer}"
    return answer["data"]["result"]


@pytest.mark.parametrize("panel", PANELS, ids=str)
def test_panel_query_succeeds_and_returns_data(stack: Stack, panel: PanelQuery) -> None:
    """Every query of every panel returns data (each target, not just one per panel)."""
    empty = [e for e, instant in panel.exprs if not _evaluate(stack, panel, e, instant)]
    if empty and (why := _why_no_data_is_expected(panel, stack)):
        pytest.skip(why)
    assert not empty, f"{panel}: no data from {empty}"


# Events the quiet stack never causes: a query that counts only these must read 0 there.
NEVER_IN_ORDINARY_TRAFFIC = (
    'action="block"',
    'action="refuse"',
    'action="bypass"',
    'event="acknowledged"',
    "auditproxy_notice_skipped_total{",
    "auditproxy_tunnels_total{",
)
_SELECTOR = re.compile(r"\w+\{[^}]*\}")


def _only_about_absent_events(expr: str) -> bool:
    """Every selector of `expr`, bar the 0 that stands in for "nothing happened" (the
    proxy's build_info times 0), is about an event the quiet stack never causes."""
    counted = [s for s in _SELECTOR.findall(expr) if not s.startswith("auditproxy_build_info{")]
    return bool(counted) and all(
        any(event in s for event in NEVER_IN_ORDINARY_TRAFFIC) for s in counted
    )


def test_ordinary_traffic_is_ordinary(quiet_stack: Stack) -> None:
    """The quiet stack served requests and none of the events it is meant to lack."""
    url = quiet_stack.prometheus_url
    assert _query(url, 'auditproxy_requests_total{action="monitor"} > 0')
    assert _query(url, 'auditproxy_requests_total{action="log"} > 0')
    assert not _query(url, 'auditproxy_requests_total{action=~"block|refuse|bypass"}')
    assert not _query(url, 'auditproxy_requests_total{status_class=~"5xx|none"}')
    assert not _query(url, 'auditproxy_notices_total{event="acknowledged"}')
    assert not _query(url, "auditproxy_notice_skipped_total")
    assert not _query(url, "auditproxy_tunnels_total")


@pytest.mark.parametrize("panel", PANELS, ids=str)
def test_panel_shows_a_value_under_ordinary_traffic(quiet_stack: Stack, panel: PanelQuery) -> None:
    """A day without blocks, refusals, acknowledgements, bypass or TLS tunnels, skipped
    notices or errors: every query of every panel still returns a sample (0 when nothing
    happened), so no panel says "No data". Nothing is skipped here."""
    for expr, instant in panel.exprs:
        result = _evaluate(quiet_stack, panel, expr, instant)
        assert result, f"{panel}: no data from {expr}"
        if _only_about_absent_events(expr):
            values = {v for r in result for _, v in r.get("values") or [r["value"]]}
            assert values == {"0"}, f"{panel}: {expr} counts what did not happen: {values}"


def test_every_query_target_returns_data_where_the_traffic_says_it_must(stack: Stack) -> None:
    """Series the traffic must have made, one per action and status the panels split by."""
    expected = {
        'auditproxy_requests_total{action="monitor", category="social", site="facebook"}',
        'auditproxy_requests_total{action="log", category="other"}',
        'auditproxy_requests_total{action="block", category="security-test"}',
        'auditproxy_requests_total{action="refuse"}',
        'auditproxy_requests_total{status_class="5xx"}',
        'auditproxy_tunnels_total{action="bypass", category="banking"}',
        'auditproxy_tunnels_total{action="bypass", category="health"}',
        'auditproxy_tunnels_total{action="monitor", category="social"}',
        'auditproxy_log_records_total{outcome="written"}',
        'auditproxy_hook_duration_seconds_count{hook="tls_clienthello"}',
        'auditproxy_daily_users{category="social"} > 0',
        "auditproxy_policy_info",
        "auditproxy_build_info",
    }
    missing = [e for e in sorted(expected) if not _query(stack.prometheus_url, e)]
    assert not missing, (
        f"no series for {missing}; proxy log:\n{stack.proxy_log.read_text()[-2000:]}"
    )


@pytest.mark.clock
def test_notice_metrics_when_the_banner_is_there(stack: Stack) -> None:
    if not stack.notice_seen:
        pytest.skip('the daily notice is not in this build yet (no id="auditproxy-notice")')
    assert _query(stack.prometheus_url, 'auditproxy_notices_total{event="shown"} > 0')
    assert _query(stack.prometheus_url, "auditproxy_notice_skipped_total > 0"), (
        f"none of {sorted(UNSAFE_PAGES)} counted a notice skip"
    )


@pytest.mark.parametrize("variable", ["job", "instance", "category"])
def test_dashboard_variables_find_the_running_proxy(stack: Stack, variable: str) -> None:
    """`label_values(metric{...}, label)` variables, as Grafana asks Prometheus for them."""
    pattern = re.compile(r"label_values\((?:(\w+)(\{[^}]*\})?,\s*)?(\w+)\)")
    seen = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        model = json.loads(path.read_text(encoding="utf-8"))
        for var in model["templating"]["list"]:
            if var["name"] != variable:
                continue
            metric, matchers, label = pattern.fullmatch(var["definition"]).groups()
            selector = _substitute(metric + (matchers or ""), stack)
            answer = _api(
                stack.prometheus_url, f"/api/v1/label/{label}/values", **{"match[]": selector}
            )
            assert answer["status"] == "success", answer
            seen.update(answer["data"])
    expected = {"job": "auditproxy", "instance": stack.instance, "category": "social"}[variable]
    assert expected in seen, f"{variable}: {sorted(seen)}"


def test_alert_rules_are_loaded_and_healthy(stack: Stack) -> None:
    answer = _api(stack.prometheus_url, "/api/v1/rules")
    rules = [r for g in answer["data"]["groups"] for r in g["rules"]]
    assert len(rules) >= 7
    unhealthy = [(r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
    assert not unhealthy
    # Nothing is wrong with this proxy, so nothing but the short-window ones may fire.
    firing = {r["name"] for r in rules if r.get("state") == "firing"}
    assert not firing & {
        "AuditproxyDown",
        "AuditproxyTargetMissing",
        "AuditproxyPolicyReloadFailing",
    }
