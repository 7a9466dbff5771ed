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
    "npm": "npm",  # installs axe-core for the notice's accessibility test (tests/e2e/axe)
    # Kerberos single sign-on and directory groups (tests/decide, tests/e2e): a real KDC and
    # slapd, curl as a Negotiate client; gssapi is compiled from source (gcc, libkrb5-dev).
    "krb5kdc": "krb5-kdc",
    "kdb5_util": "krb5-kdc",
    "kadmin.local": "krb5-admin-server",
    "kinit": "krb5-user",
    "slapd": "slapd",
    "slapadd": "slapd",
    "curl": "curl",
    "krb5-config": "libkrb5-dev",
    "gcc": "gcc",
}
MODULES = {
    "playwright": "the test group (scripts/test installs it from uv.lock)",
    "redis": "the redis extra and the test group",
    "time_machine": "the test group",
    "gssapi": "the kerberos extra (scripts/python-env.sh requires it under CI=true)",
    "ldap3": "a dependency of auditproxy",
}


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_program_is_installed(program: str) -> None:
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    assert found, f"{program} missing: .ci/run must install {PROGRAMS[program]}"


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_installed(module: str) -> None:
    assert importlib.util.find_spec(module), f"{module} missing: {MODULES[module]}"


@pytest.mark.skipif(not IN_CI, reason="only under CI=true")
def test_running_as_root_for_the_fault_tests() -> None:
    """chattr +i and tmpfs mounts (tests/e2e/test_faults.py) need root."""
    assert os.geteuid() == 0, "CI must run as root for the state and disk-full fault tests"


def test_ci_installs_every_package_the_tests_name() -> None:
    """The list in .ci/run names each Debian package PROGRAMS points to."""
    from support.paths import REPO

    script = (REPO / ".ci" / "run").read_text()
    listed = script[script.index("packages=(") : script.index("\n)\n")]
    names = {line.split()[0] for line in listed.splitlines()[1:] if line.strip()}
    assert set(PROGRAMS.values()) <= names, set(PROGRAMS.values()) - names
