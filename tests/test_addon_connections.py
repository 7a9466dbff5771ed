"""The connection-level stages through mitmproxy's own add-on manager: the destination
check happens in the very name resolution mitmproxy makes for the connection."""

from __future__ import annotations

import asyncio
import socket

import pytest
from mitmproxy.proxy import server_hooks
from mitmproxy.test import tflow

from support.harness import harness_for


def answer(ip: str) -> list[tuple]:
    return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, 443))]


async def test_a_name_is_checked_in_the_resolution_that_connects(tmp_path, monkeypatch):
    """An attacker's DNS answers the first lookup with a failure and the second with
    127.0.0.1: there is no second lookup to win, the one mitmproxy makes is the checked one."""
    loop = asyncio.get_running_loop()
    answers = iter([OSError("SERVFAIL"), answer("127.0.0.1"), answer("203.0.113.9")])
    calls: list[str] = []

    def flaky(host, port, **kwargs):
        calls.append(host)
        result = next(answers)
        if isinstance(result, Exception):
            raise result
        return result

    # What the system's resolver would answer, call by call (the proxy's lookups run it in
    # threads of their own: `resolver.Resolver`).
    monkeypatch.setattr(socket, "getaddrinfo", flaky)
    for h in harness_for(tmp_path):
        client, server = tflow.tclient_conn(), tflow.tserver_conn()
        server.address = ("evil.example", 443)
        data = server_hooks.ServerConnectionHookData(server, client)
        await h.tctx.master.addons.invoke_addon(h.addon, server_hooks.ServerConnectHook(data))
        assert server.error is None  # a name: nothing to say before it is resolved
        with pytest.raises(OSError, match="SERVFAIL"):  # no answer, no connection
            await loop.getaddrinfo("evil.example", 443)
        with pytest.raises(OSError, match=r"refused this destination \(loopback\)"):
            await loop.getaddrinfo("evil.example", 443)
        assert await loop.getaddrinfo("other.example", 443) == answer("203.0.113.9")
        assert calls == ["evil.example", "evil.example", "other.example"]


async def test_an_ip_literal_is_refused_before_any_connection(tmp_path):
    for h in harness_for(tmp_path):
        client, server = tflow.tclient_conn(), tflow.tserver_conn()
        server.address = ("169.254.169.254", 80)  # cloud metadata
        data = server_hooks.ServerConnectionHookData(server, client)
        await h.tctx.master.addons.invoke_addon(h.addon, server_hooks.ServerConnectHook(data))
        assert server.error == "auditproxy refused this destination (link-local)"
