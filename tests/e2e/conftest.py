"""Fixtures for end-to-end tests: the test internet (Upstream) and real `auditproxy run`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import CertAuthority, Upstream
from support.paths import POLICIES
from support.proxy import AuditProxyProcess


@pytest.fixture
def upstream_ca_file(test_ca: CertAuthority, tmp_path: Path) -> Path:
    return test_ca.write_ca(tmp_path)


@pytest.fixture
def e2e_policy(tmp_path: Path) -> Path:
    """The small test policy, with only 127.0.0.1 allowed (127.0.0.2 plays an outsider)."""
    text = (POLICIES / "small.yaml").read_text()
    text = text.replace('allow: [127.0.0.0/8, "::1/128", 10.0.0.0/8]', "allow: [127.0.0.1/32]")
    assert "127.0.0.1/32" in text
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


@pytest.fixture
def page_policy(e2e_policy: Path) -> Path:
    """The e2e policy with `clients.refuse: page`: outsiders get the refusal page (and an
    access record) for each request instead of a connection closed as it opens."""
    text = e2e_policy.read_text().replace(
        "allow: [127.0.0.1/32]", "allow: [127.0.0.1/32]\n  refuse: page"
    )
    e2e_policy.write_text(text)
    return e2e_policy


@pytest.fixture
def start_proxy(
    tmp_path: Path, upstream: Upstream, upstream_ca_file: Path
) -> Iterator[Callable[..., AuditProxyProcess]]:
    """Start `auditproxy run` in upstream mode towards the test internet."""
    started: list[AuditProxyProcess] = []

    def start(
        *args: str,
        policy: Path | None = None,
        name: str = "proxy",
        start: bool = True,
        nofile: tuple[int, int] | None = None,
    ) -> AuditProxyProcess:
        """`start=False`: made, not started (for faults that exist before start).
        `nofile`: the (soft, hard) open-file limit it starts with."""
        workdir = tmp_path / f"{name}-{len(started)}"
        workdir.mkdir()
        proxy = AuditProxyProcess(
            workdir,
            list(args),
            policy=policy,
            upstream_mode=upstream.proxy_mode,
            upstream_ca=upstream_ca_file,
            start=start,
            nofile=nofile,
        )
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()
