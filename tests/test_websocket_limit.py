"""`websocket_limit`: a WebSocket message is held within a bound, and grown in place."""

from __future__ import annotations

import pytest
import wsproto
import wsproto.events
from mitmproxy.proxy.layers import websocket

from auditproxy import websocket_limit
from auditproxy.websocket_limit import MAX_FRAGMENTS, BoundedConnection


@pytest.fixture
def bounded():
    original = websocket.WebsocketConnection
    websocket_limit.install(1000)
    yield
    websocket.WebsocketConnection = original
    BoundedConnection.max_bytes = websocket_limit.DEFAULT_MAX_BYTES


def receive(frames: list[tuple[bytes, bool]]) -> tuple[list, BoundedConnection]:
    """What the proxy's client side makes of these frames from a browser, read by read."""
    # After the HTTP upgrade, as mitmproxy's layer has them: both sides already open.
    browser = wsproto.Connection(wsproto.ConnectionType.CLIENT)
    proxy = websocket.WebsocketConnection(wsproto.ConnectionType.SERVER, conn=None)
    seen = []
    for data, finished in frames:
        proxy.receive_data(
            browser.send(wsproto.events.BytesMessage(data, message_finished=finished))
        )
        for event in proxy.events():
            seen.append(event)
            if isinstance(event, wsproto.events.Message):
                proxy.frame_buf[-1] += event.data  # what mitmproxy's layer does
                if event.frame_finished and not event.message_finished:
                    proxy.frame_buf.append(b"")
    return seen, proxy


def test_the_layer_builds_bounded_connections_once_installed(bounded):
    assert websocket.WebsocketConnection is BoundedConnection
    assert BoundedConnection.max_bytes == 1000


def test_messages_within_the_bound_pass_whole_and_fragments_grow_in_place(bounded):
    seen, proxy = receive([(b"a" * 600, False), (b"b" * 300, True), (b"c" * 900, True)])
    assert [type(e) for e in seen] == [wsproto.events.BytesMessage] * 3
    assert all(isinstance(f, bytearray) for f in proxy.frame_buf)
    assert b"".join(proxy.frame_buf) == b"a" * 600 + b"b" * 300 + b"c" * 900


def test_a_message_over_the_bound_is_a_close_1009(bounded):
    seen, proxy = receive([(b"a" * 600, False), (b"b" * 600, False)])
    assert isinstance(seen[-1], wsproto.events.CloseConnection)
    assert (seen[-1].code, seen[-1].reason) == (1009, websocket_limit.CLOSE_REASON)
    assert proxy.frame_buf == [bytearray()]  # what was held is let go


def test_too_many_fragments_is_a_close_1009_whatever_their_size(bounded):
    BoundedConnection.max_bytes = 1 << 30
    seen, _ = receive([(b"", False)] * (MAX_FRAGMENTS + 1))
    assert isinstance(seen[-1], wsproto.events.CloseConnection) and seen[-1].code == 1009


def test_without_a_size_the_default_bound_applies(bounded):
    websocket_limit.install(None)
    assert BoundedConnection.max_bytes == websocket_limit.DEFAULT_MAX_BYTES
