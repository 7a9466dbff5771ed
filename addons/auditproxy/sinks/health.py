"""Readiness (`/readyz`): what is degraded, and whether this instance should get traffic.
Pure: a snapshot of the runtime in, a verdict out.

`/healthz` is liveness: 503 only when the event loop has stalled (restart me). `/readyz`
names every degradation, and answers 503 only for those that sending traffic to another
instance cures:

    not ready (503)   the event loop stalled; no policy in force; open files at the reserve
                      (new connections are refused); client connections at their maximum;
                      the access log's backlog over half its bound (records at risk)
    degraded (200)    the last policy reload failed (the last good policy is in force); the
                      notice state on its memory fallback or re-creating lost data; the
                      access log failing with a small backlog; open files over 80% of the
                      limit

A failing policy or an unreachable Redis is the same for every instance: if they made
readiness fail, one typo in a ConfigMap would take every instance out of the load balancer
at once. They are reported, and alerted on (`auditproxy_policy_last_reload_successful`,
`auditproxy_state_backend`), but the instance stays in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FILES_DEGRADED = 0.8


@dataclass
class Snapshot:
    event_loop_age: float
    event_loop_ok: bool
    policy: str | None
    policy_sha256: str | None
    reload_problem: str | None = None  # why the last reload failed, while it fails
    reload_failing_for: float | None = None  # seconds
    state_backend: str | None = None
    state_configured: str | None = None
    state_lost: str | None = None  # a loss being repaired
    state_losses: int = 0
    log_ok: bool = True
    log_backlog: int = 0
    log_backlog_limit: int = 10_000
    open_files: int = 0
    files_limit: int = 0
    file_reserve: int = 0
    clients: int = 0
    max_clients: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def readiness(s: Snapshot) -> tuple[bool, dict[str, Any]]:
    """(ready, the JSON body)."""
    not_ready: list[str] = []
    degraded: list[str] = []
    checks: dict[str, dict[str, Any]] = {}

    checks["event_loop"] = {"ok": s.event_loop_ok, "age_seconds": round(s.event_loop_age, 3)}
    if not s.event_loop_ok:
        not_ready.append("event_loop")

    policy: dict[str, Any] = {"ok": s.reload_problem is None, "in_force": s.policy}
    policy["sha256"] = s.policy_sha256
    if s.policy is None:
        policy["ok"] = False
        not_ready.append("policy")
    elif s.reload_problem is not None:
        policy["last_reload"] = s.reload_problem
        policy["failing_for_seconds"] = round(s.reload_failing_for or 0.0, 1)
        degraded.append("policy")
    checks["policy"] = policy

    state_ok = s.state_backend == s.state_configured and s.state_lost is None
    checks["state"] = {
        "ok": state_ok,
        "backend": s.state_backend,
        "configured": s.state_configured,
        "losses": s.state_losses,
    }
    if s.state_lost is not None:
        checks["state"]["re_creating_after"] = s.state_lost
    if not state_ok:
        degraded.append("state")

    at_risk = s.log_backlog * 2 >= s.log_backlog_limit
    checks["access_log"] = {
        "ok": s.log_ok and not at_risk,
        "backlog": s.log_backlog,
        "backlog_limit": s.log_backlog_limit,
    }
    if at_risk:
        not_ready.append("access_log")
    elif not s.log_ok:
        degraded.append("access_log")

    files_left = s.files_limit - s.file_reserve - s.open_files
    checks["files"] = {
        "ok": True,
        "open": s.open_files,
        "limit": s.files_limit,
        "reserve": s.file_reserve,
    }
    if s.files_limit and files_left < 2:
        checks["files"]["ok"] = False
        not_ready.append("files")
    elif s.files_limit and s.open_files >= FILES_DEGRADED * s.files_limit:
        checks["files"]["ok"] = False
        degraded.append("files")

    full = bool(s.max_clients) and s.clients >= s.max_clients
    checks["connections"] = {"ok": not full, "clients": s.clients, "max": s.max_clients}
    if full:
        not_ready.append("connections")

    status = "not-ready" if not_ready else "degraded" if degraded else "ready"
    body = {
        "status": status,
        "not_ready": not_ready,
        "degraded": degraded,
        "checks": checks,
        **s.extra,
    }
    return not not_ready, body
