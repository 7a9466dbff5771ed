"""WebSocket messages held within a bound, and grown without copying.

mitmproxy relays a WebSocket message only once it is complete: `WebsocketLayer` collects
its fragments in `WebsocketConnection.frame_buf`, with no limit, growing the last fragment
with `bytes +=` (a copy of everything so far for each read). A site that sends one message
that never ends (endless continuation frames) grew the proxy by hundreds of megabytes a
second until the kernel killed it, for everyone (issue #13); a message sent in many small
reads cost time quadratic in its size.

`install` makes the layer build `BoundedConnection`s instead: fragments grow in place
(`bytearray`), and a message larger than the bound, or of more fragments than
`MAX_FRAGMENTS`, ends the WebSocket as a close with code 1009 ("message too big", RFC
6455 7.4.1) sent to both sides; the access record of the WebSocket says why
(`error.message`). The bound is the size above which `auditproxy run` streams HTTP bodies
rather than hold them (`stream_large_bodies`): the proxy holds no more of one WebSocket
message than of one response.

This works on mitmproxy's internals (`mitmproxy.proxy.layers.websocket`, 12.x), like the
gate's readers; `tests/test_websocket_limit.py` checks them on the installed mitmproxy.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import wsproto.events
from mitmproxy.proxy.layers import websocket

DEFAULT_MAX_BYTES = 4 * 1024 * 1024
MAX_FRAGMENTS = 4096  # frames in one message (each held fragment costs memory of its own)
CLOSE_TOO_BIG = 1009
CLOSE_REASON = "auditproxy: message too big"  # how `websocket_end` tells the close apart


class Fragments(list):
    """`frame_buf`: the fragments of the message being received, each a `bytearray`, so
    that the layer's `frame_buf[-1] += data` appends in place."""

    def __init__(self, fragments: Iterable[bytes] = (b"",)) -> None:
        super().__init__(bytearray(fragment) for fragment in fragments)

    def append(self, fragment: Any) -> None:
        super().append(bytearray(fragment))


class BoundedConnection(websocket.WebsocketConnection):
    """A `WebsocketConnection` that holds at most `max_bytes` of one message."""

    max_bytes = DEFAULT_MAX_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._held = 0
        self._fragments = 0
        super().__init__(*args, **kwargs)

    @property  # type: ignore[override]
    def frame_buf(self) -> Fragments:
        return self._frame_buf

    @frame_buf.setter
    def frame_buf(self, fragments: Iterable[bytes]) -> None:
        self._frame_buf = Fragments(fragments)

    def events(self) -> Iterator[wsproto.events.Event]:
        for event in super().events():
            if isinstance(event, wsproto.events.Message):
                self._held += len(event.data)
                self._fragments += event.frame_finished
                if self._held > self.max_bytes or self._fragments > MAX_FRAGMENTS:
                    self._held = self._fragments = 0
                    self.frame_buf = [b""]
                    yield wsproto.events.CloseConnection(CLOSE_TOO_BIG, CLOSE_REASON)
                    return
                if event.message_finished:
                    self._held = self._fragments = 0
            yield event


def why_closed(websocket_data: Any) -> str | None:
    """For a WebSocket's record: why the bound closed it (None if it did not)."""
    if websocket_data is None or websocket_data.close_reason != CLOSE_REASON:
        return None
    sender = "client" if websocket_data.closed_by_client else "server"
    return f"{CLOSE_REASON}: the {sender} sent a message over {BoundedConnection.max_bytes} bytes"


def install(max_bytes: int | None) -> None:
    """Make mitmproxy's WebSocket layer hold at most `max_bytes` of a message (None: the
    default) from now on. Idempotent."""
    BoundedConnection.max_bytes = max_bytes if max_bytes else DEFAULT_MAX_BYTES
    websocket.WebsocketConnection = BoundedConnection  # type: ignore[misc]
