"""The access log's hash chain wired into the running add-on: every record it writes is
sealed, across policy reloads, a changed key, rotation, stdout, a full disk and restarts,
and the `auditproxy_log_sequence` gauge follows it (no sockets: mitmproxy's test context)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from mitmproxy import exceptions
from mitmproxy.options import Options
from mitmproxy.test import taddons

from auditproxy.addon import AuditProxy
from auditproxy.sinks.chainstate import claim, read_state
from auditproxy.sinks.seal import CHAIN, DROPPED, PREVIOUS, SEQUENCE, START, derive_key
from auditproxy.sinks.verify import verify_files
from support.harness import Harness, harness_for, sample
from support.hooks import Hooks
from support.paths import POLICIES


@pytest.fixture
def harness(tmp_path):
    yield from harness_for(tmp_path)


def key_of(harness: Harness) -> bytes:
    assert harness.addon.engine is not None
    return derive_key(harness.addon.engine.secret)


def verify(harness: Harness, *paths: os.PathLike, keys: tuple[bytes, ...] = ()):
    files = [str(p) for p in paths] or [str(harness.log_path)]
    return verify_files(files, list(keys) or [key_of(harness)])


def test_every_record_is_sealed_and_the_gauge_follows(harness):
    for _ in range(3):
        harness.exchange(harness.flow())
    harness.exchange(harness.flow("http://www.malware.test/"))  # blocked: its own record
    records = harness.records()
    assert [r[SEQUENCE] for r in records] == [1, 2, 3, 4]
    chain = records[0][CHAIN]
    assert records[0][START] == "new" and {r[CHAIN] for r in records} == {chain}
    assert list(records[-1])[-1] == "event.hash"
    assert harness.metric("auditproxy_log_sequence") == 4
    assert harness.metric("auditproxy_log_chain_info", chain=chain) == 1
    assert harness.metric("auditproxy_log_records_total", outcome="written") == 4
    assert verify(harness).ok


def test_the_default_state_file_is_per_log_and_locked(harness):
    state = harness.tmp / "conf" / "auditproxy-log-chain-access.log.json"
    assert read_state(state)[0] is not None  # marked "running" at start
    assert claim(state) is None  # held by the running chain


async def test_a_policy_reload_keeps_the_chain(harness):
    harness.exchange(harness.flow())
    text = harness.policy_path.read_text()
    harness.policy_path.write_text(text.replace("source_ip: true", "source_ip: false"))
    for _ in range(3):
        await harness.addon.runtime._check_policy()
    assert harness.metric("auditproxy_policy_reloads_total", result="success") == 1
    harness.exchange(harness.flow())
    first, second = harness.records()
    assert first[CHAIN] == second[CHAIN] and second[SEQUENCE] == 2
    assert verify(harness).ok


async def test_a_changed_key_starts_a_new_chain_naming_the_old(harness, tmp_path):
    key = tmp_path / "k.key"
    key.write_text("11" * 32)
    key.chmod(0o600)
    harness.configure(auditproxy_pseudonym_key=str(key))
    old_key = key_of(harness)
    harness.exchange(harness.flow())
    key.write_text("22" * 32)  # rotated, then `systemctl reload` (SIGHUP)
    harness.addon.runtime._on_sighup()
    await harness.addon.runtime._check_policy()
    harness.exchange(harness.flow())
    before, after = harness.records()[-2:]
    assert after[CHAIN] != before[CHAIN] and after[SEQUENCE] == 1
    assert after[START] == "key-changed"
    assert after[PREVIOUS] == f"{before[CHAIN]}:{before[SEQUENCE]}"
    assert harness.metric("auditproxy_log_chain_info", chain=after[CHAIN]) == 1
    assert harness.metric("auditproxy_log_chain_info", chain=before[CHAIN]) == 0
    report = verify(harness, keys=(key_of(harness), old_key))
    assert report.ok, report.format()
    assert not verify(harness, keys=(key_of(harness),)).ok  # the old chain: unknown key


def test_rotation_and_a_restart_continue_one_chain(tmp_path):
    runs = []
    for _ in range(2):  # a clean stop, logrotate while stopped, a new process
        harnesses = harness_for(tmp_path)
        harness = next(harnesses)
        harness.exchange(harness.flow())
        os.rename(harness.log_path, tmp_path / "access.log-1" if not runs else tmp_path / "x")
        harness.addon.runtime._maintain_log()  # upkeep notices the rotation
        harness.exchange(harness.flow())
        runs.append(harness)
        next(harnesses, None)  # done: the sink, then the chain (state marked clean)
    files = [tmp_path / "access.log-1", tmp_path / "x", tmp_path / "access.log"]
    records = [json.loads(line) for p in files for line in p.read_text().splitlines()]
    assert [r[SEQUENCE] for r in records] == [1, 2, 3, 4]
    assert len({r[CHAIN] for r in records}) == 1
    report = verify_files([str(p) for p in files], [key_of(runs[0])])
    assert report.ok, report.format()


def test_stdout_keeps_its_place_in_the_state_file_only(tmp_path, capfd):
    confdir = tmp_path / "conf"
    policy = tmp_path / "policy.yaml"
    shutil.copy(POLICIES / "small.yaml", policy)
    lines = []
    for _ in range(2):
        addon = AuditProxy()
        with taddons.context(addon, options=Options(confdir=str(confdir))) as tctx:
            tctx.configure(
                addon,
                auditproxy_access_log="-",
                auditproxy_policy=str(policy),
                auditproxy_state=str(tmp_path / "state.sqlite3"),
            )
            harness = Harness(tctx, addon, tmp_path)
            harness.exchange(harness.flow())
            Hooks(tctx, addon).done()
        lines += [line for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    assert [json.loads(line)[SEQUENCE] for line in lines] == [1, 2]
    state = read_state(confdir / "auditproxy-log-chain.json")[0]
    assert state is not None and state.clean and state.cursor.sequence == 2


def test_instances_sharing_confdir_and_stdout_take_their_own_state_files(tmp_path):
    confdir = tmp_path / "conf"
    policy = tmp_path / "policy.yaml"
    shutil.copy(POLICIES / "small.yaml", policy)
    contexts, addons = [], []
    for _ in range(2):
        addon = AuditProxy()
        tctx = taddons.context(addon, options=Options(confdir=str(confdir)))
        tctx.__enter__()
        tctx.configure(addon, auditproxy_access_log="-", auditproxy_policy=str(policy))
        contexts.append(tctx)
        addons.append(addon)
    try:
        paths = [a.runtime.chain.state_path.name for a in addons]
        assert paths == ["auditproxy-log-chain.json", "auditproxy-log-chain-2.json"]
        assert addons[0].runtime.chain.chain != addons[1].runtime.chain.chain
    finally:
        for tctx, addon in zip(contexts, addons, strict=True):
            Hooks(tctx, addon).done()
            tctx.__exit__(None, None, None)


def test_an_explicit_state_file_in_use_refuses_the_option(harness, tmp_path):
    state = tmp_path / "chain.json"
    held = claim(state)
    with pytest.raises(exceptions.OptionsError, match="in use by another process"):
        harness.configure(auditproxy_log_chain_state=str(state))
    held.release()
    harness.configure(auditproxy_log_chain_state=str(state))
    assert harness.addon.runtime.chain.state_path == state


def test_records_dropped_on_a_full_disk_are_declared_and_read_honest(harness):
    """The disk refuses writes past the backlog: the oldest records are dropped (counted),
    and once it takes writes again a `log-dropped` record declares them."""
    runtime = harness.addon.runtime
    harness.exchange(harness.flow())
    sink = runtime.sink
    real_path = sink.path
    sink._backlog_limit = 2
    sink.path, sink._fd = "/dev/full", None  # the disk fills up
    for _ in range(5):
        harness.exchange(harness.flow())
    assert harness.metric("auditproxy_log_records_total", outcome="dropped") == 3
    assert runtime.chain.has_dropped
    sink.path, sink._fd = real_path, None  # room again
    runtime._maintain_log()
    records = harness.records()
    assert [r["event.action"] for r in records] == ["access"] * 3 + ["log-dropped"]
    chain = records[0][CHAIN]
    assert records[-1][DROPPED] == f"{chain}:2-4" and records[-1][SEQUENCE] == 7
    assert harness.metric("auditproxy_log_records_total", outcome="written") == 4
    assert harness.metric("auditproxy_log_sequence") == 7
    report = verify(harness)
    assert report.ok and report.dropped == 3, report.format()


def test_records_still_queued_at_shutdown_are_declared_after_the_restart(tmp_path):
    harnesses = harness_for(tmp_path)
    harness = next(harnesses)
    key = key_of(harness)
    harness.exchange(harness.flow())
    sink = harness.addon.runtime.sink
    real_path = sink.path
    sink.path, sink._fd = "/dev/full", None
    harness.exchange(harness.flow())
    harness.exchange(harness.flow())
    next(harnesses, None)  # stops with two records it could not write
    assert harness.metric("auditproxy_log_records_total", outcome="dropped") == 2
    assert real_path == str(harness.log_path)
    again = next(harness_for(tmp_path))
    again.addon.runtime._maintain_log()
    again.exchange(again.flow())
    records = again.records()
    assert [r["event.action"] for r in records] == ["access", "log-dropped", "access"]
    assert records[1][DROPPED].endswith(":2-3") and records[1][SEQUENCE] == 4
    report = verify_files([str(again.log_path)], [key])
    assert report.ok and report.dropped == 2, report.format()


def test_health_names_the_chain(harness):
    harness.exchange(harness.flow())
    health = harness.addon.runtime.health()
    assert health["access_log_sequence"] == 1
    assert health["access_log_chain"] == harness.records()[0][CHAIN]
    assert sample(harness.addon, "auditproxy_log_sequence") == 1
