"""Calling mitmproxy hooks on an add-on and its sub-add-ons, in order, as mitmproxy does.

auditproxy's add-on is a pipeline of stage add-ons (`AuditProxy.addons`); a test that
drives a hook must reach every stage, so it goes through mitmproxy's own add-on manager.
"""

from __future__ import annotations

import inspect
from typing import Any

from mitmproxy import hooks
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
            master = self.tctx.master
            hook = event(*args)
            if any(inspect.iscoroutinefunction(getattr(a, name, None)) for a in _tree(self.addon)):
                # An async hook (a stage that waits): run it to its end on the master's loop.
                master.event_loop.run_until_complete(master.addons.invoke_addon(self.addon, hook))
            else:
                master.addons.invoke_addon_sync(self.addon, hook)

        return invoke


def _tree(addon: Any) -> list[Any]:
    found = [addon]
    for child in getattr(addon, "addons", []):
        found += _tree(child)
    return found
