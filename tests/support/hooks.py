"""Calling mitmproxy hooks on an add-on and its sub-add-ons, in order, as mitmproxy does.

auditproxy's add-on is a pipeline of stage add-ons (`AuditProxy.addons`); a test that
drives a hook must reach every stage, in mitmproxy's order (`traverse`). A hook may return
an awaitable (the notice's work, off the event loop): like mitmproxy, the call waits for it,
on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable
from typing import Any

from mitmproxy import hooks
from mitmproxy.addonmanager import traverse
from mitmproxy.proxy import server_hooks
from mitmproxy.proxy.layers import http as http_layer
from mitmproxy.proxy.layers import tcp as tcp_layer
from mitmproxy.proxy.layers import tls as tls_layer
from mitmproxy.proxy.layers import websocket as websocket_layer
from mitmproxy.test import taddons

EVENTS: dict[str, type[hooks.Hook]] = {
    "client_connected": server_hooks.ClientConnectedHook,
    "http_connect": http_layer.HttpConnectHook,
    "http_connect_error": http_layer.HttpConnectErrorHook,
    "requestheaders": http_layer.HttpRequestHeadersHook,
    "request": http_layer.HttpRequestHook,
    "responseheaders": http_layer.HttpResponseHeadersHook,
    "response": http_layer.HttpResponseHook,
    "error": http_layer.HttpErrorHook,
    "tls_clienthello": tls_layer.TlsClienthelloHook,
    "tls_established_client": tls_layer.TlsEstablishedClientHook,
    "tls_failed_client": tls_layer.TlsFailedClientHook,
    "tls_failed_server": tls_layer.TlsFailedServerHook,
    "server_connect": server_hooks.ServerConnectHook,
    "server_connected": server_hooks.ServerConnectedHook,
    "server_disconnected": server_hooks.ServerDisconnectedHook,
    "tcp_start": tcp_layer.TcpStartHook,
    "tcp_message": tcp_layer.TcpMessageHook,
    "tcp_end": tcp_layer.TcpEndHook,
    "tcp_error": tcp_layer.TcpErrorHook,
    "websocket_start": websocket_layer.WebsocketStartHook,
    "websocket_message": websocket_layer.WebsocketMessageHook,
    "websocket_end": websocket_layer.WebsocketEndHook,
    "client_disconnected": server_hooks.ClientDisconnectedHook,
    "running": hooks.RunningHook,
    "done": hooks.DoneHook,
}


class Hooks:
    """`hooks.requestheaders(flow)` runs that hook through the add-on's whole pipeline."""

    def __init__(self, tctx: taddons.context, addon: Any) -> None:
        self.tctx, self.addon = tctx, addon

    def __getattr__(self, name: str) -> Any:
        event = EVENTS.get(name)
        if event is None:
            raise AttributeError(name)

        def invoke(*args: Any) -> None:
            hook = event(*args)
            for addon in traverse([self.addon]):
                handler = getattr(addon, hook.name, None)
                if callable(handler):
                    result = handler(*hook.args())
                    if inspect.isawaitable(result):
                        asyncio.run(_wait(result))

        return invoke


async def _wait(pending: Awaitable[Any]) -> None:
    await pending
