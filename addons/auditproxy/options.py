"""auditproxy's mitmproxy options: names, types, defaults and help, in one table. Pure."""

from __future__ import annotations

from typing import Any

from auditproxy.policy.load import DEFAULT_POLICY
from auditproxy.preflight import PSEUDONYM_KEY_FILE as KEY_FILE_NAME

STATE_FILE_NAME = "auditproxy-state.sqlite3"
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
        "auditproxy_notice_max_bytes",
        int,
        DEFAULT_NOTICE_MAX_BYTES,
        "Largest page (decoded bytes) the notice is put into; larger pages are skipped "
        "(reason too_large). Keep it at or below mitmproxy's stream_large_bodies.",
    ),
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
