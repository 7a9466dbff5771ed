"""auditproxy's mitmproxy options: names, types, defaults and help, in one table. Pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditproxy.decide.admission import Limits
from auditproxy.identity_options import IDENTITY_OPTIONS
from auditproxy.policy.files import DEFAULT_MAX_BYTES as DEFAULT_POLICY_MAX_BYTES
from auditproxy.policy.load import DEFAULT_POLICY
from auditproxy.preflight import PSEUDONYM_KEY_FILE as KEY_FILE_NAME

STATE_FILE_NAME = "auditproxy-state.sqlite3"
CHAIN_STATE_PREFIX = "auditproxy-log-chain"  # CONFDIR/auditproxy-log-chain[-LOG NAME].json
CHAIN_STATE_SLOTS = 32  # instances on one CONFDIR and one log name (e.g. stdout replicas)
DEFAULT_NOTICE_MAX_BYTES = 4 * 1024 * 1024
OPTIONS: tuple[tuple[str, type, Any, str], ...] = (  # name, type, default, help
    (
        "auditproxy_policy",
        str,
        str(DEFAULT_POLICY),
        "The department's electronic-network policy (YAML). Watched: a valid change "
        "applies within seconds; an invalid one is logged and the last good policy stays.",
    ),
    (
        "auditproxy_reload_interval",
        str,
        "1",
        "Seconds between checks of the policy file and the access log's rotation.",
    ),
    (
        "auditproxy_access_log",
        str,
        "-",
        "Where the JSON access log goes: a file (reopened when rotated) or '-' for stdout.",
    ),
    (
        "auditproxy_metrics_host",
        str,
        "127.0.0.1",
        "Address for the /metrics and /healthz endpoints.",
    ),
    (
        "auditproxy_metrics_port",
        int,
        9464,
        "Port for the /metrics and /healthz endpoints; 0 turns them off.",
    ),
    (
        "auditproxy_pseudonym_key",
        str,
        "",
        "File holding the secret key for user pseudonyms (HMAC-SHA256). Default: "
        f"CONFDIR/{KEY_FILE_NAME}, created with mode 0600 on first start.",
    ),
    (
        "auditproxy_state",
        str,
        "",
        "The daily notice state: a SQLite file, or redis://HOST:PORT/DB (rediss:// for "
        "TLS) shared by several instances behind a load balancer. Default: "
        f"CONFDIR/{STATE_FILE_NAME}.",
    ),
    (
        "auditproxy_log_chain_state",
        str,
        "",
        "Where the access log's hash chain keeps its place across restarts (a small JSON "
        "file, saved at most once a second and at shutdown; keep it outside the rotated "
        "log files' pattern). Default: CONFDIR/auditproxy-log-chain.json for stdout, "
        "CONFDIR/auditproxy-log-chain-LOGNAME.json for a log file; an instance that finds "
        "it held by another takes the next free one (-2, -3...). One process per file.",
    ),
    (
        "auditproxy_notice_max_bytes",
        int,
        DEFAULT_NOTICE_MAX_BYTES,
        "Largest page (decoded bytes) the notice is put into; larger pages are skipped "
        "(reason too_large). Keep it at or below mitmproxy's stream_large_bodies.",
    ),
    (
        "auditproxy_policy_max_bytes",
        int,
        DEFAULT_POLICY_MAX_BYTES,
        "Largest policy file read (bytes); a larger one, or one that is not a regular file "
        "(a FIFO, a device), is refused and the policy in force stays.",
    ),
    # Hostile and broken clients (decide/admission.py, decide/guard.py).
    (
        "auditproxy_max_connections",
        int,
        0,
        "Most client connections open at once; more are closed as they connect (reason "
        "limit-global). 0: half of what the open-file limit leaves after the reserve, at "
        "most 16384.",
    ),
    (
        "auditproxy_max_connections_per_client",
        int,
        256,
        "Most connections open at once from one client address (reason limit-address); "
        "0: no limit. The policy's identity.trusted_proxies and balancers are exempt.",
    ),
    (
        "auditproxy_file_reserve",
        int,
        64,
        "Open files kept free for the metrics and health endpoints, the log, the notice "
        "state and the policy: client connections are refused (limit-files) before it.",
    ),
    (
        "auditproxy_head_max_bytes",
        int,
        64 * 1024,
        "Largest request head (request line, headers, cookies) in bytes: a larger one "
        "closes the connection (431 on plain HTTP/1; reason head-size).",
    ),
    (
        "auditproxy_head_timeout",
        str,
        "10",
        "Seconds a request head may take from its first byte, and a new connection or "
        "tunnel before its first request (408 on plain HTTP/1; reason head-timeout).",
    ),
    (
        "auditproxy_idle_timeout",
        str,
        "60",
        "Seconds a kept-alive connection may wait for its next request before it is "
        "closed (quietly: nothing is refused).",
    ),
    (
        "auditproxy_body_timeout",
        str,
        "30",
        "Seconds a request body may fall silent; after the first such span it must also "
        "average 500 bytes/s (reason body-timeout).",
    ),
    *IDENTITY_OPTIONS,
)

_INT_LIMITS = {  # option -> (Limits field, lowest, highest)
    "auditproxy_max_connections": ("max_connections", 0, 10_000_000),
    "auditproxy_max_connections_per_client": ("max_per_client", 0, 10_000_000),
    "auditproxy_file_reserve": ("file_reserve", 16, 1_000_000),
    "auditproxy_head_max_bytes": ("head_max_bytes", 4096, 16 * 1024 * 1024),
}
_SECONDS = {  # option -> (Limits field, lowest, highest)
    "auditproxy_head_timeout": ("head_timeout", 0.5, 3600.0),
    "auditproxy_idle_timeout": ("idle_timeout", 1.0, 86400.0),
    "auditproxy_body_timeout": ("body_timeout", 1.0, 86400.0),
}
LIMIT_OPTIONS = frozenset(_INT_LIMITS) | frozenset(_SECONDS)


def limits_from(options: Any) -> Limits:
    """The `auditproxy_*` limit options -> Limits; ValueError naming the option if wrong."""
    values: dict[str, Any] = {}
    for name, (field, low, high) in _INT_LIMITS.items():
        value = getattr(options, name)
        if not low <= value <= high:
            raise ValueError(f"{name} must be from {low} to {high}, not {value}")
        values[field] = value
    for name, (field, low, high) in _SECONDS.items():
        text = getattr(options, name)
        try:
            seconds = float(text)
        except ValueError:
            seconds = -1.0
        if not low <= seconds <= high:
            raise ValueError(f"{name} must be seconds from {low:g} to {high:g}, not {text!r}")
        values[field] = seconds
    return Limits(**values)


def parse_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise ValueError(
            f"auditproxy_reload_interval must be seconds between 0.05 and 3600, not {text!r}"
        )
    return value


def chain_state_candidates(confdir: str, access_log: str) -> list[Path]:
    """The default state files of the access log's chain, in order of preference: one
    name per log file (instances never share a log file), then numbered slots for
    instances that share CONFDIR and a log name (stdout)."""
    base = CHAIN_STATE_PREFIX
    if access_log != "-":
        base += "-" + Path(access_log).name
    folder = Path(confdir).expanduser()
    names = [f"{base}.json"] + [f"{base}-{n}.json" for n in range(2, CHAIN_STATE_SLOTS + 1)]
    return [folder / name for name in names]
