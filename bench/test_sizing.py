"""bench/sizing.py's arithmetic, checked in CI (no load runs here: CI has no nginx or hey).

The figures of docs/scaling.md's sizing table come from these functions; a wrong share, a
rounding in the wrong direction or a unit slip would print a plausible but wrong table.
"""

from __future__ import annotations

import math

import pytest
import sizing


def test_mix_is_the_weighted_mean_of_the_classes() -> None:
    us = {"a": 1000.0, "b": 3000.0}
    assert sizing.mix_us(us, {"a": 0.5, "b": 0.5}) == pytest.approx(2000)
    assert sizing.mix_us(us, {"a": 0.75, "b": 0.25}) == pytest.approx(1500)
    # 1,500 us of CPU per request: 666.7 requests per CPU-second.
    assert sizing.rps_per_core(us, {"a": 0.75, "b": 0.25}) == pytest.approx(1e6 / 1500)


def test_the_stated_mix_covers_every_class_and_adds_up() -> None:
    assert set(sizing.MIX) == set(sizing.CLASSES)
    assert sum(sizing.MIX.values()) == pytest.approx(1)
    https_kept_alive = sizing.MIX["https_monitored"] + sizing.MIX["https_unclassified"]
    assert https_kept_alive == pytest.approx(0.70)


def test_shares_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(ValueError, match="add up"):
        sizing.mix_us({"a": 1.0, "b": 1.0}, {"a": 0.5, "b": 0.6})


def test_cores_round_up_at_the_target_utilisation() -> None:
    # 1,000 staff x 30 requests a minute: 500 req/s; 500 req/s per core at 50 %: 2 cores.
    assert sizing.cores_needed(1000, 30, 500, 0.5) == 2
    # A hair more traffic needs a third core, never 2.001 rounded down.
    assert sizing.cores_needed(1001, 30, 500, 0.5) == 3
    assert sizing.cores_needed(10, 30, 500, 0.5) == 1  # never zero
    assert sizing.cores_needed(20_000, 60, 400, 0.5) == 100


def test_cores_table_rows() -> None:
    rows = sizing.cores_table(500, staff=(1000, 5000), per_minute=(30, 60), utilisation=0.5)
    assert [(r["staff"], r["per_minute"]) for r in rows] == [
        (1000, 30),
        (5000, 30),
        (1000, 60),
        (5000, 60),
    ]
    assert [r["peak_rps"] for r in rows] == [500, 2500, 1000, 5000]
    assert [r["cores"] for r in rows] == [2, 10, 4, 20]
    assert all(r["cores_n_plus_1"] == r["cores"] + 1 for r in rows)
    assert all("memory_per_instance_mb" not in r for r in rows)


def test_memory_per_instance() -> None:
    memory = {
        "base_kb": 100 * 1024,  # 100 MiB
        "per_connection_bytes": 100 * 1024,  # 100 KiB
        "per_1000_people_bytes": 2 * 2**20,  # 2 MiB
    }
    # 1,000 staff x 10 connections over 4 instances: 2,500 x 100 KiB each = 244 MiB; every
    # instance holds all 1,000 people: 2 MiB.
    got = sizing.memory_mb(1000, 4, connections_per_person=10, **memory)
    assert got == pytest.approx(100 + 2500 * 100 / 1024 + 2)
    rows = sizing.cores_table(500, staff=(1000,), per_minute=(30,), memory=memory)
    assert rows[0]["memory_per_instance_mb"] == pytest.approx(
        sizing.memory_mb(1000, rows[0]["cores_n_plus_1"], **memory)
    )


def test_tables_from_results() -> None:
    results = {
        "cpu": {"rps_per_core": 500.0},
        "idle": {"https": {"rss_before_kb": 102400, "bytes_per_connection": 1000.0}},
        "people": {"rss_per_1000_bytes": -5.0},  # noise below zero counts as nothing
    }
    tables = sizing.sizing_tables(results)
    assert tables["assumptions"]["memory"]["per_1000_people_bytes"] == 0
    assert len(tables["rows"]) == len(sizing.STAFF) * len(sizing.PER_MINUTE)
    assert tables["rows"][0]["cores"] == math.ceil(1000 * 30 / 60 / 250)
    assert sizing.sizing_tables({}) == {}


def test_client_addresses_are_distinct_loopback_addresses() -> None:
    addresses = [sizing.address(10, i) for i in range(70_000)]
    assert len(set(addresses)) == 70_000
    assert all(a.startswith("127.") for a in addresses)
    assert all(0 < int(part) < 255 for a in addresses for part in a.split(".")[1:])
    assert sizing.address(1, 0) == "127.1.1.1"
