"""Loopback ports for processes that tests start, and waiting until they listen.

``free_port`` has the usual race (another process may take the port between our ``close`` and
the child's ``bind``); on a test machine it is rare, and a fixture that retries once on
"address in use" is cheaper than the alternatives.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request

LOOPBACK = "127.0.0.1"


def free_port(host: str = LOOPBACK) -> int:
    """Return a TCP port on ``host`` that was free a moment ago (bound with port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until something accepts TCP connections on ``host:port``.

    Raises ``TimeoutError`` naming the address, so a fixture whose child process failed to
    start says where it looked rather than hanging or failing later with a vague error.
    """
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s: {last_error}")
        time.sleep(0.05)


def wait_for_http(url: str, timeout: float = 10.0, status: int | None = 200) -> int:
    """Wait until ``url`` answers over HTTP (directly, never through a proxy).

    With ``status`` set, keep waiting until that status comes back; ``None`` accepts any
    answer. Returns the status seen. Meant for endpoints such as ``/healthz`` and ``/metrics``.
    """
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while True:
        try:
            with opener.open(url, timeout=2.0) as response:
                code = int(response.status)
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (OSError, ValueError) as exc:
            code, last = 0, repr(exc)
        if code and (status is None or code == status):
            return code
        if code:
            last = f"status {code}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{url} not ready after {timeout}s: {last}")
        time.sleep(0.05)
