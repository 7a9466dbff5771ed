"""Shared fixtures. End-to-end fixtures live in tests/e2e/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
POLICIES = FIXTURES / "policies"
EXAMPLE_POLICY = REPO / "policy" / "department.yaml"

# Test helpers (tests/support) import as `support.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def small_policy_path() -> Path:
    return POLICIES / "small.yaml"


@pytest.fixture
def small_policy_text() -> str:
    return (POLICIES / "small.yaml").read_text(encoding="utf-8")
