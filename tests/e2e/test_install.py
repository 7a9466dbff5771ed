"""What the container image installs (deploy/docker/install-from-lock.sh, from uv.lock
with hashes, runtime dependencies only) starts and serves a request: the image's build
step, run for real without a Docker engine."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ProxyClient, Upstream
from support.paths import REPO
from support.proxy import AuditProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

INSTALL = REPO / "deploy" / "docker" / "install-from-lock.sh"


def base_python() -> str:
    """The interpreter the test venv was made from (the image has no venv of its own)."""
    return str(Path(sys.base_prefix) / "bin" / "python3")


def test_the_image_install_serves_a_request_with_only_locked_runtime_packages(
    tmp_path: Path, upstream: Upstream, upstream_ca_file: Path
) -> None:
    prefix = tmp_path / "opt-auditproxy"
    result = subprocess.run(
        ["sh", str(INSTALL), str(REPO), str(prefix)],
        env={**os.environ, "PYTHON": base_python()},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr
    assert "ok:" in result.stdout  # the shipped policy passed `auditproxy check`

    listing = "import importlib.metadata as m; print(*(d.name.lower() for d in m.distributions()))"
    installed = set(
        subprocess.run(
            [str(prefix / "bin" / "python"), "-c", listing],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    )
    assert {"auditproxy", "mitmproxy", "redis", "brotli", "structlog", "ldap3"} <= installed
    # The kerberos extra wherever it can be built (the image's build stage can).
    if shutil.which("krb5-config") and shutil.which("cc"):
        assert "gssapi" in installed
    assert not installed & {"pytest", "playwright", "hypothesis", "ruff", "deptry"}

    proxy = AuditProxyProcess(
        tmp_path / "run",
        upstream_mode=upstream.proxy_mode,
        upstream_ca=upstream_ca_file,
        start=False,
    )
    assert proxy.command[1:3] == ["-m", "auditproxy.cli"]
    proxy.command[0:3] = [str(prefix / "bin" / "auditproxy")]
    (tmp_path / "run").mkdir(exist_ok=True)
    try:
        proxy.start()
        response = ProxyClient("127.0.0.1", proxy.port).get("http://www.reddit.com/r/ottawa")
        assert response.status == 200
        (record,) = proxy.wait_for_records(1)
        assert record["labels.site"] == "reddit"
    finally:
        proxy.stop()
