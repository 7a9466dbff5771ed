"""The add-on's hooks, driven by mitmproxy's own test helpers (no sockets)."""

from __future__ import annotations

import asyncio
import functools
import socket
from types import SimpleNamespace

import pytest
from mitmproxy import exceptions, http
from mitmproxy.net.http.http1.assemble import assemble_response_head
from mitmproxy.options import Options
from mitmproxy.proxy.context import Context
from mitmproxy.test import taddons, tflow, tutils
from mitmproxy.tls import ClientHelloData

from auditproxy.addon import AuditProxy, Pipeline
from auditproxy.connection_map import ConnectionMap
from auditproxy.decide.decision import Engine
from auditproxy.flowstate import KEY
from auditproxy.policy.model import Action
from auditproxy.runtime import Runtime
from auditproxy.stages import Pending, Stage, guarded
from support.harness import harness_for, sample
from support.paths import POLICIES


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


# --- configuration -----------------------------------------------------------------------


def test_default_policy_and_key_in_confdir(tmp_path):
    addon = AuditProxy()
    with taddons.context(addon, options=Options(confdir=str(tmp_path))) as tctx:
        tctx.configure(addon, auditproxy_access_log=str(tmp_path / "a.log"))
        assert addon.engine is not None
        assert addon.engine.policy.name == "Policy on the Use of Electronic Networks"
        key = tmp_path / "auditproxy-pseudonym.key"
        assert key.exists() and key.stat().st_mode & 0o777 == 0o600
        assert sample(addon, "auditproxy_policy_last_reload_successful") == 1
        addon.runtime.done()


def test_broken_policy_at_start_is_an_options_error_with_lines(harness):
    with pytest.raises(exceptions.OptionsError) as info:
        harness.tctx.configure(harness.addon, auditproxy_policy=str(POLICIES / "broken.yaml"))
    assert "broken.yaml:3: timezone: unknown time zone" in str(info.value)
    assert "broken.yaml:8:" in str(info.value)
    assert harness.addon.engine.policy.name == "Test Policy"  # the good one stays


def test_missing_policy_and_bad_options(harness, tmp_path):
    with pytest.raises(exceptions.OptionsError, match="cannot read policy"):
        harness.tctx.configure(harness.addon, auditproxy_policy=str(tmp_path / "none.yaml"))
    with pytest.raises(exceptions.OptionsError, match="cannot open access log"):
        harness.tctx.configure(harness.addon, auditproxy_access_log=str(tmp_path / "x" / "y"))
    with pytest.raises(exceptions.OptionsError, match=r"between 0\.05 and 3600"):
        harness.tctx.configure(harness.addon, auditproxy_reload_interval="soon")


def test_explicit_key_path_is_never_created(harness, tmp_path):
    harness.policy_path.write_text(
        harness.policy_path.read_text().replace("log_as: name", "log_as: pseudonym")
    )
    with pytest.raises(exceptions.OptionsError, match="does not exist"):
        harness.tctx.configure(
            harness.addon,
            auditproxy_pseudonym_key=str(tmp_path / "typo.key"),
            auditproxy_policy=str(harness.policy_path),
        )
    assert not (tmp_path / "typo.key").exists()


# --- the request pipeline --------------------------------------------------------------


def test_monitored_request_one_record_and_metrics(harness):
    f = harness.flow(headers={"Cookie": "sid=SECRET", "Authorization": "Basic SECRET"})
    harness.exchange(f)
    harness.hooks.response(f)  # a second call must not log twice
    harness.hooks.error(f)
    decision = f.metadata[KEY].decision
    assert (decision.match.site, decision.action) == ("facebook", Action.MONITOR)
    (record,) = harness.records()
    assert record["event.action"] == "access"
    assert record["labels.site"] == "facebook"
    assert record["url.path"] == "/feed"
    assert record["http.response.status_code"] == 200
    assert record["http.response.body.bytes"] == len(b"<html>ok</html>")
    head = len(assemble_response_head(f.response))  # what mitmproxy writes to HTTP/1 clients
    assert record["http.response.bytes"] == head + len(b"<html>ok</html>")
    assert "SECRET" not in harness.log_path.read_text()
    assert (
        sample(
            harness.addon,
            "auditproxy_requests_total",
            category="social",
            site="facebook",
            action="monitor",
            status_class="2xx",
        )
        == 1
    )
    assert sample(harness.addon, "auditproxy_response_bytes_total", category="social") == 15
    assert sample(harness.addon, "auditproxy_log_records_total", outcome="written") == 1
    assert sample(harness.addon, "auditproxy_daily_users", category="social") == 1
    assert (
        sample(harness.addon, "auditproxy_request_duration_seconds_count", category="social") == 1
    )
    assert sample(harness.addon, "auditproxy_hook_duration_seconds_count", hook="response") == 2


def test_block_answers_with_the_policy_page(harness):
    f = harness.flow("https://www.malware.test/x")
    harness.hooks.requestheaders(f)
    assert f.response.status_code == 403
    assert b"This site is blocked" in f.response.content
    assert f.response.headers["Cache-Control"] == "no-store"
    harness.hooks.response(f)
    (record,) = harness.records()
    assert (record["event.action"], record["labels.action"]) == ("blocked", "block")


def test_client_outside_the_cidrs_is_refused(harness):
    f = harness.flow(client="203.0.113.7")
    harness.hooks.requestheaders(f)
    assert f.response.status_code == 403
    assert b"not available from your network" in f.response.content
    harness.hooks.response(f)
    (record,) = harness.records()
    assert record["labels.action"] == "refuse" and record["event.action"] == "blocked"
    assert (
        sample(
            harness.addon,
            "auditproxy_requests_total",
            category="social",
            site="facebook",
            action="refuse",
            status_class="4xx",
        )
        == 1
    )


def test_refused_connect_is_answered_and_logged_once(harness):
    request = http.Request.make("CONNECT", "http://www.facebook.com:443/")
    request.authority = "www.facebook.com:443"
    f = tflow.tflow(req=request)
    f.client_conn.peername = ("198.51.100.1", 5000)
    harness.hooks.http_connect(f)
    assert f.response.status_code == 403
    harness.hooks.error(f)
    assert [r["labels.action"] for r in harness.records()] == ["refuse"]


def test_mapped_ipv6_client_is_canonical(harness):
    f = harness.exchange(harness.flow(client="::ffff:10.1.2.3"))
    assert f.response.status_code == 200
    assert harness.records()[0]["source.ip"] == "10.1.2.3"


def test_identity_header_trusted_only_from_front_proxies_and_never_forwarded(harness):
    trusted = harness.flow(client="10.9.9.9", headers={"X-Authenticated-User": "alice"})
    harness.exchange(trusted)
    spoofed = harness.flow(client="10.1.2.3", headers={"X-Authenticated-User": "ceo"})
    harness.exchange(spoofed)
    assert "X-Authenticated-User" not in trusted.request.headers
    assert "X-Authenticated-User" not in spoofed.request.headers
    first, second = harness.records()
    assert (first["user.name"], first["labels.identity_source"]) == ("alice", "header")
    assert (second["user.name"], second["labels.identity_source"]) == ("10.1.2.3", "address")
    assert second["labels.identity_header"] == "ignored-untrusted-client"


def test_proxy_auth_user_never_password(harness):
    f = harness.flow()
    f.metadata["proxyauth"] = ("bob", "hunter2")
    harness.exchange(f)
    assert harness.records()[0]["user.name"] == "bob"
    assert "hunter2" not in harness.log_path.read_text()


def test_answered_before_us_is_logged_not_enforced(harness):
    f = harness.flow("http://www.malware.test/")
    f.response = tutils.tresp(status_code=407, content=b"auth")
    harness.hooks.requestheaders(f)
    assert f.response.status_code == 407  # left alone
    harness.hooks.response(f)
    assert harness.records()[0]["http.response.status_code"] == 407


def test_error_gets_one_record(harness):
    f = harness.flow("http://example.org/p?secret=1")
    harness.hooks.requestheaders(f)
    f.error = tflow.terr("Connection reset by peer at http://example.org/p?secret=1")
    harness.hooks.error(f)
    harness.hooks.error(f)
    (record,) = harness.records()
    assert record["event.outcome"] == "failure"
    assert "secret" not in record["error.message"]
    assert "http.response.status_code" not in record


def test_streamed_response_bytes_are_counted(harness):
    f = harness.flow("http://example.org/big.iso")
    harness.hooks.requestheaders(f)
    f.response = tutils.tresp(content=None)
    f.response.stream = True
    harness.hooks.responseheaders(f)
    for chunk in (b"a" * 1000, b"b" * 500, b""):
        assert f.response.stream(chunk) == chunk
    harness.hooks.response(f)
    record = harness.records()[0]
    assert record["http.response.body.bytes"] == 1500
    assert record["http.response.bytes"] == len(assemble_response_head(f.response)) + 1500


# --- tunnels ----------------------------------------------------------------------------


def client_hello(harness, sni: str | None, connect_host: str | None, client="10.1.2.3"):
    f = harness.flow(client=client)
    context = Context(f.client_conn, harness.tctx.options)
    context.server.address = (connect_host, 443) if connect_host else None
    return ClientHelloData(context, SimpleNamespace(sni=sni))


def test_bypass_tunnel_is_not_decrypted_and_logged_host_port_only(harness):
    data = client_hello(harness, "www.bank.test", "www.bank.test")
    harness.hooks.tls_clienthello(data)
    assert data.ignore_connection is True
    (record,) = harness.records()
    assert record["event.action"] == "tunnel"
    assert (record["url.domain"], record["url.port"]) == ("www.bank.test", 443)
    assert "url.path" not in record
    assert (
        sample(harness.addon, "auditproxy_tunnels_total", category="banking", action="bypass") == 1
    )


def test_monitored_tunnel_is_decrypted(harness):
    data = client_hello(harness, "www.facebook.com", "www.facebook.com")
    harness.hooks.tls_clienthello(data)
    assert data.ignore_connection is False
    assert harness.records() == []
    assert (
        sample(harness.addon, "auditproxy_tunnels_total", category="social", action="monitor") == 1
    )


def test_fronted_tunnel_is_decrypted(harness):
    # CONNECT to a monitored site with the bank's name in the TLS handshake: stricter wins.
    data = client_hello(harness, "bank.test", "www.facebook.com")
    harness.hooks.tls_clienthello(data)
    assert data.ignore_connection is False


def test_tunnel_identity_from_connect(harness):
    request = http.Request.make("CONNECT", "http://bank.test:443/")
    connect = tflow.tflow(req=request)
    connect.client_conn.peername = ("10.9.9.9", 5000)
    connect.request.headers["X-Authenticated-User"] = "carol"
    harness.hooks.http_connect(connect)
    assert "X-Authenticated-User" not in connect.request.headers
    context = Context(connect.client_conn, harness.tctx.options)
    context.server.address = ("bank.test", 443)
    harness.hooks.tls_clienthello(ClientHelloData(context, SimpleNamespace(sni="bank.test")))
    assert harness.records()[0]["user.name"] == "carol"


# --- fail open ---------------------------------------------------------------------------


def test_a_fault_lets_traffic_through_unchanged_and_is_counted(harness, monkeypatch):
    def explode(self, **_):
        raise RuntimeError("bug")

    monkeypatch.setattr(Engine, "decide", explode)
    f = harness.flow("http://www.malware.test/")
    harness.hooks.requestheaders(f)  # must not raise
    assert f.response is None  # not blocked: fail open
    assert sample(harness.addon, "auditproxy_errors_total", stage="classify") == 1
    harness.respond(f)
    assert sample(harness.addon, "auditproxy_errors_total", stage="log") == 1


def test_unwritable_log_is_counted_not_fatal(harness):
    harness.tctx.configure(harness.addon, auditproxy_access_log="/dev/full")
    harness.exchange(harness.flow())
    assert harness.addon.runtime.sink.backlog == 1
    harness.addon.runtime.sink.close()
    assert sample(harness.addon, "auditproxy_log_records_total", outcome="dropped") == 1


# --- hot reload --------------------------------------------------------------------------


async def settle(addon: AuditProxy, polls: int = 3) -> None:
    for _ in range(polls):
        await addon.runtime._check_policy()


async def test_hot_reload_valid_then_invalid(harness):
    addon = harness.addon
    old_sha = addon.engine.policy.sha256
    text = harness.policy_path.read_text()
    harness.policy_path.write_text(
        text.replace("bad: [malware.test]", "bad: [malware.test, evil.test]")
    )
    await settle(addon)
    assert addon.engine.policy.sha256 != old_sha
    assert addon.engine.classifier.classify("evil.test").action is Action.BLOCK
    assert sample(addon, "auditproxy_policy_reloads_total", result="success") == 1
    good_sha = addon.engine.policy.sha256

    harness.policy_path.write_text(text.replace("action: monitor", "action: watch"))
    await settle(addon)
    assert addon.engine.policy.sha256 == good_sha  # the last good policy stays
    assert sample(addon, "auditproxy_policy_reloads_total", result="failure") == 1
    assert sample(addon, "auditproxy_policy_last_reload_successful") == 0
    info = addon.metrics.registry.get_sample_value(
        "auditproxy_policy_info", {"name": "Test Policy", "sha256": good_sha}
    )
    assert info == 1

    harness.policy_path.unlink()
    await settle(addon)
    assert sample(addon, "auditproxy_policy_reloads_total", result="failure") == 2
    assert addon.engine.policy.sha256 == good_sha

    harness.policy_path.write_text(text)
    await settle(addon)
    assert addon.engine.policy.sha256 == old_sha
    assert sample(addon, "auditproxy_policy_last_reload_successful") == 1


async def test_touch_without_change_is_not_a_reload(harness):
    harness.policy_path.write_text(harness.policy_path.read_text())
    harness.policy_path.touch()
    await settle(harness.addon)
    assert sample(harness.addon, "auditproxy_policy_reloads_total", result="success") == 0


async def test_running_starts_maintenance_and_metrics(harness, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    harness.tctx.configure(harness.addon, auditproxy_metrics_port=port)
    harness.hooks.running()
    try:
        assert harness.addon.runtime.server is not None
        assert harness.addon.runtime.server.address[1] == port
        await asyncio.sleep(0.2)
        assert harness.addon.runtime.heartbeat.age() < 1
    finally:
        harness.hooks.done()
    assert harness.addon.runtime.server is None


async def test_sighup_rereads_policy_and_key_even_if_unchanged(harness, tmp_path):
    key = tmp_path / "k.key"
    key.write_text("11" * 32)
    key.chmod(0o600)
    harness.policy_path.write_text(
        harness.policy_path.read_text().replace("log_as: name", "log_as: pseudonym")
    )
    harness.tctx.configure(
        harness.addon, auditproxy_pseudonym_key=str(key), auditproxy_policy=str(harness.policy_path)
    )
    before = harness.addon.engine.pseudonymize.key_id
    key.write_text("22" * 32)  # rotated
    harness.addon.runtime._on_sighup()
    await settle(harness.addon)
    assert harness.addon.engine.pseudonymize.key_id != before


def test_response_head_size_is_what_mitmproxy_writes_in_http1():
    """HTTP/1: the status line and headers as sent. HTTP/2 (headers compressed on the
    wire): the same head in the HTTP/1.1 form mitmproxy would write (README)."""
    from auditproxy.stages import head_size

    request = tutils.treq()
    response = tutils.tresp(reason=b"Fine")
    assert head_size(request, response) == len(assemble_response_head(response))
    h2 = tutils.tresp(http_version=b"HTTP/2.0", reason=b"")
    as_http1 = h2.copy()
    as_http1.http_version, as_http1.reason = "HTTP/1.1", "OK"
    assert head_size(tutils.treq(http_version=b"HTTP/2.0"), h2) == len(
        assemble_response_head(as_http1)
    )


# --- the pipeline ------------------------------------------------------------------------


class _Stage(Stage):
    """A stage that notes its calls in a journal and fails or waits when told to."""

    def __init__(self, runtime: Runtime, name: str, journal: list[str], fail: str = "") -> None:
        super().__init__(runtime, ConnectionMap())
        self.name, self.journal, self.fail = name, journal, fail

    @guarded("classify")
    def requestheaders(self, flow: object) -> Pending:
        self.journal.append(self.name)
        if self.fail == "now":
            raise RuntimeError("bug")
        if self.fail in ("later", "wait"):
            return self._later()
        return None

    async def _later(self) -> None:
        await asyncio.sleep(0)
        self.journal.append(f"{self.name} done")
        if self.fail == "later":
            raise RuntimeError("bug, off the loop")


def _errors(runtime: Runtime) -> float:
    return runtime.metrics.registry.get_sample_value(
        "auditproxy_errors_total", {"stage": "classify"}
    )


def _hook_count(runtime: Runtime) -> float:
    return (
        runtime.metrics.registry.get_sample_value(
            "auditproxy_hook_duration_seconds_count", {"hook": "requestheaders"}
        )
        or 0.0
    )


def test_the_pipeline_guards_each_stage_as_its_decorator_does() -> None:
    """A stage's fault is counted once under its stage name, and the next stage runs: the
    same as calling the `guarded` methods one after the other; the hook is timed once."""
    runtime, journal = Runtime(), []
    stages = [
        _Stage(runtime, n, journal, fail) for n, fail in (("a", "now"), ("b", ""), ("c", "now"))
    ]
    pipeline = Pipeline(runtime, stages)
    assert pipeline.requestheaders(object()) is None
    assert journal == ["a", "b", "c"]
    assert _errors(runtime) == 2 and _hook_count(runtime) == 1
    stages[1].requestheaders(object())  # called directly: the decorator's guard
    stages[0].requestheaders(object())
    assert _errors(runtime) == 3


async def test_work_off_the_loop_is_guarded_and_the_later_stages_follow_it() -> None:
    runtime, journal = Runtime(), []
    stages = [
        _Stage(runtime, n, journal, fail) for n, fail in (("a", "later"), ("b", "wait"), ("c", ""))
    ]
    pending = Pipeline(runtime, stages).requestheaders(object())
    assert pending is not None and journal == ["a"]  # the rest waits for a's work
    await pending
    assert journal == ["a", "a done", "b", "b done", "c"]
    assert _errors(runtime) == 1 and _hook_count(runtime) == 1


def test_a_decorator_over_guarded_is_not_unwrapped() -> None:
    calls: list[str] = []

    def traced(method):
        @functools.wraps(method)
        def run(self, flow):
            calls.append("traced")
            return method(self, flow)

        return run

    class Traced(_Stage):
        @traced
        @guarded("classify")
        def requestheaders(self, flow: object) -> Pending:
            return super().requestheaders.__wrapped__(self, flow)

    runtime, journal = Runtime(), []
    Pipeline(runtime, [Traced(runtime, "t", journal, "now")]).requestheaders(object())
    assert calls == ["traced"] and journal == ["t"] and _errors(runtime) == 1
