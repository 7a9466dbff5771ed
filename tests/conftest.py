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
from support.paths import POLICIES


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
