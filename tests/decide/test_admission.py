"""Admission as data: who may connect, how many (`decide.admission`)."""

from __future__ import annotations

import subprocess
import sys

from auditproxy.decide.admission import Admission, Limits, Reason


def admission(**limits: int) -> Admission:
    a = Admission(Limits(**limits), files_limit=1024)
    a.measured(20)  # the process's own files: log, state, listeners...
    return a


def admit(a: Admission, address: str = "10.0.0.1", **kw: bool) -> Reason | None:
    options = {"allowed": True, "refuse_outsiders": True, "trusted": False, **kw}
    return a.admit(address, **options)


def test_outsiders_are_refused_only_when_the_policy_refuses_at_connect() -> None:
    a = admission()
    assert admit(a, allowed=False) is Reason.CLIENT
    assert a.clients == 0
    assert admit(a, allowed=False, refuse_outsiders=False) is None  # `refuse: page`
    assert a.clients == 1


def test_per_address_cap_and_trusted_front_proxies() -> None:
    a = admission(max_per_client=2)
    assert [admit(a) for _ in range(3)] == [None, None, Reason.LIMIT_ADDRESS]
    assert admit(a, "10.0.0.2") is None
    assert all(admit(a, "10.9.9.9", trusted=True) is None for _ in range(5))
    a.release("10.0.0.1")
    assert admit(a) is None
    assert a.per_address["10.0.0.1"] == 2 and a.clients == 8


def test_no_per_address_cap_when_zero() -> None:
    a = admission(max_per_client=0)
    assert all(admit(a) is None for _ in range(300))


def test_global_cap_given_or_from_the_open_file_limit() -> None:
    a = admission(max_connections=3)
    assert [admit(a, f"10.0.0.{n}") for n in range(4)] == [None, None, None, Reason.LIMIT_GLOBAL]
    auto = admission()
    assert auto.max_connections == (1024 - 64) // 2


def test_the_file_reserve_is_never_spent_on_clients() -> None:
    a = admission(max_connections=10_000, max_per_client=0)
    admitted = 0
    while admit(a) is None:
        admitted += 1
    assert admit(a) is Reason.LIMIT_FILES
    # Each client may need a server connection: the reserve stays free either way.
    assert a.files_left() < 2 and a.files + a.limits.file_reserve <= 1024
    assert a.server_allowed()  # half the reserve is for servers when clients are full
    a.servers += a.files_left() + a.limits.file_reserve // 2
    assert not a.server_allowed()


def test_a_fresh_count_of_open_files_replaces_the_estimate() -> None:
    a = admission()
    admit(a)
    a.servers = 1
    a.measured(100)  # 98 of them are neither client nor server connections
    assert a.files == 100
    a.release("10.0.0.1")
    assert a.files == 99


def test_reasons_are_a_fixed_vocabulary_with_texts() -> None:
    assert [r.value for r in Reason] == [
        "client",
        "limit-global",
        "limit-files",
        "limit-address",
        "head-size",
        "head-timeout",
        "body-timeout",
        "origin-head-size",
    ]
    assert all(r.text for r in Reason)


def test_the_soft_open_file_limit_is_raised_to_the_hard_one() -> None:
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (256, 1024));"
        "from auditproxy.decide.admission import raise_file_limit, file_limit;"
        "print(raise_file_limit(), file_limit())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(256, 1024) 1024"
