"""The `auditproxy` command, through its real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from auditproxy.cli import build_parser, main, mitmproxy_arguments
from support.paths import EXAMPLE_POLICY, POLICIES


def auditproxy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "auditproxy.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_valid_policies_exit_0():
    result = auditproxy("check", str(EXAMPLE_POLICY), str(POLICIES / "small.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{EXAMPLE_POLICY}: ok" in result.stdout
    assert "29 sites" in result.stdout


def test_check_broken_policy_prints_file_line_message_and_exits_1():
    broken = str(POLICIES / "broken.yaml")
    result = auditproxy("check", str(EXAMPLE_POLICY), broken)
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if line.startswith(broken)]
    assert len(lines) >= 10  # all problems, not just the first
    assert f"{broken}:3: timezone: unknown time zone 'Mars/Olympus_Mons'" in lines[1]
    assert all(line.split(":")[1].isdigit() for line in lines)
    assert f"{EXAMPLE_POLICY}: ok" in result.stdout  # the good one is still checked


def test_check_missing_file(tmp_path):
    result = auditproxy("check", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml:0: cannot read policy" in result.stdout


def test_classify_prints_one_json_object_per_url():
    result = auditproxy(
        "classify",
        "--policy",
        str(EXAMPLE_POLICY),
        "https://WWW.Facebook.com./feed?x=1",
        "http://notfacebook.com/",
        "https://www.td.com:443/",
        "http://www.govloop.com",
    )
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["category"], r["site"], r["action"], r["notice"]) for r in records] == [
        ("social", "facebook", "monitor", True),
        ("other", "other", "log", False),
        ("banking", "td", "bypass", False),
        ("social", "govloop", "monitor", True),
    ]
    assert records[0]["host"] == "www.facebook.com"


def test_classify_defaults_to_the_example_policy_and_reports_bad_urls():
    result = auditproxy("classify", "x.com", "http://[::1")
    assert result.returncode == 1
    good, bad = (json.loads(line) for line in result.stdout.splitlines())
    assert good["site"] == "x" and good["policy"] == "Policy on the Use of Electronic Networks"
    assert bad["url"] == "http://[::1" and "error" in bad


def test_classify_with_broken_policy():
    result = auditproxy("classify", "--policy", str(POLICIES / "broken.yaml"), "x.com")
    assert result.returncode == 1
    assert "broken.yaml:3:" in result.stderr


def test_pseudonym_matches_what_the_proxy_logs(tmp_path):
    from auditproxy.decide.identity import Pseudonymizer, load_key

    key = tmp_path / "k.key"
    load_key(key, create=True)
    result = auditproxy("pseudonym", "--key", str(key), "alice", "bob")
    assert result.returncode == 0
    alice, bob = (json.loads(line) for line in result.stdout.splitlines())
    expected = Pseudonymizer(load_key(key))
    assert alice["user.hash"] == expected("alice") and bob["user.hash"] == expected("bob")
    assert alice["labels.user_key_id"] == expected.key_id
    os.chmod(key, 0o644)
    refused = auditproxy("pseudonym", "--key", str(key), "alice")
    assert refused.returncode == 1 and "readable by others" in refused.stderr


def test_run_flags_map_to_mitmproxy_options(tmp_path):
    args = build_parser().parse_args(
        [
            "run",
            "--policy",
            "p.yaml",
            "--listen-port",
            "3128",
            "--metrics-port",
            "9999",
            "--state",
            "s.db",
            "--confdir",
            str(tmp_path),
            "--access-log",
            "/var/log/a.log",
            "--set",
            "mode=upstream:http://127.0.0.1:1",
            "--set",
            "flow_detail=2",
        ]
    )
    argv = mitmproxy_arguments(args)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert len(sets) * 2 == len(argv)
    assert {"listen_host=127.0.0.1", "listen_port=3128"} <= set(sets)
    assert f"auditproxy_policy={os.path.abspath('p.yaml')}" in sets
    assert "auditproxy_metrics_port=9999" in sets
    assert f"auditproxy_state={os.path.abspath('s.db')}" in sets
    assert f"confdir={tmp_path}" in sets
    assert "auditproxy_access_log=/var/log/a.log" in sets
    assert "mode=upstream:http://127.0.0.1:1" in sets
    # The operator's --set win over our defaults, and each option is given once
    # (mitmproxy refuses "multiple values").
    assert "flow_detail=2" in sets and "flow_detail=0" not in sets
    names = [s.split("=", 1)[0] for s in sets]
    assert len(names) == len(set(names))


async def test_run_settings_override_defaults_in_real_mitmproxy_parsing(tmp_path):
    """What `auditproxy run` hands mitmproxy parses, with the operator's values in force."""
    from mitmproxy import options
    from mitmproxy.tools import cmdline

    from auditproxy.runner import AuditProxyMaster

    operator = ["--set", "stream_large_bodies=5m", "--set", "listen_host=0.0.0.0"]
    args = build_parser().parse_args(
        ["run", "--confdir", str(tmp_path), "--access-log", str(tmp_path / "a.log"), *operator]
    )
    opts = options.Options()
    master = AuditProxyMaster(opts)
    parsed = cmdline.mitmdump(opts).parse_args(mitmproxy_arguments(args))
    opts.set(*parsed.setoptions, defer=True)
    assert (opts.stream_large_bodies, opts.listen_host) == ("5m", "0.0.0.0")
    assert (opts.block_global, opts.flow_detail) == (False, 0)
    master.addons.get("auditproxy").runtime.done()


def test_defaults_are_loopback_only():
    args = build_parser().parse_args(["run"])
    assert (args.listen_host, args.listen_port, args.metrics_host) == (
        "127.0.0.1",
        8080,
        "127.0.0.1",
    )


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2


def test_pseudonym_matches_names_as_normalised_and_addresses_as_typed(tmp_path):
    """What the proxy logs for `ALICE` (proxy authentication) and for a client known only
    by its address, the investigator's command finds again."""
    from support.harness import harness_for
    from support.paths import EXAMPLE_POLICY

    for h in harness_for(tmp_path, EXAMPLE_POLICY):
        by_name = h.flow("http://www.reddit.com/", client="10.1.2.3")
        by_name.metadata["proxyauth"] = ("ALICE", "")
        h.exchange(by_name)
        h.exchange(h.flow("http://www.reddit.com/", client="10.7.7.7"))
        named, addressed = h.records("access")
    key = str(tmp_path / "conf" / "auditproxy-pseudonym.key")
    alice = json.loads(auditproxy("pseudonym", "--key", key, "Alice").stdout)
    address = json.loads(auditproxy("pseudonym", "--key", key, "--address", "10.7.7.7").stdout)
    assert named["user.hash"] == alice["user.hash"] and alice["user.name"] == "alice"
    assert addressed["user.hash"] == address["user.hash"]
    plain = json.loads(auditproxy("pseudonym", "--key", key, "10.7.7.7").stdout)
    assert plain["user.hash"] != address["user.hash"]  # a user named 10.7.7.7 is not that client
