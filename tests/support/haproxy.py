"""HAProxy for end-to-end tests: the shipped deploy/haproxy/haproxy.cfg with the test's
addresses put in (bind, server lines; the global section is the test's own: no chroot,
user or daemon), started in the foreground on free 127.0.0.1 ports, always stopped."""

from __future__ import annotations

import re
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .paths import REPO
from .ports import free_port, wait_for_port
from .proxy import AuditProxyProcess

SHIPPED_HAPROXY = REPO / "deploy" / "haproxy" / "haproxy.cfg"


def fetch(url: str) -> str:
    """GET a status endpoint directly (never through a proxy from the environment)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return response.read().decode()


def haproxy_config(shipped: str, port: int, stats_port: int, servers: list[tuple]) -> str:
    """The shipped configuration with the test's addresses: `servers` is (name, port,
    health port). The global section (chroot, user, daemon, syslog) is the test's own."""
    out: list[str] = []
    section = ""
    template = ""
    for line in shipped.splitlines():
        if line[:1].isalpha():
            section = line.strip()
            if section == "global":
                out += ["global", "    maxconn 2000"]
                continue
        elif section == "global":
            continue
        words = line.split()
        if words[:1] == ["bind"]:
            bind = stats_port if section.startswith("frontend stats") else port
            line = f"    bind 127.0.0.1:{bind}"
        elif words[:1] == ["server"]:
            if template:
                continue
            template = " ".join(words[3:])
            assert re.search(r"\bcheck port \d+\b", template), line
            for name, server_port, health_port in servers:
                options = re.sub(r"\bport \d+", f"port {health_port}", template)
                out.append(f"    server {name} 127.0.0.1:{server_port} {options}")
            continue
        out.append(line)
    assert template, "no server line in the shipped haproxy.cfg"
    return "\n".join(out) + "\n"


@dataclass
class HAProxy:
    port: int
    stats_port: int
    process: subprocess.Popen
    log: Path

    def server_states(self) -> dict[str, str]:
        """Server name -> UP/DOWN/..., from the stats page's CSV."""
        body = fetch(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        rows = [line.split(",") for line in body.splitlines() if line.startswith("auditproxy,")]
        return {row[1]: row[17] for row in rows if row[1] not in {"FRONTEND", "BACKEND"}}

    def wait_for(self, states: dict[str, str], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.server_states()) != states:
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy servers {current}, wanted {states}")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def start_haproxy(workdir: Path, servers: list[AuditProxyProcess]) -> HAProxy:
    port, stats_port = free_port(), free_port()
    config = workdir / "haproxy.cfg"
    config.write_text(
        haproxy_config(
            SHIPPED_HAPROXY.read_text(),
            port,
            stats_port,
            [(n, s.port, s.metrics_port) for n, s in zip("ab", servers, strict=True)],
        )
    )
    check = subprocess.run(
        ["haproxy", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = workdir / "haproxy.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    haproxy = HAProxy(port, stats_port, process, log)
    try:
        wait_for_port("127.0.0.1", port, timeout=10)
        wait_for_port("127.0.0.1", stats_port, timeout=10)
    except TimeoutError:
        haproxy.stop()
        raise AssertionError(f"HAProxy did not start:\n{log.read_text()[-2000:]}") from None
    return haproxy
