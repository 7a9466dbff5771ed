"""A real `auditproxy run` as a child process on free loopback ports, always stopped."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .clock import faketime_env
from .ports import free_port, wait_for_http, wait_for_port


class AuditProxyProcess:
    """`python -m auditproxy.cli run ...` with its access log in a file and its stderr kept.

    `args` are extra `auditproxy run` arguments (e.g. `--set`, `--policy`). `nofile` is the
    (soft, hard) open-file limit the process starts with.
    """

    def __init__(
        self,
        workdir: Path,
        args: list[str] | None = None,
        *,
        policy: Path | None = None,
        upstream_mode: str | None = None,
        upstream_ca: Path | None = None,
        start: bool = True,
        nofile: tuple[int, int] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.workdir = workdir
        self.nofile = nofile
        self.env = env or {}  # e.g. KRB5_CONFIG for a test realm
        self.port = free_port()
        self.metrics_port = free_port()
        self.confdir = workdir / "conf"
        self.access_log = workdir / "access.log"
        self.stderr_path = workdir / "proxy.stderr"
        self.command = [
            sys.executable,
            "-m",
            "auditproxy.cli",
            "run",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--confdir",
            str(self.confdir),
            "--access-log",
            str(self.access_log),
            "--state",
            str(workdir / "state.sqlite3"),
            "--set",
            "auditproxy_reload_interval=0.2",
        ]
        if policy is not None:
            self.command += ["--policy", str(policy)]
        if upstream_mode is not None:
            self.command += ["--set", f"mode={upstream_mode}"]
        if upstream_ca is not None:
            self.command += ["--set", f"ssl_verify_upstream_trusted_ca={upstream_ca}"]
        self.command += args or []
        self.process: subprocess.Popen | None = None
        if start:
            self.start()

    def start(self, timeout: float = 30, *, health: bool = True) -> None:
        """Start and wait for the proxy port (and `/healthz`, unless `health=False`);
        fails with the process's stderr if it exits instead."""
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.command,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                # a shifted test clock (support.clock)
                env={**os.environ, **faketime_env(), **self.env},
                preexec_fn=self._limit_files if self.nofile else None,
            )
        try:
            deadline = time.monotonic() + timeout
            while True:  # the port, unless the process gives up first (bad options...)
                if self.process.poll() is not None:
                    raise OSError(f"it exited with status {self.process.returncode}")
                try:
                    wait_for_port("127.0.0.1", self.port, timeout=0.2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            if health:
                wait_for_http(self.metrics_url("/healthz"), timeout=timeout)
        except (TimeoutError, OSError) as e:
            self.stop()
            raise AssertionError(f"auditproxy run did not start ({e}):\n{self.stderr()}") from None

    def _limit_files(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, self.nofile)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def ca_file(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    def metrics_url(self, path: str = "/metrics") -> str:
        return f"http://127.0.0.1:{self.metrics_port}{path}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def records(self) -> list[dict]:
        if not self.access_log.exists():
            return []
        # Only whole lines: the proxy may be appending one while it is read (one write(2),
        # but a reader of a regular file can see part of it).
        lines = self.access_log.read_bytes().split(b"\n")[:-1]
        return [json.loads(line) for line in lines if line.strip()]

    def wait_for_records(
        self, n: int, predicate: Callable[[dict], bool] = lambda r: True, timeout: float = 10
    ) -> list[dict]:
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records() if predicate(r)]
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"wanted {n} records, found {len(found)}: {found}")
            time.sleep(0.05)

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample on /metrics (0 if absent)."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(self.metrics_url(), timeout=5) as response:
            text = response.read().decode()
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    return sample.value
        return 0.0

    def wait_for_metric(self, name: str, value: float, timeout: float = 10, **labels: str) -> None:
        deadline = time.monotonic() + timeout
        while (current := self.metric(name, **labels)) != value:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}{labels} = {current}, wanted {value}")
            time.sleep(0.1)

    def signal(self, signum: int) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signum)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        return self.process.returncode

    def __enter__(self) -> AuditProxyProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
