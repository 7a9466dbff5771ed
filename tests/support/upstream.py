"""``Upstream``: one loopback server that plays "the whole internet" for end-to-end tests.

The proxy under test runs with ``--set mode=upstream:http://127.0.0.1:PORT``, so it never needs
DNS: every request it forwards reaches this server, either

* as an absolute-form request (``GET http://www.facebook.com/x HTTP/1.1``) for plain HTTP, or
* as ``CONNECT host:443`` followed by TLS, for HTTPS. The server answers ``200``, terminates
  TLS itself with a leaf for the SNI name (or the CONNECT host) signed by the test CA, and
  serves HTTP/1.1 inside. This is also what a *bypassed* tunnel looks like: the client's own
  handshake reaches this server, so the client sees the test CA's leaf, not the proxy's.

Responses come from a routing table keyed by (host or ``*``, path); anything unrouted gets a
small HTML page naming the host and path. Every request and tunnel is recorded for assertions.

Everything is bounded: a connection limit, socket timeouts, a cap on how long a slow route
sleeps, and :meth:`Upstream.close` stops threads promptly even mid-request.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import html
import itertools
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Literal, Self
from urllib.parse import urlsplit

from .certs import CertAuthority
from .client import (
    BufferedSocket,
    Headers,
    HeadersLike,
    ProtocolError,
    body_framing,
    encode_body,
    iter_body,
    read_head,
)

LOOPBACK = "127.0.0.1"
STREAM_CHUNK = 64 * 1024
SERVER_NAME = "auditproxy-test-upstream"


@dataclass(frozen=True)
class Request:
    """A request the upstream received, as the origin server saw it."""

    method: str
    scheme: str
    host: str
    port: int
    path: str
    """Path with the query string, as sent (``/x?y=1``)."""
    target: str
    """The raw request target: absolute-form from a proxy, origin-form inside a tunnel."""
    http_version: str
    headers: Headers
    body: bytes
    """The first ``max_recorded_body`` bytes of the body (framing removed)."""
    body_length: int
    tls: bool
    via_connect: bool
    sni: str | None
    connect_authority: str | None
    connection_id: int

    @property
    def path_only(self) -> str:
        return self.path.partition("?")[0]

    @property
    def query(self) -> str:
        return self.path.partition("?")[2]

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        shown = f"[{self.host}]" if ":" in self.host else self.host
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{shown}{port}{self.path}"


@dataclass(frozen=True)
class Tunnel:
    """A ``CONNECT`` the upstream accepted, and what happened inside it."""

    host: str
    port: int
    headers: Headers
    tls: bool
    sni: str | None
    alpn: str | None
    error: str | None
    connection_id: int


BodyFactory = Callable[[], Iterable[bytes]]


@dataclass(frozen=True)
class Reply:
    """What a route answers.

    ``body`` is bytes, or a zero-argument callable returning an iterable of byte chunks, which
    is called once per request so that a large body is generated as it is sent, never held in
    memory. Framing is added unless the headers already carry ``Content-Length`` or
    ``Transfer-Encoding``: ``Content-Length`` for bytes (or ``content_length`` for a callable),
    chunked otherwise or when ``chunked`` is set. Bodies are sent as given, so a test may
    serve gzip, br or zstd bytes with its own ``Content-Encoding`` (see :meth:`encoded`).

    ``delay`` sleeps before answering (capped by the server's ``max_delay`` and cut short by
    ``close()``); ``then`` is ``"respond"``, ``"close"`` (hang up without answering) or
    ``"reset"`` (TCP RST). ``framed``: a chunked body's pieces are sent as they are, already
    in chunked framing (the last-chunk included), for bodies of many tiny chunks.
    """

    status: int = 200
    body: bytes | BodyFactory = b""
    headers: HeadersLike | None = None
    reason: str | None = None
    chunked: bool = False
    content_length: int | None = None
    delay: float = 0.0
    then: Literal["respond", "close", "reset"] = "respond"
    close: bool = False
    framed: bool = False

    @classmethod
    def html(
        cls, markup: str | bytes, status: int = 200, headers: HeadersLike | None = None
    ) -> Reply:
        body = markup.encode("utf-8") if isinstance(markup, str) else markup
        extra = Headers(headers)
        if "content-type" not in extra:
            extra.add("Content-Type", "text/html; charset=utf-8")
        return cls(status, body, extra.items())

    @classmethod
    def stream(
        cls,
        total: int,
        chunk_size: int = STREAM_CHUNK,
        *,
        chunked: bool = False,
        content_type: str = "application/octet-stream",
        headers: HeadersLike | None = None,
    ) -> Reply:
        """``total`` bytes sent in ``chunk_size`` pieces from one reused buffer.

        With ``chunked=False`` the length is announced in ``Content-Length``; with ``True``
        the body uses chunked transfer coding with one HTTP chunk per piece.
        """
        extra = Headers(headers)
        if "content-type" not in extra:
            extra.add("Content-Type", content_type)
        return cls(
            200,
            lambda: _repeat(total, chunk_size),
            extra.items(),
            chunked=chunked,
            content_length=None if chunked else total,
        )

    @classmethod
    def hang(cls, seconds: float) -> Reply:
        """Say nothing for ``seconds`` (bounded by the server's ``max_delay``), then hang up."""
        return cls(delay=seconds, then="close")

    @classmethod
    def reset(cls, after: float = 0.0) -> Reply:
        """Abort the connection with a TCP RST, after an optional delay."""
        return cls(delay=after, then="reset")

    def slowly(self, seconds: float) -> Reply:
        """The same reply, sent after ``seconds``."""
        return dataclasses.replace(self, delay=seconds)

    def encoded(self, content_encoding: str) -> Reply:
        """The same reply with its (bytes) body compressed and ``Content-Encoding`` set."""
        if not isinstance(self.body, bytes):
            raise TypeError("only bytes bodies can be encoded up front")
        extra = Headers(self.headers)
        extra.set("Content-Encoding", content_encoding)
        return dataclasses.replace(
            self, body=encode_body(self.body, content_encoding), headers=extra.items()
        )


Handler = Reply | Callable[[Request], Reply]


def default_page(request: Request) -> Reply:
    """The page every unrouted URL gets: its title is the host, its heading host and path."""
    host = html.escape(request.host)
    heading = html.escape(f"{request.host} {request.path}")
    return Reply.html(
        f"<html><head><title>{host}</title></head><body><h1>{heading}</h1></body></html>"
    )


def _repeat(total: int, chunk_size: int) -> Iterator[memoryview]:
    block = memoryview((bytes(range(256)) * (chunk_size // 256 + 1))[:chunk_size])
    remaining = total
    while remaining > 0:
        size = min(remaining, chunk_size)
        yield block[:size]
        remaining -= size


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """``host[:port]`` or ``[v6][:port]`` to ``(host, port)``; ``ValueError`` if malformed."""
    if authority.startswith("["):
        host, _, rest = authority[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif authority.count(":") == 1:
        host, _, port = authority.partition(":")
    else:
        host, port = authority, ""
    if not host or (port and not port.isdigit()):
        raise ValueError(f"bad authority {authority!r}")
    return host, int(port) if port else default_port


@dataclass
class _TunnelState:
    authority: str
    host: str
    port: int
    tls: bool
    sni: str | None


class _Routes:
    """The routing table: exact (host, path-with-query), exact path, longest prefix; host
    first, then ``*``; then the default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._exact: dict[tuple[str, str], Handler] = {}
        self._prefix: list[tuple[str, str, Handler]] = []
        self.default: Handler = default_page

    def add(self, host: str, path: str, handler: Handler, prefix: bool) -> None:
        key = (_normal_host(host), path)
        with self._lock:
            if prefix:
                self._prefix = [r for r in self._prefix if r[:2] != key]
                self._prefix.append((*key, handler))
                self._prefix.sort(key=lambda r: len(r[1]), reverse=True)
            else:
                self._exact[key] = handler

    def clear(self) -> None:
        with self._lock:
            self._exact.clear()
            self._prefix.clear()
            self.default = default_page

    def find(self, request: Request) -> Handler:
        host = _normal_host(request.host)
        with self._lock:
            for candidate in (host, "*"):
                for path in (request.path, request.path_only):
                    handler = self._exact.get((candidate, path))
                    if handler is not None:
                        return handler
                for route_host, path, handler in self._prefix:
                    if route_host == candidate and request.path.startswith(path):
                        return handler
            return self.default


class Upstream:
    """A threaded HTTP forward proxy and origin server for every host, on 127.0.0.1.

    Use it as a context manager (``with Upstream(ca) as up:``), which starts and closes it.
    ``ca`` is the test CA whose leaves it presents inside ``CONNECT`` tunnels; one is created
    (and removed on close) if not given.
    """

    def __init__(
        self,
        ca: CertAuthority | None = None,
        *,
        host: str = LOOPBACK,
        max_connections: int = 256,
        socket_timeout: float = 10.0,
        max_delay: float = 30.0,
        record_limit: int = 100_000,
        max_recorded_body: int = 1024 * 1024,
    ) -> None:
        self._owns_ca = ca is None
        self.ca = ca or CertAuthority()
        self.socket_timeout = socket_timeout
        self.max_delay = max_delay
        self.max_recorded_body = max_recorded_body
        self.errors: list[str] = []
        self.connections_accepted = 0
        self.connections_rejected = 0
        self._routes = _Routes()
        self._records: collections.deque[Request] = collections.deque(maxlen=record_limit)
        self._tunnels: collections.deque[Tunnel] = collections.deque(maxlen=record_limit)
        self._seen = threading.Condition()
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._active: dict[int, socket.socket] = {}
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, 0))
        self._listener.listen(512)
        self._listener.settimeout(0.1)  # lets the accept loop notice close() promptly
        bound_host, bound_port = self._listener.getsockname()[:2]
        self.host: str = bound_host
        self.port: int = bound_port  # still known after close(), for "nothing listens" checks
        self._accept_thread: threading.Thread | None = None

    # Lifecycle.

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the upstream proxy's address."""
        return f"http://{self.host}:{self.port}"

    @property
    def proxy_mode(self) -> str:
        """The mitmproxy mode that sends everything here: ``upstream:http://127.0.0.1:PORT``."""
        return f"upstream:{self.url}"

    def start(self) -> Self:
        if self._accept_thread is None:
            self._accept_thread = threading.Thread(
                target=self._accept_loop, name=f"upstream-accept-{self.port}", daemon=True
            )
            self._accept_thread.start()
        return self

    def close(self, timeout: float = 2.0) -> None:
        """Stop accepting, abort every open connection and wait (bounded) for the threads."""
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(OSError):  # on Linux this wakes a blocked accept() at once
            self._listener.shutdown(socket.SHUT_RDWR)
        if self._accept_thread is not None:
            self._accept_thread.join(timeout)
        self._listener.close()
        with self._lock:
            sockets = list(self._active.values())
            threads = list(self._threads)
        for sock in sockets:
            # The base-class shutdown also works on an SSLSocket that another thread is using.
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._owns_ca:
            self.ca.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Routing.

    def route(self, host: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """Answer ``host`` (or ``"*"``, any host) at ``path`` with a ``Reply`` or a handler.

        ``path`` matches the path with its query, or without it; with ``prefix=True`` it
        matches any path starting with it (longest prefix wins). Host names match
        case-insensitively and without a trailing dot; the port is not part of the key.
        """
        self._routes.add(host, path, handler, prefix)

    def set_default(self, handler: Handler) -> None:
        """What unrouted requests get instead of :func:`default_page`."""
        self._routes.default = handler

    def clear_routes(self) -> None:
        self._routes.clear()

    # Records.

    @property
    def requests(self) -> list[Request]:
        with self._seen:
            return list(self._records)

    @property
    def tunnels(self) -> list[Tunnel]:
        with self._seen:
            return list(self._tunnels)

    def clear(self) -> None:
        """Forget recorded requests, tunnels and errors (routes stay)."""
        with self._seen:
            self._records.clear()
            self._tunnels.clear()
            self.errors.clear()

    def find(
        self, *, host: str | None = None, path: str | None = None, method: str | None = None
    ) -> list[Request]:
        """Recorded requests matching all given fields (``path`` without the query)."""
        return [
            r
            for r in self.requests
            if (host is None or _normal_host(r.host) == _normal_host(host))
            and (path is None or r.path_only == path)
            and (method is None or r.method == method)
        ]

    def wait_for(
        self,
        n: int = 1,
        timeout: float = 10.0,
        predicate: Callable[[Request], bool] | None = None,
    ) -> list[Request]:
        """Wait until at least ``n`` recorded requests (matching ``predicate``) and return them.

        A request is recorded once its body has been read, before it is answered, so this
        also works for routes that hang.
        """
        return self._wait(self._records, n, timeout, predicate, "requests")

    def wait_for_tunnels(
        self,
        n: int = 1,
        timeout: float = 10.0,
        predicate: Callable[[Tunnel], bool] | None = None,
    ) -> list[Tunnel]:
        """Like :meth:`wait_for`, for ``CONNECT`` tunnels (recorded after the TLS handshake)."""
        return self._wait(self._tunnels, n, timeout, predicate, "tunnels")

    def _wait[T](
        self,
        records: collections.deque[T],
        n: int,
        timeout: float,
        predicate: Callable[[T], bool] | None,
        what: str,
    ) -> list[T]:
        def matching() -> list[T]:
            return [r for r in records if predicate is None or predicate(r)]

        with self._seen:
            if self._seen.wait_for(lambda: len(matching()) >= n, timeout):
                return matching()
            seen = list(records)
        summary = "\n  ".join(map(_describe, seen[-20:])) or "(none)"
        raise TimeoutError(
            f"upstream saw {len(seen)} {what}, fewer than {n} matching, in {timeout}s; "
            f"last ones:\n  {summary}\nerrors: {self.errors[-5:]}"
        )

    def _record(self, item: Request | Tunnel) -> None:
        with self._seen:
            if isinstance(item, Request):
                self._records.append(item)
            else:
                self._tunnels.append(item)
            self._seen.notify_all()

    def _note_error(self, message: str) -> None:
        if not self._stop.is_set():
            with self._seen:
                self.errors.append(message)

    # Connections.

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if not self._slots.acquire(blocking=False):
                self.connections_rejected += 1
                sock.close()
                continue
            self.connections_accepted += 1
            conn_id = next(self._ids)
            sock.settimeout(self.socket_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(
                target=self._serve, args=(sock, conn_id), name=f"upstream-{conn_id}", daemon=True
            )
            with self._lock:
                self._active[conn_id] = sock
                self._threads.add(thread)
            thread.start()

    def _serve(self, sock: socket.socket, conn_id: int) -> None:
        stream = BufferedSocket(sock)
        tunnel: _TunnelState | None = None
        try:
            while not self._stop.is_set():
                head = read_head(stream)
                if head is None:
                    return
                start, headers = head
                parts = start.split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    self._note_error(f"connection {conn_id}: bad request line {start!r}")
                    _send_simple(stream, 400, close=True)
                    return
                method, target, version = parts
                if method == "CONNECT":
                    opened = self._open_tunnel(stream, target, headers, tunnel, conn_id)
                    if opened is None:
                        return
                    stream, tunnel = opened
                    continue
                if not self._exchange(stream, method, target, version, headers, tunnel, conn_id):
                    return
        except (OSError, ProtocolError, ssl.SSLError) as exc:
            self._note_error(f"connection {conn_id}: {exc!r}")
        finally:
            with self._lock:
                current = self._active.pop(conn_id, sock)
                self._threads.discard(threading.current_thread())
            current.close()
            self._slots.release()

    def _open_tunnel(
        self,
        stream: BufferedSocket,
        authority: str,
        headers: Headers,
        tunnel: _TunnelState | None,
        conn_id: int,
    ) -> tuple[BufferedSocket, _TunnelState] | None:
        """Answer ``CONNECT``, then serve TLS (first byte 0x16) or plain HTTP inside."""
        try:
            host, port = _split_authority(authority, 443)
        except ValueError:
            host, port = "", 0
        if not host or tunnel is not None or stream.buffered:
            # A client that pipelines its ClientHello after CONNECT would lose bytes here.
            _send_simple(stream, 400, close=True)
            return None
        stream.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        sock = stream.sock
        first = sock.recv(1, socket.MSG_PEEK)
        state = _TunnelState(authority, host, port, tls=first == b"\x16", sni=None)
        alpn = error = None
        if state.tls:
            context = self.ca.server_context(host)
            tls_sock = context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self._active[conn_id] = tls_sock
            try:
                tls_sock.do_handshake()
            except (ssl.SSLError, OSError) as exc:
                # e.g. a client that expected the proxy's certificate rejects ours
                error = repr(exc)
            else:
                alpn = tls_sock.selected_alpn_protocol()
                stream = BufferedSocket(tls_sock)
            state.sni = self.ca.sni_of(tls_sock)
        elif not first:
            error = "closed before sending anything"
        self._record(Tunnel(host, port, headers, state.tls, state.sni, alpn, error, conn_id))
        return None if error else (stream, state)

    def _exchange(
        self,
        stream: BufferedSocket,
        method: str,
        target: str,
        version: str,
        headers: Headers,
        tunnel: _TunnelState | None,
        conn_id: int,
    ) -> bool:
        """Read one request, record it, answer it; return whether to keep the connection."""
        scheme, host, port, path = _locate(target, headers, tunnel)
        if version == "HTTP/1.1" and headers.has_token("expect", "100-continue"):
            stream.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        chunked, length = body_framing(headers)
        kept: list[bytes] = []
        size = 0
        for data in iter_body(stream, chunked=chunked, length=length or 0):
            if size < self.max_recorded_body:
                kept.append(bytes(data[: self.max_recorded_body - size]))
            size += len(data)
        request = Request(
            method=method,
            scheme=scheme,
            host=host,
            port=port,
            path=path,
            target=target,
            http_version=version,
            headers=headers,
            body=b"".join(kept),
            body_length=size,
            tls=bool(tunnel and tunnel.tls),
            via_connect=tunnel is not None,
            sni=tunnel.sni if tunnel else None,
            connect_authority=tunnel.authority if tunnel else None,
            connection_id=conn_id,
        )
        self._record(request)
        handler = self._routes.find(request)
        try:
            reply = handler(request) if callable(handler) else handler
        except Exception as exc:
            self._note_error(f"handler for {request.url}: {exc!r}")
            reply = Reply(500, f"test handler failed: {exc!r}".encode(), close=True)
        return self._send_reply(stream, request, reply)

    def _send_reply(self, stream: BufferedSocket, request: Request, reply: Reply) -> bool:
        if reply.delay > 0 and self._stop.wait(min(reply.delay, self.max_delay)):
            return False
        if reply.then == "reset":
            stream.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        if reply.then == "close":
            return False
        headers = Headers(reply.headers)
        if "server" not in headers:
            headers.add("Server", SERVER_NAME)
        no_body = reply.status < 200 or reply.status in (204, 304)
        close = (
            reply.close
            or headers.has_token("connection", "close")
            or request.headers.has_token("connection", "close")
            or (
                request.http_version == "HTTP/1.0"
                and not request.headers.has_token("connection", "keep-alive")
            )
        )
        chunked = not no_body and (
            reply.chunked or headers.has_token("transfer-encoding", "chunked")
        )
        if chunked:
            if "transfer-encoding" not in headers:
                headers.add("Transfer-Encoding", "chunked")
        elif not no_body and "content-length" not in headers:
            if isinstance(reply.body, bytes):
                headers.add("Content-Length", str(len(reply.body)))
            elif reply.content_length is not None:
                headers.add("Content-Length", str(reply.content_length))
            elif request.http_version == "HTTP/1.1":
                chunked = True
                headers.add("Transfer-Encoding", "chunked")
            else:
                close = True  # HTTP/1.0 without a length: the body ends when we hang up
        if close:
            headers.set("Connection", "close")
        elif request.http_version == "HTTP/1.0":
            headers.set("Connection", "keep-alive")
        reason = reply.reason if reply.reason is not None else _reason(reply.status)
        stream.sendall(
            f"HTTP/1.1 {reply.status} {reason}\r\n".encode("latin-1") + headers.encode() + b"\r\n"
        )
        if request.method != "HEAD" and not no_body:
            pieces = _pieces(reply.body)
            if chunked and reply.framed:
                for piece in pieces:
                    stream.sendall(piece)
            elif chunked:
                for piece in pieces:
                    if piece:
                        stream.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
                stream.sendall(b"0\r\n\r\n")
            else:
                for piece in pieces:
                    stream.sendall(piece)
        return not close


def _locate(
    target: str, headers: Headers, tunnel: _TunnelState | None
) -> tuple[str, str, int, str]:
    """The (scheme, host, port, path) a request is for, whatever form its target has."""
    if "://" in target:
        parts = urlsplit(target)
        scheme = parts.scheme.lower()
        host, port = _split_authority(parts.netloc.rpartition("@")[2], _default_port(scheme))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return scheme, host, port, path
    scheme = "https" if tunnel and tunnel.tls else "http"
    fallback_port = tunnel.port if tunnel else _default_port(scheme)
    authority = headers.get("host")
    if authority:
        try:
            host, port = _split_authority(authority, fallback_port)
        except ValueError:
            host, port = authority, fallback_port
    elif tunnel:
        host, port = tunnel.sni or tunnel.host, tunnel.port
    else:
        host, port = LOOPBACK, 0
    return scheme, host, port, target


def _default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _pieces(body: bytes | BodyFactory) -> Iterable[bytes | memoryview]:
    if not isinstance(body, bytes):
        return body()
    view = memoryview(body)
    return (view[i : i + STREAM_CHUNK] for i in range(0, len(body), STREAM_CHUNK))


def _send_simple(stream: BufferedSocket, status: int, *, close: bool) -> None:
    connection = b"Connection: close\r\n" if close else b""
    stream.sendall(
        f"HTTP/1.1 {status} {_reason(status)}\r\n".encode()
        + connection
        + b"Content-Length: 0\r\n\r\n"
    )


def _describe(item: object) -> str:
    if isinstance(item, Request):
        return f"#{item.connection_id} {item.method} {item.url}"
    if isinstance(item, Tunnel):
        return f"#{item.connection_id} CONNECT {item.host}:{item.port} sni={item.sni}"
    return repr(item)
