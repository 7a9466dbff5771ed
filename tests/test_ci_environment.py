"""Under CI, the real components must be there: a skipped end-to-end test proves nothing.

Locally, tests that need a missing program skip with the package to install; in CI
(`CI=true`, where .ci/run installs them) the same absence is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

PROGRAMS = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "chromium": "chromium",
    "certutil": "libnss3-tools",
    "redis-server": "redis-server",
    "haproxy": "haproxy",
    "chattr": "e2fsprogs",
    "shellcheck": "shellcheck",
    "faketime": "faketime",
}
MODULES = {
    "playwright": "the test group (scripts/test installs it from uv.lock)",
    "redis": "the redis extra and the test group",
    "time_machine": "the test group",
}


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_program_is_installed(program: str) -> None:
    assert shutil.which(program), f"{program} missing: .ci/run must install {PROGRAMS[program]}"


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_installed(module: str) -> None:
    assert importlib.util.find_spec(module), f"{module} missing: {MODULES[module]}"


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
def test_running_as_root_for_the_fault_tests() -> None:
    """chattr +i and tmpfs mounts (tests/e2e/test_faults.py) need root."""
    assert os.geteuid() == 0, "CI must run as root for the state and disk-full fault tests"
