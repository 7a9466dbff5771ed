"""The core, end to end: a real `auditproxy run`, a real upstream, real clients."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from support import ProxyClient, Reply, free_port, wait_for_port
from support.paths import EXAMPLE_POLICY, POLICIES, REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

BRIEF_FIELDS = {
    "@timestamp",
    "event.dataset",
    "event.action",
    "event.category",
    "event.outcome",
    "event.duration",
    "url.scheme",
    "url.domain",
    "url.port",
    "http.request.method",
    "http.response.status_code",
    "http.response.bytes",
    "rule.ruleset",
    "rule.version",
    "rule.name",
    "labels.category",
    "labels.site",
    "labels.action",
    "event.sequence",
    "event.hash",
}


def test_http_request_gives_exactly_one_record_and_moves_metrics(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port)
    response = client.get(
        "http://www.facebook.com/groups/x?token=SECRET",
        headers={"Cookie": "c_user=SECRET", "Authorization": "Bearer SECRET"},
    )
    assert response.status == 200
    (seen,) = upstream.wait_for(1)
    assert (seen.host, seen.path) == ("www.facebook.com", "/groups/x?token=SECRET")
    (record,) = proxy.wait_for_records(1)
    time.sleep(0.3)
    assert len(proxy.records()) == 1  # exactly one
    assert set(record) >= BRIEF_FIELDS
    assert record["user.name"] == "127.0.0.1"
    assert (record["labels.category"], record["labels.site"], record["labels.action"]) == (
        "social",
        "facebook",
        "monitor",
    )
    assert record["url.path"] == "/groups/x"
    head = f"{response.http_version} {response.status} {response.reason}\r\n".encode()
    head += response.headers.encode() + b"\r\n"  # the status line and headers as received
    assert record["http.response.body.bytes"] == len(response.body)
    assert record["http.response.bytes"] == len(head) + len(response.body)  # ECS: both
    assert "SECRET" not in proxy.access_log.read_text()
    labels = dict(category="social", site="facebook", action="monitor", status_class="2xx")
    assert proxy.metric("auditproxy_requests_total", **labels) == 1
    assert proxy.metric("auditproxy_log_records_total", outcome="written") == 1
    assert proxy.metric("auditproxy_hook_duration_seconds_count", hook="requestheaders") == 1


def test_https_is_decrypted_and_logged(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, ca_file=proxy.ca_file)
    response = client.get("https://twitter.com/home")
    assert response.status == 200
    assert "mitmproxy" in response.peer_cert.issuer.rfc4514_string()
    (record,) = proxy.wait_for_records(1)
    assert (record["url.scheme"], record["url.port"], record["labels.site"]) == ("https", 443, "x")
    assert record["tls.client.server_name"] == "twitter.com"
    assert proxy.metric("auditproxy_tunnels_total", category="social", action="monitor") == 1


def test_bypass_is_not_decrypted(start_proxy, e2e_policy, upstream, upstream_ca_file):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, ca_file=upstream_ca_file)
    response = client.get("https://online.bank.test/accounts?id=42")
    assert response.status == 200
    # The client saw the origin's own certificate: the proxy never decrypted.
    assert response.peer_fingerprint == upstream.ca.leaf("online.bank.test").fingerprint
    (tunnel,) = upstream.wait_for_tunnels(1)
    assert tunnel.host == "online.bank.test"
    (record,) = proxy.wait_for_records(1)
    assert record["event.action"] == "tunnel"
    assert (record["url.domain"], record["url.port"]) == ("online.bank.test", 443)
    assert not {"url.path", "http.request.method", "http.response.status_code"} & set(record)
    assert "accounts" not in proxy.access_log.read_text()
    assert proxy.metric("auditproxy_tunnels_total", category="banking", action="bypass") == 1


def test_block_page_over_http_and_https(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, ca_file=proxy.ca_file)
    for url in ("http://malware.test/", "https://www.malware.test/dl"):
        response = client.get(url)
        assert response.status == 403
        assert b"This site is blocked" in response.body
        assert b"Test Policy" in response.body
        assert b"https://intranet.example.test/policy" in response.body
    records = proxy.wait_for_records(2)
    assert [r["event.action"] for r in records] == ["blocked", "blocked"]
    assert upstream.requests == []  # nothing reached the origin
    labels = dict(category="malware", site="bad", action="block", status_class="4xx")
    assert proxy.metric("auditproxy_requests_total", **labels) == 2


def test_client_outside_the_policy_is_refused(start_proxy, page_policy, upstream):
    """With `clients.refuse: page`; the default (closed as it connects) is in
    tests/e2e/test_hostile.py."""
    proxy = start_proxy(policy=page_policy)
    outsider = ProxyClient("127.0.0.1", proxy.port, source_address="127.0.0.2")
    plain = outsider.get("http://www.facebook.com/")
    assert plain.status == 403 and b"not available from your network" in plain.body
    tunnel = outsider.connect("www.facebook.com", 443)
    assert tunnel.status == 403
    records = proxy.wait_for_records(2)
    assert {r["labels.action"] for r in records} == {"refuse"}
    assert {r["event.action"] for r in records} == {"blocked"}
    assert upstream.requests == [] and upstream.tunnels == []
    assert (
        proxy.metric(
            "auditproxy_requests_total",
            category="social",
            site="facebook",
            action="refuse",
            status_class="4xx",
        )
        == 2
    )


def test_proxy_authentication_logs_the_user_never_the_password(start_proxy, e2e_policy, upstream):
    proxy = start_proxy("--set", "proxyauth=alice:s3cr3t-pw", policy=e2e_policy)
    anonymous = ProxyClient("127.0.0.1", proxy.port)
    assert anonymous.get("http://example.org/").status == 407
    alice = ProxyClient(
        "127.0.0.1", proxy.port, ca_file=proxy.ca_file, proxy_auth=("alice", "s3cr3t-pw")
    )
    assert alice.get("http://example.org/a").status == 200
    assert alice.get("https://x.com/b").status == 200
    records = proxy.wait_for_records(3)
    assert [r.get("user.name") for r in records] == ["127.0.0.1", "alice", "alice"]
    assert records[0]["http.response.status_code"] == 407
    text = proxy.access_log.read_text()
    assert "s3cr3t" not in text and "YWxpY2U" not in text  # nor its base64


def test_pseudonyms_by_default_and_the_investigator_can_match(start_proxy, upstream, tmp_path):
    proxy = start_proxy("--set", "proxyauth=alice:pw")  # the example policy: pseudonyms
    client = ProxyClient("127.0.0.1", proxy.port, proxy_auth=("alice", "pw"))
    assert client.get("http://www.linkedin.com/feed/").status == 200
    (record,) = proxy.wait_for_records(1)
    assert "user.name" not in record and "alice" not in proxy.access_log.read_text()
    key = proxy.confdir / "auditproxy-pseudonym.key"
    assert key.stat().st_mode & 0o777 == 0o600
    found = subprocess.run(
        [sys.executable, "-m", "auditproxy.cli", "pseudonym", "--key", str(key), "alice"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert record["user.hash"] in found.stdout
    assert record["labels.user_key_id"] in found.stdout


def test_origin_errors_are_logged_once(start_proxy, e2e_policy, upstream):
    upstream.route("broken.example", "/", Reply.reset())
    proxy = start_proxy(policy=e2e_policy)
    response = ProxyClient("127.0.0.1", proxy.port).get("http://broken.example/")
    assert response.status == 502
    (record,) = proxy.wait_for_records(1)
    assert record["labels.category"] == "other"
    # The origin never answered: no status of its own, the error instead.
    assert "http.response.status_code" not in record
    assert record["event.outcome"] == "failure" and record["error.message"]
    labels = dict(category="other", site="other", action="log", status_class="none")
    assert proxy.metric("auditproxy_requests_total", **labels) == 1


def test_hot_reload_valid_and_invalid_while_traffic_flows(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    stop = threading.Event()
    failures: list[str] = []
    statuses: list[int] = []

    def traffic() -> None:
        session = ProxyClient("127.0.0.1", proxy.port).session()
        try:
            while not stop.is_set():
                try:
                    statuses.append(session.get("http://news.example/").status)
                except Exception as e:  # any dropped connection is a failure
                    failures.append(repr(e))
                time.sleep(0.01)
        finally:
            session.close()

    worker = threading.Thread(target=traffic)
    worker.start()
    try:
        original = e2e_policy.read_text()
        # A valid change: news.example becomes blocked.
        e2e_policy.write_text(
            original.replace("bad: [malware.test]", "bad: [malware.test, news.example]")
        )
        proxy.wait_for_metric("auditproxy_policy_reloads_total", 1, result="success")
        deadline = time.monotonic() + 5
        while 403 not in statuses[-5:] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 403 in statuses
        # An invalid change: logged with its line, counted, the last good policy stays.
        e2e_policy.write_text(original.replace("action: monitor", "action: monitr"))
        proxy.wait_for_metric("auditproxy_policy_reloads_total", 1, result="failure")
        assert proxy.metric("auditproxy_policy_last_reload_successful") == 0
        count = len(statuses)
        time.sleep(0.5)
        assert statuses[count:] and set(statuses[count:]) == {403}
    finally:
        stop.set()
        worker.join(10)
    assert failures == []
    assert f"{e2e_policy}:8: category 'social': action: unknown value 'monitr'" in proxy.stderr()
    assert "keeping Test Policy" in proxy.stderr()


def test_logrotate_without_restart(start_proxy, e2e_policy, upstream):
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port)
    client.get("http://one.example/")
    proxy.wait_for_records(1)
    rotated = proxy.access_log.with_suffix(".log.1")
    proxy.access_log.rename(rotated)
    time.sleep(0.5)  # the proxy notices within its reload interval (0.2 s here)
    client.get("http://two.example/")
    (record,) = proxy.wait_for_records(1)
    assert record["url.domain"] == "two.example"
    assert "one.example" in rotated.read_text()
    # SIGHUP reopens at once too (logrotate's postrotate may send it).
    proxy.access_log.rename(proxy.access_log.with_suffix(".log.2"))
    proxy.signal(signal.SIGHUP)
    time.sleep(0.3)
    client.get("http://three.example/")
    assert proxy.wait_for_records(1)[0]["url.domain"] == "three.example"


def test_health_endpoint(start_proxy, e2e_policy):
    import json
    import urllib.request

    proxy = start_proxy(policy=e2e_policy)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(proxy.metrics_url("/healthz"), timeout=5) as response:
        health = json.load(response)
    assert health["status"] == "ok" and health["policy"] == "Test Policy"


def test_broken_policy_refuses_to_start_with_line_numbers(tmp_path):
    from support.proxy import AuditProxyProcess

    proxy = AuditProxyProcess(tmp_path, policy=POLICIES / "broken.yaml", start=False)
    with proxy.stderr_path.open("wb") as err:
        result = subprocess.run(proxy.command, stderr=err, stdout=subprocess.DEVNULL, timeout=60)
    assert result.returncode == 1
    stderr = proxy.stderr()
    assert f"{POLICIES / 'broken.yaml'}:3: timezone: unknown time zone" in stderr


def test_mitmdump_script_loads_the_addon(tmp_path, upstream, upstream_ca_file):
    mitmdump = shutil.which("mitmdump") or str(Path(sys.executable).parent / "mitmdump")
    port = free_port()
    log = tmp_path / "access.log"
    command = [
        mitmdump,
        "-q",
        "--listen-host",
        "127.0.0.1",
        "--listen-port",
        str(port),
        "--mode",
        upstream.proxy_mode,
        "--set",
        f"confdir={tmp_path / 'conf'}",
        "-s",
        str(REPO / "addons" / "auditproxy_mitm.py"),
        "--set",
        f"auditproxy_policy={EXAMPLE_POLICY}",
        "--set",
        f"auditproxy_access_log={log}",
        "--set",
        "auditproxy_metrics_port=0",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        assert ProxyClient("127.0.0.1", port).get("http://www.reddit.com/r/ottawa").status == 200
        deadline = time.monotonic() + 10
        while not (log.exists() and log.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert '"labels.site":"reddit"' in log.read_text()
    finally:
        process.terminate()
        process.wait(10)
