"""Micro-benchmarks (pytest-benchmark) of what the add-on does per request.

    python -m pytest bench --benchmark-enable     # timed (bench/run.py does this too)
    python -m pytest bench --benchmark-disable    # smoke: each function runs once, untimed

Nothing here asserts a time: the targets are checked by `bench/run.py`, on the figures it
prints. The tests do check that each benchmarked call gives the right answer, so a smoke
run catches a benchmark that measures the wrong thing. In smoke mode the generated inputs
are small (a few thousand domains and users) to keep CI quick; timed runs use the sizes
of the targets (100,000 domains, 100,000 users x 10 sites, a 2 MB page).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import html.parser
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import workloads as w

from auditproxy.decide.classify import OTHER
from auditproxy.decide.decision import Engine
from auditproxy.decide.identity import user_fields
from auditproxy.notice import insert
from auditproxy.notice.banner import render_banner
from auditproxy.notice.store import SQLiteState
from auditproxy.policy.load import load_policy, parse_policy
from auditproxy.policy.model import LoggingSettings
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.records import Exchange, access_event
from auditproxy.sinks.seal import Mac, derive_key

DAY = datetime.date(2026, 11, 22)
KEY = bytes(range(32))


def _timed(config: pytest.Config) -> bool:
    disabled = config.getoption("benchmark_disable", False)
    return not disabled or config.getoption("benchmark_enable", False)


@pytest.fixture(scope="module")
def sizes(request: pytest.FixtureRequest) -> dict[str, int]:
    if _timed(request.config):
        return {"domains": 100_000, "users": 100_000, "sites": 10, "rounds": 2000}
    return {"domains": 2_000, "users": 1_000, "sites": 10, "rounds": 1}


@pytest.fixture(scope="module")
def big_policy(sizes: dict[str, int]) -> bytes:
    return w.generated_policy(sizes["domains"]).encode()


@pytest.fixture(scope="module")
def big_engine(big_policy: bytes) -> Engine:
    return Engine(parse_policy(big_policy, source="generated.yaml"), KEY)


@pytest.fixture(scope="module")
def example_engine() -> Engine:
    return Engine(load_policy(w.EXAMPLE_POLICY), KEY)


# ---------------------------------------------------------------------------------------
# Classification


def test_policy_load_and_validation(benchmark, big_policy: bytes, sizes: dict) -> None:
    """parse + validate + index a policy of 100,000 domains (target: under 2 s)."""

    def load() -> Engine:
        return Engine(parse_policy(big_policy, source="generated.yaml"), KEY)

    engine = benchmark.pedantic(load, rounds=3, iterations=1)
    assert len(engine.classifier) >= sizes["domains"]


def test_classify_host(benchmark, big_engine: Engine, sizes: dict) -> None:
    """normalize_host + suffix lookup, per host, against 100,000 domains (target: < 5 us)."""
    hosts = w.lookup_hosts(sizes["domains"], 1000)
    classify = big_engine.classifier.classify
    benchmark.extra_info["calls_per_round"] = len(hosts)

    def run() -> list:
        return [classify(h) for h in hosts]

    matches = benchmark(run)
    assert matches[0].site.startswith("gen-") and matches[1].site.startswith("gen-")
    assert matches[2].site == OTHER and matches[3].site == OTHER  # unlisted, look-alike


# ---------------------------------------------------------------------------------------
# Identity and the decision


def test_identity(benchmark, example_engine: Engine, sizes: dict) -> None:
    """Who is asking and their pseudonym, for many distinct users (cached HMAC)."""
    users = [f"user{i:06d}" for i in range(min(sizes["users"], 50_000))]
    resolve = example_engine.identity.resolve
    log_as, pseudonymize = example_engine.log_as, example_engine.pseudonymize
    for user in users:
        user_fields(resolve(user, None, "10.1.2.3"), log_as, pseudonymize)
    sample = users[:: max(1, len(users) // 1000)]
    benchmark.extra_info["calls_per_round"] = len(sample)

    def run() -> list:
        return [user_fields(resolve(u, None, "10.1.2.3"), log_as, pseudonymize) for u in sample]

    fields = benchmark(run)
    assert len(fields[0]["user.hash"]) == 32 and fields[0]["user.hash"] != fields[1]["user.hash"]


def test_decide(benchmark, example_engine: Engine) -> None:
    """Engine.decide: classify every name + identify + the Decision."""

    def run():
        return example_engine.decide(
            host="www.facebook.com",
            other_names=("www.facebook.com",),
            client_address="10.1.2.3",
        )

    decision = benchmark(run)
    assert decision.match.site == "facebook" and decision.allowed_client


# ---------------------------------------------------------------------------------------
# The access record


@pytest.fixture(params=["unchained", "chained"])
def access_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[AccessLog]:
    """The access log without, and with, its hash chain (the difference is the chain's
    cost per record on the request path)."""
    sink = LogSink(str(tmp_path / "access.log"), lambda outcome: None)
    chain = LogChain(KEY) if request.param == "chained" else None
    yield AccessLog(sink, LoggingSettings(source_ip=False, url_path=False), chain)
    sink.close()


def test_access_record(benchmark, example_engine: Engine, access_log: AccessLog, tmp_path):
    """access_event + the processors (timestamp, ECS, privacy, JSON[, hash chain]) + one
    write."""
    decision = example_engine.decide(
        host="www.facebook.com", other_names=("www.facebook.com",), client_address="10.1.2.3"
    )
    exchange = Exchange(
        method="GET",
        scheme="http",
        port=80,
        path="/groups/x",
        http_version="1.1",
        status=200,
        response_bytes=48213,
        duration_ns=5_042_314,
        client_address="10.1.2.3",
    )

    def run() -> None:
        access_log.emit(access_event(decision, exchange))

    benchmark(run)
    line = (tmp_path / "access.log").read_text().splitlines()[0]
    assert '"labels.site":"facebook"' in line and "url.path" not in line
    assert ('"event.sequence":1,' in line) == (access_log.chain is not None)


class _StdlibMac:
    """HMAC-SHA256 with Python's `hmac`, keyed once and `.copy()` per record, as the
    chain had it before issue #16: kept here only to measure it against `sinks.seal.Mac`
    (two keyed hashlib states, RFC 2104 pads)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def __call__(self, previous: bytes, body: bytes) -> str:
        mac = self._keyed.copy()
        mac.update(previous)
        mac.update(body)
        return mac.hexdigest()


@pytest.mark.parametrize("kind", ["seal-pads", "stdlib-hmac-copy"])
def test_chain_mac(benchmark, kind: str) -> None:
    """The chain's MAC over a 700-byte line: `sinks.seal.Mac` (what the chain uses)
    against Python's hmac keyed once and copied per record."""
    key = derive_key(KEY)
    mac = Mac(key) if kind == "seal-pads" else _StdlibMac(key)
    body = b'{"@timestamp":"2026-11-22T14:03:07.412Z",' + b'"labels.x":"abcdefghij",' * 25
    digest = benchmark(mac, b"a" * 64, body)
    assert digest == hmac.new(key, b"a" * 64 + body, hashlib.sha256).hexdigest()


def test_chain_seal(benchmark) -> None:
    """The hash chain alone on a rendered record of a typical size (700 bytes): number,
    splice, HMAC-SHA256."""
    chain = LogChain(KEY)
    line = '{"@timestamp":"2026-11-22T14:03:07.412Z",' + '"labels.x":"abcdefghij",' * 25 + '"z":1}'
    sealed = benchmark(chain, None, "info", line)
    assert sealed.startswith(line[:-1]) and '"event.hash":"' in sealed


# ---------------------------------------------------------------------------------------
# The banner


@pytest.fixture(scope="module")
def page() -> bytes:
    return w.large_page()


@pytest.fixture(scope="module")
def banner(example_engine: Engine):
    texts = example_engine.policy.notice.ordered_texts()
    return render_banner(texts, ack_url="/.well-known/auditproxy/acknowledge?t=x")


def test_inject_2mb(benchmark, page: bytes, banner) -> None:
    """The banner into a 2 MB page with a 130 KB head (target: under 5 ms)."""

    def run():
        return insert.inject(page, banner, content_type="text/html; charset=utf-8")

    result = benchmark(run)
    assert isinstance(result, insert.InjectResult)
    assert page.index(b"<body") < result.offset < page.index(b"<main>")


def test_html_parser_2mb(benchmark, page: bytes) -> None:
    """For comparison: html.parser over the same page (injection must be >= 10x faster)."""

    class Parser(html.parser.HTMLParser):
        body = None

        def handle_starttag(self, tag: str, attrs: list) -> None:
            if tag == "body" and self.body is None:
                self.body = self.getpos()

    def run():
        parser = Parser()
        parser.feed(page.decode("utf-8"))
        parser.close()
        return parser.body

    assert benchmark.pedantic(run, rounds=3, iterations=1) is not None


# ---------------------------------------------------------------------------------------
# The notice state


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory, sizes: dict) -> Iterator[SQLiteState]:
    path = tmp_path_factory.mktemp("state") / "state.sqlite3"
    w.fill_state(path, sizes["users"], sizes["sites"], DAY)
    store = SQLiteState(path)
    yield store
    store.close()


def test_state_seen(benchmark, state: SQLiteState, sizes: dict) -> None:
    """`seen` in the day's state of 100,000 users x 10 sites (target: under 50 us)."""
    rng = random.Random(4)
    keys = [
        (w.state_user(rng.randrange(sizes["users"])), f"site:site-{rng.randrange(10)}")
        for _ in range(1000)
    ]
    benchmark.extra_info["calls_per_round"] = len(keys)

    def run() -> list[bool]:
        return [state.seen(DAY, user, scope) for user, scope in keys]

    assert all(benchmark(run))
    assert not state.seen(DAY, w.state_user(sizes["users"] + 1), "site:site-0")


# ---------------------------------------------------------------------------------------
# The add-on's hooks, one request at a time


@pytest.fixture(scope="module", params=["monitored", "unclassified"])
def driver(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    sites = w.MONITORED_SITES if request.param == "monitored" else w.UNCLASSIFIED_SITES
    with w.HookDriver(tmp_path_factory.mktemp(request.param)) as d:
        for r in w.document_requests(sites):
            d.exchange(r)  # the day's notice goes out once; afterwards it is seen
        d.mix = w.request_mix(sites)
        yield d


def test_hooks_per_request(benchmark, driver: w.HookDriver, sizes: dict) -> None:
    """requestheaders + responseheaders + response for one request of a page view mix
    (target: 50 us at p50). Building the flow is not timed."""
    mix = driver.mix
    counter = iter(range(1 << 62))

    def setup():
        return driver.prepare(mix[next(counter) % len(mix)]), {}

    benchmark.pedantic(driver.run, setup=setup, rounds=sizes["rounds"], iterations=1)
    requests = driver.addon.metrics.requests.collect()[0].samples
    assert sum(s.value for s in requests if s.name.endswith("_total")) >= len(mix) // 8


def test_least_audit_floor(sizes: dict) -> None:
    """bench/floor.py (the least audit add-on, as the hooks are measured) keeps working:
    one sealed record a request. Its figures are a reference, timed by `floor.py` alone."""
    import floor

    requests = max(sizes["rounds"], 50)
    result = floor.measure(requests, None)
    warm_up = len(w.request_mix(w.MONITORED_SITES)) * floor.WARM_UP_ROUNDS
    assert result["records"] == warm_up + requests
    assert 0 < result["p50_us"] <= result["p99_us"]


# ---------------------------------------------------------------------------------------
# The notice's work on hostile pages (the `worst` section of bench/run.py times them at 1-4 MB)


@pytest.fixture(scope="module")
def hostile_size(request: pytest.FixtureRequest) -> int:
    return 1_000_000 if _timed(request.config) else 20_000


def _hostile():  # tests/support/hostile_pages.py, shared with the tests
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from support import hostile_pages as hostile

    return hostile


@pytest.mark.parametrize("shape", sorted(_hostile().scan_shapes(100)))
def test_scan_hostile(benchmark, hostile_size: int, shape: str) -> None:
    """`inject` on a hostile page (the scan reads all of it, or up to its limits)."""
    page = _hostile().scan_shapes(hostile_size)[shape]
    texts = load_policy(w.EXAMPLE_POLICY).notice.ordered_texts()
    banner = render_banner(texts, ack_url="/.well-known/auditproxy/acknowledge?t=x")
    result = benchmark(lambda: insert.inject(page, banner, max_bytes=8 * 1024 * 1024))
    assert result is not None  # an InjectResult or a SkipReason: never raises


@pytest.mark.parametrize("shape", sorted(_hostile().decoder_shapes(100, 100)))
def test_decode_hostile(benchmark, hostile_size: int, shape: str) -> None:
    """`decode_body` on a hostile encoding: linear, stopped at the bound."""
    from auditproxy.notice.decode import decode_body

    coding, body = _hostile().decoder_shapes(hostile_size, 4 * hostile_size)[shape]
    result = benchmark(lambda: decode_body(body, coding, hostile_size))
    assert result is not None
