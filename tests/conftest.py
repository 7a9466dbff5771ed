"""Shared fixtures: policies, and the test internet (a test CA and an Upstream that plays
every host). End-to-end fixtures (a real `auditproxy run`) live in tests/e2e/conftest.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Test helpers (tests/support) import as `support.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

import support.fuzz  # noqa: F401  (Hypothesis: derandomised under CI=true)
from support import CertAuthority, Upstream
from support.clock import shifted_instant
from support.paths import POLICIES

_travel = None


def pytest_configure(config: pytest.Config) -> None:
    """AUDITPROXY_TEST_CLOCK moves the whole session to another instant (support.clock)."""
    global _travel
    instant = shifted_instant()
    if instant is not None:
        import time_machine

        _travel = time_machine.travel(instant, tick=True)
        _travel.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _travel is not None:
        _travel.stop()


def pytest_report_header(config: pytest.Config) -> str | None:
    instant = shifted_instant()
    return f"clock shifted to {instant.isoformat()} (AUDITPROXY_TEST_CLOCK)" if instant else None


@pytest.fixture
def small_policy_path() -> Path:
    return POLICIES / "small.yaml"


@pytest.fixture
def small_policy_text() -> str:
    return (POLICIES / "small.yaml").read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def test_ca() -> Iterator[CertAuthority]:
    with CertAuthority() as ca:
        yield ca


@pytest.fixture
def upstream(test_ca: CertAuthority) -> Iterator[Upstream]:
    with Upstream(test_ca) as server:
        yield server
