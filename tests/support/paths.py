"""Where things are in the repository, for tests."""

from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
REPO = TESTS.parent
FIXTURES = TESTS / "fixtures"
POLICIES = FIXTURES / "policies"
EXAMPLE_POLICY = REPO / "policy" / "department.yaml"
