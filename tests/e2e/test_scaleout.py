"""Past one process: two `auditproxy run` instances behind HAProxy, sharing Redis.

The stack, all on 127.0.0.1 with free ports, started once for the module:

    ProxyClient --> HAProxy (deploy/haproxy/haproxy.cfg, mode tcp, /healthz checks)
                      |-- auditproxy run A --|
                      |-- auditproxy run B --+--> Upstream (the test "internet")
                                  \\----+----/
                                  redis-server (the shared notice state)

HAProxy's configuration is the shipped file with the test's addresses put in (bind, server
lines, no chroot/user/daemon). A and B share the pseudonym key (so a person has one state
key on both) and use the test policy with the identity header trusted from 127.0.0.1: each
test plays new people with `X-Authenticated-User`, since behind HAProxy in TCP mode every
connection comes from HAProxy's address. Redis runs with `?retry_after=1`, so an instance
tries it again a second after a fault.

Needs Debian's `redis-server` and `haproxy` (.ci/run installs them) and the `redis` client.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import CertAuthority, ProxyClient, Response, Upstream
from support.haproxy import SHIPPED_HAPROXY, HAProxy, fetch, start_haproxy
from support.notice import DOCUMENT
from support.paths import POLICIES, REPO
from support.proxy import AuditProxyProcess
from support.redis import RedisServer

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="needs redis-server: apt-get install --no-install-recommends redis-server",
    ),
    pytest.mark.skipif(
        shutil.which("haproxy") is None,
        reason="needs HAProxy: apt-get install --no-install-recommends haproxy",
    ),
]

TEMPLATE_UNIT = REPO / "deploy" / "systemd" / "auditproxy@.service"
IDENTITY_HEADER = "X-Authenticated-User"  # the test policy's identity.header
PAGE = "http://www.facebook.com/"  # monitored: the notice, once a day per person and site
BANNER = b'id="auditproxy-notice"'


# ------------------------------------------------------------------------------ the stack


@dataclass
class Stack:
    redis: RedisServer
    a: AuditProxyProcess
    b: AuditProxyProcess
    haproxy: HAProxy

    @property
    def proxies(self) -> tuple[AuditProxyProcess, AuditProxyProcess]:
        return self.a, self.b

    @property
    def named(self) -> dict[str, AuditProxyProcess]:
        return {"a": self.a, "b": self.b}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, test_ca: CertAuthority) -> Iterator[Stack]:
    pytest.importorskip("redis", reason="pip install 'auditproxy[redis]'")
    tmp = tmp_path_factory.mktemp("scaleout")
    policy = tmp / "policy.yaml"
    text = (POLICIES / "small.yaml").read_text(encoding="utf-8")
    policy.write_text(
        text.replace("trusted_proxies: [10.9.9.9/32]", "trusted_proxies: [127.0.0.1/32]")
    )
    assert "127.0.0.1/32" in policy.read_text()
    key = tmp / "pseudonym.key"  # one key for all instances: one state key per person
    key.write_text(uuid.uuid4().hex + uuid.uuid4().hex + "\n")
    key.chmod(0o600)
    upstream_ca = test_ca.write_ca(tmp)
    with contextlib.ExitStack() as cleanup:
        upstream = cleanup.enter_context(Upstream(test_ca))
        redis = RedisServer(tmp).start()
        cleanup.callback(redis.stop)
        state = redis.url(timeout=0.1, retry_after=1)
        proxies = []
        for name in "ab":
            (tmp / name).mkdir()
            proxy = AuditProxyProcess(
                tmp / name,
                ["--state", state, "--pseudonym-key", str(key)],
                policy=policy,
                upstream_mode=upstream.proxy_mode,
                upstream_ca=upstream_ca,
                start=False,
            )
            proxies.append(cleanup.enter_context(proxy))
        starting = [threading.Thread(target=p.start) for p in proxies]  # in parallel
        for t in starting:
            t.start()
        for t in starting:
            t.join(60)
        for proxy in proxies:
            assert proxy.process is not None and proxy.process.poll() is None, proxy.stderr()
            assert proxy.metric("auditproxy_state_backend", backend="redis") == 1, proxy.stderr()
        haproxy = start_haproxy(tmp, proxies)
        cleanup.callback(haproxy.stop)
        haproxy.wait_for({"a": "UP", "b": "UP"})
        yield Stack(redis, proxies[0], proxies[1], haproxy)


# ------------------------------------------------------------------------------ helpers


def person(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def visit(port: int, who: str, url: str = PAGE) -> Response:
    """A person's top-level page through the proxy at `port` (a new connection)."""
    client = ProxyClient("127.0.0.1", port, timeout=15)
    return client.get(url, headers={**DOCUMENT, IDENTITY_HEADER: who})


def has_banner(response: Response) -> bool:
    return BANNER in response.decoded()


def records_of(proxy: AuditProxyProcess, who: str, action: str | None = None) -> list[dict]:
    return [
        r
        for r in proxy.records()
        if r.get("user.name") == who and (action is None or r["event.action"] == action)
    ]


def served_by(stack: Stack, who: str, count: int, timeout: float = 10) -> dict[str, int]:
    """How many of `who`'s requests each instance logged, once `count` are logged in all."""
    deadline = time.monotonic() + timeout
    while True:
        seen = {n: len(records_of(p, who, "access")) for n, p in stack.named.items()}
        if sum(seen.values()) >= count or time.monotonic() > deadline:
            return seen
        time.sleep(0.05)


def total(proxy: AuditProxyProcess, name: str, **labels: str) -> float:
    """The sum of every sample of `name` (matching `labels`) on the proxy's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = fetch(proxy.metrics_url())
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def race(ports: list[int], who: str) -> list[Response]:
    """Everyone's first page at once: one thread per port, released by a barrier."""
    barrier = threading.Barrier(len(ports))
    answers: list[Response | BaseException] = [RuntimeError("no answer")] * len(ports)

    def go(index: int, port: int) -> None:
        client = ProxyClient("127.0.0.1", port, timeout=15)
        try:
            barrier.wait(timeout=10)
            answers[index] = client.get(PAGE, headers={**DOCUMENT, IDENTITY_HEADER: who})
        except BaseException as e:  # reported below, in the test's thread
            answers[index] = e

    threads = [threading.Thread(target=go, args=(i, p)) for i, p in enumerate(ports)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
    return answers  # type: ignore[return-value]


# ------------------------------------------------------------------------------ tests


def test_the_shipped_haproxy_configuration_is_valid() -> None:
    result = subprocess.run(
        ["haproxy", "-c", "-f", str(SHIPPED_HAPROXY)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def template_command(instance: int) -> list[str]:
    """The `auditproxy run` arguments the systemd template gives instance N (as its shell
    would run them), with AUDITPROXY_STATE holding a Redis URL with options."""
    unit = re.sub(r"\\\n\s*", " ", TEMPLATE_UNIT.read_text())
    (line,) = [v for v in unit.splitlines() if v.startswith("ExecStart=")]
    argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", str(instance)))
    assert argv[:2] == ["/bin/sh", "-c"]
    script = (
        argv[2].replace("$$", "$").replace("exec /opt/auditproxy/bin/auditproxy", "printf '%s\\n'")
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "AUDITPROXY_STATE": "redis://r:6379/0?timeout=0.05&retry_after=2",
    }
    env["AUDITPROXY_OPTIONS"] = "--set proxyauth=@/etc/auditproxy/htpasswd"
    result = subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_systemd_template_and_haproxy_agree_on_ports() -> None:
    servers = re.findall(
        r"^\s*server \S+ 127\.0\.0\.1:(\d+) .*\bport (\d+)", SHIPPED_HAPROXY.read_text(), re.M
    )
    assert len(servers) >= 2
    for n, (port, health) in enumerate(servers, start=1):
        argv = template_command(n)
        flags = dict(zip(argv[1::2], argv[2::2], strict=False))
        assert argv[0] == "run"
        assert (flags["--listen-host"], flags["--listen-port"]) == ("127.0.0.1", port)
        assert flags["--metrics-port"] == health
        assert flags["--state"] == "redis://r:6379/0?timeout=0.05&retry_after=2"
        assert flags["--access-log"] == f"/var/log/auditproxy/access-{n}.log"
        assert argv[-2:] == ["--set", "proxyauth=@/etc/auditproxy/htpasswd"]
    with pytest.raises(AssertionError, match="number from 1 to 99"):
        template_command(0)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_systemd_template_verifies(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "auditproxy").exists():
        pytest.skip("the auditproxy command is not installed")
    text = TEMPLATE_UNIT.read_text().replace("/opt/auditproxy/bin", str(bin_dir))
    (tmp_path / "auditproxy@.service").write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "auditproxy@1.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    problems = [line for line in result.stderr.splitlines() if "auditproxy@" in line]
    assert result.returncode == 0 and not problems, result.stderr


def test_first_visit_on_one_instance_then_none_on_the_other(stack: Stack) -> None:
    who = person("first")
    first = visit(stack.haproxy.port, who)
    assert first.status == 200 and has_banner(first)
    where = served_by(stack, who, 1)
    assert sorted(where.values()) == [0, 1], where
    first_instance = max(where, key=where.__getitem__)
    # Through HAProxy again until the other instance serves one of the person's pages.
    for attempt in range(2, 9):
        again = visit(stack.haproxy.port, who, PAGE + f"page-{attempt}")
        assert again.status == 200 and not has_banner(again), f"second banner on {attempt}"
        where = served_by(stack, who, attempt)
        if all(where.values()):
            break
    else:
        pytest.fail(f"HAProxy sent every page to instance {first_instance}: {where}")
    shown = [len(records_of(p, who, "notice-shown")) for p in stack.proxies]
    assert sorted(shown) == [0, 1]


@pytest.mark.clock
def test_a_race_of_first_visits_through_both_instances_shows_one_banner(stack: Stack) -> None:
    ports = [stack.a.port] * 3 + [stack.b.port] * 3 + [stack.haproxy.port] * 2
    for _ in range(3):
        who = person("race")
        answers = race(ports, who)
        assert [r.status for r in answers] == [200] * len(ports)
        assert sum(has_banner(r) for r in answers) == 1, who
        served_by(stack, who, len(ports))  # every record written
        shown = sum(len(records_of(p, who, "notice-shown")) for p in stack.proxies)
        assert shown == 1, f"{shown} notice-shown records for {who}"


def test_metrics_and_logs_add_up_across_instances(stack: Stack) -> None:
    who = person("count")
    before = {n: total(p, "auditproxy_requests_total") for n, p in stack.named.items()}
    sent = 24
    for n in range(sent):
        url = PAGE if n % 2 else f"http://www.example.org/{n}"  # monitored and unclassified
        assert visit(stack.haproxy.port, who, url).status == 200
    logged = served_by(stack, who, sent)
    after = {n: total(p, "auditproxy_requests_total") for n, p in stack.named.items()}
    counted = {n: after[n] - before[n] for n in after}
    assert sum(counted.values()) == sent
    assert counted == logged, "an instance's log and its metrics disagree"
    assert all(counted.values()), f"HAProxy used one instance only: {counted}"


def test_a_hung_redis_holds_up_no_traffic_and_is_counted(stack: Stack) -> None:
    errors_before = sum(total(p, "auditproxy_errors_total", stage="state") for p in stack.proxies)
    during = [person("hung") for _ in range(6)]
    stack.redis.pause()  # SIGSTOP: connections are accepted, nothing is answered
    try:
        for who in during:
            page = visit(stack.haproxy.port, who)
            assert page.status == 200 and has_banner(page)  # from each instance's memory
        errors = sum(total(p, "auditproxy_errors_total", stage="state") for p in stack.proxies)
        assert errors > errors_before
        on_memory = [total(p, "auditproxy_state_backend", backend="memory") for p in stack.proxies]
        assert 1 in on_memory
    finally:
        stack.redis.resume()
    assert_sharing_resumes(stack)


def test_a_stopped_redis_holds_up_no_traffic_and_sharing_resumes_after_restart(
    stack: Stack,
) -> None:
    errors_before = sum(total(p, "auditproxy_errors_total", stage="state") for p in stack.proxies)
    outage = person("outage")
    stack.redis.stop()
    try:
        page = visit(stack.a.port, outage)
        assert page.status == 200 and has_banner(page)
        for n in range(6):
            assert visit(stack.haproxy.port, person("down"), PAGE + str(n)).status == 200
        errors = sum(total(p, "auditproxy_errors_total", stage="state") for p in stack.proxies)
        assert errors > errors_before
        assert stack.a.metric("auditproxy_state_backend", backend="memory") == 1
    finally:
        stack.redis.start()  # same port, empty: no persistence
    assert_sharing_resumes(stack)
    # A handed the claim it made in memory to Redis when it returned: B knows.
    assert not has_banner(visit(stack.b.port, outage))


def assert_sharing_resumes(stack: Stack) -> None:
    """A new person's first visit through A, then B: one banner (after the retry delay)."""
    time.sleep(1.2)  # retry_after=1
    who = person("resumed")
    assert has_banner(visit(stack.a.port, who))
    assert not has_banner(visit(stack.b.port, who))
    for proxy in stack.proxies:
        assert proxy.metric("auditproxy_state_backend", backend="redis") == 1


def test_health_checks_take_a_stopped_instance_out(stack: Stack) -> None:
    """Last: leaves B stopped."""
    stack.b.stop()
    stack.haproxy.wait_for({"a": "UP", "b": "DOWN"})
    who = person("failover")
    for n in range(6):
        assert visit(stack.haproxy.port, who, PAGE + str(n)).status == 200
    assert served_by(stack, who, 6) == {"a": 6, "b": 0}
