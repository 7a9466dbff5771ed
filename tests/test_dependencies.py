"""The dependency gate in scripts/test: deptry, with this project's configuration, fails on
an import nobody declared and on a declared package nobody imports."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.paths import REPO

DEPTRY = Path(sys.executable).parent / "deptry"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if not DEPTRY.exists():
        pytest.skip("deptry is in the lint group (scripts/test installs it)")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(REPO / "addons", tmp_path / "addons", ignore=shutil.ignore_patterns("*.pyc"))
    return tmp_path


def deptry(project: Path) -> tuple[int, str]:
    """deptry's exit status and its report, without colours."""
    result = subprocess.run(
        [str(DEPTRY), "addons"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return result.returncode, re.sub(r"\x1b\[[0-9;]*m", "", result.stdout + result.stderr)


def test_the_product_declares_exactly_what_it_imports(project: Path) -> None:
    status, report = deptry(project)
    assert status == 0, report


def test_an_undeclared_import_fails(project: Path) -> None:
    module = project / "addons" / "auditproxy" / "cli.py"
    module.write_text("import idna  # only a dependency of a dependency\n" + module.read_text())
    status, report = deptry(project)
    assert status == 1
    assert re.search(r"cli.py:1:8: DEP00[13] 'idna' imported but", report), report


def test_a_declared_but_unused_dependency_fails(project: Path) -> None:
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(text.replace('    "pyyaml>=6.0",\n', '    "pyyaml>=6.0",\n    "idna",\n'))
    assert '"idna"' in pyproject.read_text()
    status, report = deptry(project)
    assert status == 1
    assert "DEP002 'idna' defined as a dependency but not used" in report
