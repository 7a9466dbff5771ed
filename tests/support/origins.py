"""Small real servers for the audit-trail tests, each on 127.0.0.0/8, bounded, stoppable:
a TCP echo server (optionally greeting first, like SSH), an HTTP origin that records what
it receives, a TLS HTTP origin with a test-CA certificate, and a WebSocket echo server.

Each counts the connections it accepted, so a test can prove the proxy never connected.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Self

import wsproto
import wsproto.events

from .certs import CertAuthority

ACCEPT_TIMEOUT = 0.2
IO_TIMEOUT = 10.0
MAX_CONNECTIONS = 200


class _Server:
    """A listening socket and a thread that serves each connection on its own thread."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(ACCEPT_TIMEOUT)
        self.host, self.port = self.sock.getsockname()[:2]
        self.accepted = 0
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.is_set() and self.accepted < MAX_CONNECTIONS:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            conn.settimeout(IO_TIMEOUT)
            thread = threading.Thread(target=self._guarded, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _guarded(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError, ssl.SSLError), conn:
            self.serve(conn)

    def serve(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._thread.join(2)
        for thread in self._threads:
            thread.join(2)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class EchoServer(_Server):
    """Echoes what it receives; with `greeting`, sends it first (a server-first protocol)."""

    def __init__(self, host: str = "127.0.0.1", greeting: bytes = b"") -> None:
        super().__init__(host)
        self.greeting = greeting

    def serve(self, conn: socket.socket) -> None:
        if self.greeting:
            conn.sendall(self.greeting)
        while data := conn.recv(65536):
            self.received.append(data)
            conn.sendall(data)


class RecordingOrigin(_Server):
    """A plain HTTP/1.1 origin: records each request's head, answers 200 with a small page."""

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(host)
        self.tls = tls
        self.heads: list[bytes] = []

    def serve(self, conn: socket.socket) -> None:
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                data = conn.recv(65536)
                if not data:
                    return
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            self.heads.append(head)
            body = b"<!doctype html><html><body><p>origin</p></body></html>"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )

    def header(self, index: int, name: str) -> str | None:
        """The value of header `name` in the `index`th request head, or None."""
        for line in self.heads[index].split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == name.lower().encode():
                return value.strip().decode("latin-1")
        return None


def tls_origin(ca: CertAuthority, host: str = "127.0.0.1") -> RecordingOrigin:
    """A TLS origin with a test-CA certificate for the name the client asks (SNI), or for
    its address when the client sends none."""
    return RecordingOrigin(host, tls=ca.server_context(host))


class WebSocketEcho(_Server):
    """A WebSocket server (wsproto) that echoes every message, then closes when asked."""

    def serve(self, conn: socket.socket) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, wsproto.events.Request):
                    conn.sendall(ws.send(wsproto.events.AcceptConnection()))
                elif isinstance(event, wsproto.events.Message):
                    self.received.append(event.data if isinstance(event.data, bytes) else b"")
                    conn.sendall(ws.send(wsproto.events.Message(data=event.data)))
                elif isinstance(event, wsproto.events.CloseConnection):
                    conn.sendall(ws.send(event.response()))
                    return


class WebSocketFlood(_Server):
    """A hostile WebSocket server: once accepted, one message that never ends, sent as
    continuation frames of `frame_bytes` (at most `total_bytes` in all, so a test stays
    bounded). `close_codes` holds the close codes it received (the proxy's answer)."""

    def __init__(self, frame_bytes: int, total_bytes: int = 64 << 20) -> None:
        super().__init__()
        self.frame_bytes, self.total_bytes = frame_bytes, total_bytes
        self.close_codes: list[int] = []
        self.sent = 0

    def serve(self, conn: socket.socket) -> None:
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while not any(isinstance(e, wsproto.events.Request) for e in ws.events()):
            data = conn.recv(65536)
            if not data:
                return
            ws.receive_data(data)
        conn.sendall(ws.send(wsproto.events.AcceptConnection()))
        conn.setblocking(False)
        chunk = wsproto.events.BytesMessage(b"x" * self.frame_bytes, message_finished=False)
        conn.sendall(ws.send(chunk))  # the message's first frame; then continuations
        frame = ws.send(chunk)  # a server's frames are not masked: each one is the same
        burst = frame * max(1, 65536 // len(frame))
        while self.sent < self.total_bytes and not self.close_codes:
            try:
                conn.sendall(burst)
                self.sent += len(burst)
            except BlockingIOError:
                time.sleep(0.01)
            with contextlib.suppress(BlockingIOError):
                data = conn.recv(65536)
                if not data:
                    return
                ws.receive_data(data)
                self.close_codes += [
                    e.code for e in ws.events() if isinstance(e, wsproto.events.CloseConnection)
                ]


class H2Sink(_Server):
    """A hostile HTTP/2 origin (TLS, ALPN h2): it takes requests' heads and never reads
    their bodies (it grants no flow-control window), so whatever a client sends for it
    stays with the proxy. `streams` counts the request heads it saw."""

    def __init__(self, ca: CertAuthority, name: str, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        # Its own context (the CA's are shared and offer http/1.1 only): `name`'s leaf.
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.leaf(name).issued.configure_cert(self.context)
        self.context.set_alpn_protocols(["h2"])
        self.streams = 0

    def serve(self, conn: socket.socket) -> None:
        import h2.config
        import h2.connection
        import h2.events

        tls = self.context.wrap_socket(conn, server_side=True)
        h2conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h2conn.initiate_connection()
        tls.sendall(h2conn.data_to_send())
        tls.settimeout(1)
        while not self._stop.is_set():
            try:
                data = tls.recv(65536)
            except TimeoutError:
                continue
            if not data:
                return
            for event in h2conn.receive_data(data):
                self.streams += isinstance(event, h2.events.RequestReceived)
            tls.sendall(h2conn.data_to_send())


def tunnel(
    proxy_port: int,
    target: str,
    headers: dict[str, str] | None = None,
    source: str | None = None,
) -> tuple[socket.socket, bytes]:
    """`CONNECT target` through the proxy: the socket and the proxy's answer head."""
    sock = socket.create_connection(
        ("127.0.0.1", proxy_port),
        timeout=IO_TIMEOUT,
        source_address=(source, 0) if source else None,
    )
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{extra}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            break
        head += data
    return sock, head


def read_until(sock: socket.socket, done: Callable[[bytes], bool], limit: int = 1 << 20) -> bytes:
    """Read until `done(data)` or the peer closes."""
    data = b""
    while not done(data) and len(data) < limit:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data
