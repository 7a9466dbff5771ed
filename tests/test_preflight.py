"""`auditproxy run` refuses to start with secrets that other accounts can read.

The end-to-end proof (mitmproxy creates its CA 0600; a real `auditproxy run` exits 1 with
the message) is in tests/e2e/test_security.py; here the pure checks and `cmd_run`'s use.
"""

from __future__ import annotations

import re
import stat
import subprocess
from pathlib import Path

import pytest

from auditproxy import cli
from auditproxy.preflight import (
    CA_KEY_FILES,
    check_ca_key,
    check_pseudonym_key,
    check_secret_file,
    last_set_option,
    run_checks,
)


def secret(path: Path, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("-----BEGIN PRIVATE KEY-----\nnot a real key\n")
    path.chmod(mode)
    return path


def test_missing_files_are_not_a_problem(tmp_path: Path) -> None:
    assert check_ca_key(tmp_path / "nowhere") is None
    assert check_pseudonym_key(tmp_path / "nowhere.key") is None
    assert run_checks(str(tmp_path / "conf"), None) == []


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o700])
def test_owner_only_is_fine(tmp_path: Path, mode: int) -> None:
    for name in CA_KEY_FILES:
        secret(tmp_path / name, mode)
    assert check_ca_key(tmp_path) is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o601, 0o666])
@pytest.mark.parametrize("name", CA_KEY_FILES)
def test_any_group_or_other_access_to_the_ca_key_is_refused(
    tmp_path: Path, mode: int, name: str
) -> None:
    for other in CA_KEY_FILES:
        secret(tmp_path / other, 0o600)
    key = secret(tmp_path / name, mode)
    message = check_ca_key(tmp_path)
    assert message is not None
    assert str(key) in message
    assert f"mode {mode:04o}" in message
    assert f"chmod 600 {key}" in message  # the fix, ready to paste


def test_mitmproxys_own_ca_files_are_owner_only(tmp_path: Path) -> None:
    """What mitmproxy does on a first start (proved again end to end)."""
    from mitmproxy.certs import CertStore

    CertStore.from_store(tmp_path, "mitmproxy", 2048)
    for name in CA_KEY_FILES:
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert check_ca_key(tmp_path) is None


def test_pseudonym_key(tmp_path: Path) -> None:
    key = secret(tmp_path / "p.key", 0o640)
    message = check_pseudonym_key(key)
    assert message and "pseudonym key" in message and f"chmod 600 {key}" in message
    key.chmod(0o600)
    assert check_pseudonym_key(key) is None


def test_unreadable_folder_is_reported_not_ignored(tmp_path: Path, monkeypatch) -> None:
    def denied(self: Path, *args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "stat", denied)
    message = check_secret_file(tmp_path / "k", "the key")
    assert message and "cannot check the key" in message and "Permission denied" in message


def test_last_set_option_is_what_mitmproxy_applies() -> None:
    sets = ["confdir=/a", "mode=regular", "confdir=/b", "auditproxy_policy=x=y"]
    assert last_set_option(sets, "confdir") == "/b"
    assert last_set_option(sets, "auditproxy_policy") == "x=y"
    assert last_set_option(sets, "proxyauth") is None


def test_run_checks_follow_set_overrides(tmp_path: Path) -> None:
    flag_dir, set_dir = tmp_path / "flag", tmp_path / "set"
    secret(flag_dir / "mitmproxy-ca.pem", 0o600)
    secret(set_dir / "mitmproxy-ca.pem", 0o644)
    assert run_checks(str(flag_dir), None) == []
    (problem,) = run_checks(str(flag_dir), None, [f"confdir={set_dir}"])
    assert str(set_dir / "mitmproxy-ca.pem") in problem


def test_run_checks_default_key_place_and_explicit_key(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    secret(conf / "auditproxy-pseudonym.key", 0o644)
    (problem,) = run_checks(str(conf), None)
    assert "pseudonym key" in problem
    explicit = secret(tmp_path / "elsewhere.key", 0o600)
    assert run_checks(str(conf), str(explicit)) == []
    assert run_checks(str(conf), None, [f"auditproxy_pseudonym_key={explicit}"]) == []


def test_cmd_run_exits_1_before_starting_mitmproxy(tmp_path: Path, capsys, monkeypatch) -> None:
    conf = tmp_path / "conf"
    secret(conf / "mitmproxy-ca.pem", 0o644)
    started: list[object] = []
    monkeypatch.setattr("auditproxy.runner.run_proxy", lambda argv: started.append(argv) or 0)
    assert cli.main(["run", "--confdir", str(conf), "--metrics-port", "0"]) == 1
    assert started == []
    err = capsys.readouterr().err
    assert err.startswith("auditproxy run: the proxy's CA private key")
    assert f"chmod 600 {conf / 'mitmproxy-ca.pem'}" in err
    (conf / "mitmproxy-ca.pem").chmod(0o600)
    assert cli.main(["run", "--confdir", str(conf), "--metrics-port", "0"]) == 0
    assert len(started) == 1


def test_no_private_key_is_committed() -> None:
    """SECURITY.md: no key is ever committed; tests make their own at run time."""
    repo = Path(__file__).resolve().parents[1]
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=repo, capture_output=True, timeout=30, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout")
    pem = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----\s+[A-Za-z0-9+/=]{40,}")
    found = []
    for name in listed.stdout.decode().split("\0"):
        path = repo / name
        if not (name and path.is_file() and path.stat().st_size < 5_000_000):
            continue
        if pem.search(path.read_bytes()) or name.endswith((".p12", ".pfx", ".key")):
            found.append(name)
    assert found == []
