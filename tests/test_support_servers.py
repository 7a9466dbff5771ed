"""support.servers: a missing program skips locally, naming the package, and fails in CI."""

from __future__ import annotations

import pytest

from support import servers

ABSENT = {"no-such-program-auditproxy": "some-package"}


def test_found_programs_include_the_sbin_folders() -> None:
    assert servers.missing_programs({"sh": "dash"}) == {}
    assert servers.missing_programs(ABSENT) == ABSENT


def test_a_missing_program_skips_with_the_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(servers, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install .* some-package"):
        servers.require_programs(ABSENT)


def test_a_missing_program_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="some-package"):
        servers.require_programs(ABSENT)
