"""auditproxy's mitmproxy options: names, types, defaults and help, in one table. Pure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from auditproxy.identity_options import IDENTITY_OPTIONS
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
    *IDENTITY_OPTIONS,
)


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
