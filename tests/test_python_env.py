"""scripts/python-env.sh installs the kerberos extra (it compiles gssapi) only where it can
build: a fresh machine with only Python and git still runs ./scripts/run (issue #10); it
says so once; under CI=true the missing compiler or headers are an error."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from support.paths import REPO


def kerberos_extra(tmp_path: Path, tools: tuple[str, ...], ci: str = "") -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("mkdir", "touch", "rm", "dirname", *tools):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    script = f'source "{REPO}/scripts/python-env.sh"; kerberos_extra "{tmp_path}/venv"'
    done = subprocess.run(
        ["/bin/bash", "-c", script],
        env={"PATH": str(bin_dir), "CI": ci, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout.strip(), done.stderr


def test_without_krb5_config_the_extra_is_left_out_and_said_once(tmp_path: Path) -> None:
    first = kerberos_extra(tmp_path, ())
    assert first[:2] == (0, "") and "libkrb5-dev" in first[2]
    assert kerberos_extra(tmp_path, ()) == (0, "", "")  # once


def test_under_ci_it_is_required(tmp_path: Path) -> None:
    status, _, err = kerberos_extra(tmp_path, (), ci="true")
    assert status == 1 and "gcc libkrb5-dev" in err


@pytest.mark.skipif(
    not (shutil.which("krb5-config") and shutil.which("cc")), reason="needs krb5-config and cc"
)
def test_with_a_compiler_and_headers_it_is_installed(tmp_path: Path) -> None:
    assert kerberos_extra(tmp_path, ("krb5-config", "cc"))[:2] == (0, "--extra kerberos")
    assert os.environ.get("PATH")  # the test's own environment is untouched
