"""`auditproxy check` warns about Basic; `auditproxy classify --user --groups` shows what
applies to a person."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from auditproxy.cli import main

EXTRA = """auth:
  methods: [negotiate, basic]
  realm: EXAMPLE.TEST
groups:
  - name: posters
    directory_group: Comms
    categories: {social: log}
  - name: staff
    notice: {scope: all}
    log_as: pseudonym
"""


@pytest.fixture
def policy(tmp_path: Path, small_policy_text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(small_policy_text + EXTRA)
    return path


def test_check_warns_that_basic_sends_passwords_and_exits_0(policy, capsys) -> None:
    assert main(["check", str(policy)]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(n for n, t in enumerate(policy.read_text().splitlines(), 1) if "basic]" in t)
    assert out[0].startswith(f"{policy}:{line}: warning: auth: 'basic' sends")
    assert "clear text" in out[0] and out[1].startswith(f"{policy}: ok:")


def test_classify_for_a_person_and_their_groups(policy, capsys) -> None:
    url = "https://www.facebook.com/"
    assert main(["classify", "--policy", str(policy), url]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert (plain["action"], plain["notice"]) == ("monitor", True) and "group" not in plain
    args = ["classify", "--policy", str(policy), "--user", "Alice@EXAMPLE.TEST"]
    assert main([*args, "--groups", "staff,comms", url]) == 0
    alice = json.loads(capsys.readouterr().out)
    assert alice["user"] == "alice" and alice["groups"] == ["staff", "comms"]
    assert (alice["group"], alice["action"], alice["notice"]) == ("posters", "log", False)
    assert main([*args, "--groups", "staff", url]) == 0
    staff = json.loads(capsys.readouterr().out)
    assert (staff["group"], staff["notice_scope"], staff["log_as"]) == ("staff", "all", "pseudonym")
    assert main([*args, url]) == 0
    nobody = json.loads(capsys.readouterr().out)
    assert nobody["group"] is None and nobody["log_as"] == "name"
