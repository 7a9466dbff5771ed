"""Shared fixtures. End-to-end fixtures live in tests/e2e/conftest.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Test helpers (tests/support) import as `support.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from support.paths import POLICIES


@pytest.fixture
def small_policy_path() -> Path:
    return POLICIES / "small.yaml"


@pytest.fixture
def small_policy_text() -> str:
    return (POLICIES / "small.yaml").read_text(encoding="utf-8")
