"""The `Admit` stage's hooks, driven by mitmproxy's own test helpers (no sockets): who is
refused as they connect, what each connection's guard learns from the hooks, the options.
End to end, with real sockets: tests/e2e/test_hostile.py."""

from __future__ import annotations

import pytest
from mitmproxy import connection, exceptions
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from auditproxy.addon import Admit
from auditproxy.decide.guard import Phase
from support.harness import harness_for


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


@pytest.fixture
def admit(harness) -> Admit:
    (stage,) = [s for s in harness.addon.stages if isinstance(s, Admit)]
    return stage


def client(address: str) -> connection.Client:
    c = tflow.tclient_conn()
    c.peername = (address, 50000)
    return c


def page_mode(harness) -> None:
    text = harness.policy_path.read_text().replace(
        'allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]',
        'allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]\n  refuse: page',
    )
    path = harness.tmp / "page.yaml"
    path.write_text(text)
    harness.configure(auditproxy_policy=str(path))


def test_admit_runs_first(harness):
    assert isinstance(harness.addon.stages[0], Admit)


def test_an_outsider_is_refused_as_it_connects_and_recorded(harness, admit):
    outsider = client("192.0.2.7")
    harness.hooks.client_connected(outsider)
    assert outsider.error and "outside the policy's allowed networks" in outsider.error
    assert harness.metric("auditproxy_refusals_total", reason="client") == 1
    (record,) = harness.records("refused")
    assert record["labels.refusal"] == "client" and record["source.ip"] == "192.0.2.7"
    assert record["rule.ruleset"] == "Test Policy"
    harness.hooks.client_disconnected(outsider)
    assert harness.addon.runtime.admission.clients == 0  # never counted


def test_with_refuse_page_an_outsider_gets_the_page_per_request(harness, admit):
    page_mode(harness)
    outsider = client("192.0.2.7")
    harness.hooks.client_connected(outsider)
    assert outsider.error is None and admit.guards[outsider].phase is Phase.AWAIT
    f = harness.flow(client="192.0.2.7")
    f.client_conn = outsider
    harness.hooks.requestheaders(f)
    assert f.response is not None and f.response.status_code == 403


def test_staff_are_admitted_counted_and_released(harness, admit):
    staff = client("10.1.2.3")
    harness.hooks.client_connected(staff)
    assert staff.error is None
    runtime = harness.addon.runtime
    assert runtime.admission.clients == 1 and runtime.admission.per_address["10.1.2.3"] == 1
    assert harness.metric("auditproxy_client_connections") == 1
    harness.hooks.client_disconnected(staff)
    assert runtime.admission.clients == 0 and staff not in admit.guards


def test_the_per_address_cap_and_trusted_proxies(harness):
    harness.configure(auditproxy_max_connections_per_client=2)
    connected = [client("10.1.2.3") for _ in range(3)]
    for c in connected:
        harness.hooks.client_connected(c)
    assert [c.error is None for c in connected] == [True, True, False]
    front = [client("10.9.9.9") for _ in range(5)]  # the policy's trusted front proxy
    for c in front:
        harness.hooks.client_connected(c)
    assert all(c.error is None for c in front)
    assert harness.metric("auditproxy_refusals_total", reason="limit-address") == 1


def test_the_guard_follows_the_exchange(harness, admit):
    staff = client("10.1.2.3")
    harness.hooks.client_connected(staff)
    guard = admit.guards[staff]
    f = harness.flow(method="POST")
    f.client_conn = staff
    f.request.headers["content-length"] = "10"
    harness.hooks.requestheaders(f)
    assert guard.phase is Phase.BODY
    harness.hooks.request(f)
    assert guard.phase is Phase.WAIT
    harness.respond(f)
    assert guard.phase is Phase.AWAIT and guard.window == 60
    ws = harness.flow()
    ws.client_conn = staff
    harness.hooks.requestheaders(ws)
    harness.respond(ws, status=101, body=None)
    assert guard.phase is Phase.TUNNEL


def test_connect_tls_and_websockets_and_tcp(harness, admit):
    staff = client("10.1.2.3")
    harness.hooks.client_connected(staff)
    guard = admit.guards[staff]
    connect = harness.flow("http://www.facebook.com:443/", method="CONNECT")
    connect.client_conn = staff
    harness.hooks.http_connect(connect)
    assert guard.phase is Phase.AWAIT and guard.window == 10
    flow = tflow.ttcpflow()
    flow.client_conn = staff
    harness.hooks.tcp_start(flow)
    assert guard.phase is Phase.TUNNEL
    flow.messages = flow.messages * 20
    harness.hooks.tcp_message(flow)
    assert len(flow.messages) == Admit.KEEP_MESSAGES
    ws = tflow.twebsocketflow()
    ws.websocket.messages = ws.websocket.messages * 20
    harness.hooks.websocket_message(ws)
    assert len(ws.websocket.messages) == Admit.KEEP_MESSAGES


def test_no_server_connection_eats_into_the_reserve(harness):
    admission = harness.addon.runtime.admission
    staff = client("10.1.2.3")
    harness.hooks.client_connected(staff)
    server = tflow.tserver_conn()
    data = server_hooks.ServerConnectionHookData(server, staff)
    harness.hooks.server_connect(data)
    assert server.error is None
    admission.measured(admission.files_limit)  # everything is open
    other = tflow.tserver_conn()
    harness.hooks.server_connect(server_hooks.ServerConnectionHookData(other, staff))
    assert other.error and "reserve" in other.error
    assert harness.metric("auditproxy_refusals_total", reason="limit-files") == 1


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("auditproxy_head_timeout", "soon", "auditproxy_head_timeout must be seconds"),
        ("auditproxy_idle_timeout", "0", "auditproxy_idle_timeout must be seconds"),
        ("auditproxy_body_timeout", "nan", "auditproxy_body_timeout must be seconds"),
        ("auditproxy_head_max_bytes", 100, "auditproxy_head_max_bytes must be from 4096"),
        ("auditproxy_file_reserve", 1, "auditproxy_file_reserve must be from 16"),
        ("auditproxy_max_connections", -1, "auditproxy_max_connections must be from 0"),
        ("auditproxy_policy_max_bytes", 0, "auditproxy_policy_max_bytes must be positive"),
    ],
)
def test_bad_limits_stop_the_start(harness, option, value, message):
    with pytest.raises(exceptions.OptionsError, match=message):
        harness.configure(**{option: value})


def test_limits_apply_to_new_connections(harness, admit):
    harness.configure(auditproxy_head_timeout="2.5", auditproxy_head_max_bytes=8192)
    staff = client("10.1.2.3")
    harness.hooks.client_connected(staff)
    limits = admit.guards[staff].limits
    assert limits.head_timeout == 2.5 and limits.head_max_bytes == 8192


def test_readiness_from_the_runtime(harness):
    _, body = harness.addon.runtime.readiness()
    assert body["checks"]["policy"]["in_force"] == "Test Policy"
    assert body["checks"]["state"]["backend"] == "sqlite"
    assert body["checks"]["files"]["limit"] == harness.addon.runtime.admission.files_limit


def test_repeated_identity_headers_are_joined_by_mitmproxy(harness):
    """Pinned gap (SECURITY.md): mitmproxy joins repeated header fields with ", "; a
    trusted front proxy must send exactly one."""
    f = harness.flow(client="10.9.9.9")  # the test policy's trusted front proxy
    f.request.headers.add("X-Authenticated-User", "alice")
    f.request.headers.add("X-Authenticated-User", "bob")
    harness.exchange(f)
    (record,) = harness.records("access")
    assert record["user.name"] == "alice, bob"
