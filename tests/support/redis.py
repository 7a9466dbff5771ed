"""A real `redis-server` for tests (Debian package `redis-server`)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from .ports import free_port, wait_for_port

NEEDS_SERVER = "needs redis-server: apt-get install --no-install-recommends redis-server"


class RedisServer:
    """A real `redis-server` on a free 127.0.0.1 port: no persistence, always stopped.

    `pause`/`resume` send SIGSTOP/SIGCONT (a server that accepts connections and never
    answers); `stop` then `start` is a restart on the same port, with an empty store.
    """

    def __init__(self, workdir: Path, *extra: str) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.extra = list(extra)
        self.log = workdir / f"redis-{self.port}.log"
        self.process: subprocess.Popen | None = None
        self.paused = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, db: int = 0, **options: float) -> str:
        query = "&".join(f"{k}={v}" for k, v in options.items())
        return f"redis://{self.address}/{db}" + (f"?{query}" if query else "")

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip(NEEDS_SERVER)
        command = [binary, "--bind", "127.0.0.1", "--port", str(self.port)]
        command += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
        command += ["--dir", str(self.workdir), "--logfile", str(self.log), *self.extra]
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_for_port("127.0.0.1", self.port, timeout=10)
        except TimeoutError:
            self.stop()
            log = self.log.read_text() if self.log.exists() else ""
            raise AssertionError(f"redis-server did not start:\n{log[-2000:]}") from None
        return self

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)
        self.paused = False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        if self.paused:
            self.resume()
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def client(self, db: int = 0):
        """A plain client for looking at what the store wrote."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)
