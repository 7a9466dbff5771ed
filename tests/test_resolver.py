"""`resolver.Resolver`: a name whose DNS never answers holds up only its own client."""

from __future__ import annotations

import asyncio
import threading

import pytest

from auditproxy.resolver import Resolver


class Lookups:
    """A stand-in for `socket.getaddrinfo`: `hang.test` waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.asked: list[str] = []

    def __call__(self, host: str, port: int, **_: object) -> list:
        self.asked.append(host)
        if host == "hang.test":
            self.release.wait(5)
        return [(2, 1, 6, "", ("192.0.2.1", port))]


async def test_a_client_gets_a_share_of_the_threads_and_others_go_on():
    lookups = Lookups()
    resolver = Resolver(threads=8, per_client=2, timeout=0.2, lookup=lookups)
    try:
        for _ in range(2):  # the attacker's two lookups time out, their threads stay busy
            with pytest.raises(OSError, match=r"no answer for hang\.test"):
                await resolver.getaddrinfo("10.0.0.66", "hang.test", 443)
        with pytest.raises(OSError, match="2 name lookups of this client"):
            await resolver.getaddrinfo("10.0.0.66", "other.test", 443)  # refused, not queued
        assert lookups.asked.count("other.test") == 0
        infos = await resolver.getaddrinfo("10.0.0.7", "www.example.test", 443)
        assert infos[0][4] == ("192.0.2.1", 443)  # someone else: answered at once
        assert await resolver.getaddrinfo("", "proxy.test", 80)  # the proxy's own: no share
        lookups.release.set()  # the DNS answers at last: the attacker's share comes back
        for _ in range(50):
            await asyncio.sleep(0.02)
            if not resolver.busy:
                break
        assert resolver.busy == {}
        assert await resolver.getaddrinfo("10.0.0.66", "hang.test", 443)
    finally:
        lookups.release.set()
        resolver.close()
