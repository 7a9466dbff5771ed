"""Readiness (`sinks.health`, `/readyz`): what is degraded, and what takes an instance out."""

from __future__ import annotations

import json

import pytest

from auditproxy.sinks.health import Snapshot, readiness
from auditproxy.sinks.http import Heartbeat, health_app
from auditproxy.sinks.metrics import Metrics


def snapshot(**changes: object) -> Snapshot:
    base = dict(
        event_loop_age=0.2,
        event_loop_ok=True,
        policy="P",
        policy_sha256="abc",
        state_backend="sqlite",
        state_configured="sqlite",
        log_backlog_limit=10_000,
        open_files=50,
        files_limit=1024,
        file_reserve=64,
        clients=3,
        max_clients=480,
    )
    base.update(changes)
    return Snapshot(**base)  # type: ignore[arg-type]


def test_ready() -> None:
    ready, body = readiness(snapshot())
    assert ready and body["status"] == "ready" and body["degraded"] == body["not_ready"] == []
    assert all(check["ok"] for check in body["checks"].values())


@pytest.mark.parametrize(
    ("changes", "degraded"),
    [
        ({"reload_problem": "policy p.yaml:3: bad", "reload_failing_for": 12.0}, "policy"),
        ({"state_backend": "memory"}, "state"),
        ({"state_lost": "removed", "state_losses": 1}, "state"),
        ({"log_ok": False, "log_backlog": 10}, "access_log"),
        ({"open_files": 900}, "files"),
    ],
)
def test_degraded_but_still_ready(changes: dict, degraded: str) -> None:
    """Shared causes (a policy typo, Redis down) are the same on every instance: they are
    reported, never a reason to take every instance out at once."""
    ready, body = readiness(snapshot(**changes))
    assert ready and body["status"] == "degraded" and body["degraded"] == [degraded]


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"event_loop_ok": False, "event_loop_age": 30.0}, "event_loop"),
        ({"policy": None}, "policy"),
        ({"log_ok": False, "log_backlog": 5000}, "access_log"),
        ({"open_files": 959}, "files"),
        ({"clients": 480}, "connections"),
    ],
)
def test_not_ready(changes: dict, why: str) -> None:
    ready, body = readiness(snapshot(**changes))
    assert not ready and body["status"] == "not-ready" and why in body["not_ready"]


def test_the_policy_check_says_what_failed() -> None:
    _, body = readiness(snapshot(reload_problem="cannot read policy p: is a FIFO"))
    assert body["checks"]["policy"]["last_reload"] == "cannot read policy p: is a FIFO"
    assert body["checks"]["policy"]["in_force"] == "P"


def call(app, path: str) -> tuple[str, dict]:
    seen: list[str] = []
    body = b"".join(app({"PATH_INFO": path}, lambda status, headers: seen.append(status)))
    return seen[0], json.loads(body)


def test_readyz_answers_503_only_when_not_ready_and_healthz_stays_as_it_was() -> None:
    verdict = [readiness(snapshot())]
    app = health_app(Metrics(), Heartbeat(), dict, lambda: verdict[0])
    assert call(app, "/readyz")[0] == "200 OK"
    verdict[0] = readiness(snapshot(reload_problem="x"))
    assert call(app, "/readyz") == ("200 OK", verdict[0][1])
    verdict[0] = readiness(snapshot(clients=480))
    status, body = call(app, "/readyz")
    assert status == "503 Service Unavailable" and body["not_ready"] == ["connections"]
    status, body = call(app, "/healthz")  # liveness: the event loop only, as before
    assert status == "200 OK" and body["status"] == "ok" and "checks" not in body
