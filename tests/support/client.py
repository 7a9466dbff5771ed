"""HTTP/1.1 on raw sockets, and clients that talk to a proxy the way browsers do.

Why not ``http.client`` or ``urllib``: tests must see exactly what the proxy did, so the client
sends absolute-form requests for ``http://`` URLs and ``CONNECT`` for ``https://`` URLs itself,
returns the proxy's own answer when it refuses a tunnel (403, 407) instead of raising, exposes
the certificate of whoever terminated TLS (the proxy when it decrypts, the origin when it
bypasses), and never decodes a body behind the test's back.

The wire helpers at the top (``BufferedSocket``, ``read_head``, ``iter_body``, ``Headers``)
are shared with the test upstream server in :mod:`upstream`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import ssl
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import urlsplit

from cryptography import x509
from mitmproxy.net import encoding as mitm_encoding

from .certs import cert_fingerprint, load_cert

MAX_LINE = 64 * 1024
MAX_HEADERS = 256
READ_SIZE = 64 * 1024
DEFAULT_TIMEOUT = 10.0

type HeadersLike = Headers | Mapping[str, str] | Iterable[tuple[str, str]]


class ProtocolError(Exception):
    """The peer sent something that is not HTTP/1.x as this module understands it."""


class StaleConnection(ConnectionError):
    """The peer closed a kept-alive connection before answering; safe to retry once."""


class Headers:
    """An ordered, multi-valued, case-insensitive header list that keeps the original names.

    A plain ``dict`` loses repeated headers (``Set-Cookie``, ``Via``) and the case the peer
    used, both of which tests sometimes assert on.
    """

    def __init__(self, items: HeadersLike | None = None) -> None:
        pairs = items.items() if isinstance(items, Headers | Mapping) else (items or ())
        self._items: list[tuple[str, str]] = [(str(k), str(v)) for k, v in pairs]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        lname = name.lower()
        return next((v for k, v in self._items if k.lower() == lname), default)

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        return [v for k, v in self._items if k.lower() == lname]

    def has_token(self, name: str, token: str) -> bool:
        """Whether a comma-separated header (``Connection``, ``Transfer-Encoding``) has token."""
        token = token.lower()
        parts = (part for value in self.get_all(name) for part in value.split(","))
        return any(part.strip().lower() == token for part in parts)

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with one value, at the first one's position."""
        lname = name.lower()
        index = next((i for i, (k, _) in enumerate(self._items) if k.lower() == lname), None)
        self.remove(name)
        self._items.insert(len(self._items) if index is None else index, (name, value))

    def remove(self, name: str) -> None:
        lname = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != lname]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def encode(self) -> bytes:
        return b"".join(f"{k}: {v}\r\n".encode("latin-1") for k, v in self._items)


class BufferedSocket:
    """A socket with a read buffer whose contents we can see.

    ``socket.makefile`` hides how much it has read ahead; after ``CONNECT`` the same socket is
    wrapped in TLS, and any byte already buffered would be lost, so both ends use this instead.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buf = bytearray()

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def _fill(self) -> bool:
        data = self.sock.recv(READ_SIZE)
        self._buf += data
        return bool(data)

    def readline(self, limit: int = MAX_LINE) -> bytes:
        """One line including its ``\\n``; shorter (no ``\\n``) only at end of stream."""
        start = 0
        while True:
            index = self._buf.find(b"\n", start)
            if index >= 0:
                line = bytes(self._buf[: index + 1])
                del self._buf[: index + 1]
                return line
            if len(self._buf) > limit:
                raise ProtocolError(f"line longer than {limit} bytes")
            start = len(self._buf)
            if not self._fill():
                line = bytes(self._buf)
                self._buf.clear()
                return line

    def read_some(self, size: int = READ_SIZE) -> bytes:
        """Up to ``size`` bytes, blocking only if none are buffered; ``b""`` at end of stream."""
        if self._buf:
            data = bytes(self._buf[:size])
            del self._buf[:size]
            return data
        return self.sock.recv(size)

    def read_exact(self, size: int) -> bytes:
        parts = []
        remaining = size
        while remaining:
            data = self.read_some(min(remaining, READ_SIZE))
            if not data:
                raise ProtocolError(f"connection closed after {size - remaining} of {size} bytes")
            parts.append(data)
            remaining -= len(data)
        return b"".join(parts)

    def sendall(self, data: bytes | memoryview) -> None:
        self.sock.sendall(data)


def read_head(stream: BufferedSocket) -> tuple[str, Headers] | None:
    """Read a start line and headers; ``None`` if the stream ended before the first byte."""
    line = stream.readline()
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request
        line = stream.readline()
    if not line:
        return None
    if not line.endswith(b"\n"):
        raise ProtocolError("connection closed in the middle of the start line")
    start = line.rstrip(b"\r\n").decode("latin-1")
    pairs: list[tuple[str, str]] = []
    while True:
        line = stream.readline()
        if not line.endswith(b"\n"):
            raise ProtocolError("connection closed in the middle of the headers")
        if line in (b"\r\n", b"\n"):
            return start, Headers(pairs)
        if len(pairs) >= MAX_HEADERS:
            raise ProtocolError(f"more than {MAX_HEADERS} headers")
        text = line.rstrip(b"\r\n").decode("latin-1")
        if text[:1] in (" ", "\t") and pairs:  # obsolete line folding
            name, value = pairs[-1]
            pairs[-1] = (name, f"{value} {text.strip()}")
            continue
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(f"malformed header line {text!r}")
        pairs.append((name, value.strip()))


def body_framing(headers: Headers) -> tuple[bool, int | None]:
    """``(chunked, content_length)`` from the headers; neither means "until close"."""
    if headers.has_token("transfer-encoding", "chunked"):
        return True, None
    values = {v.strip() for v in headers.get_all("content-length")}
    if not values:
        return False, None
    (value,) = values if len(values) == 1 else ("",)
    if not value.isdigit():
        raise ProtocolError(f"bad Content-Length {sorted(values)!r}")
    return False, int(value)


def iter_body(
    stream: BufferedSocket, *, chunked: bool, length: int | None, until_close: bool = False
) -> Iterator[bytes]:
    """Yield the body's bytes with the framing removed, without holding it all in memory."""
    if chunked:
        yield from _iter_chunked(stream)
    elif length is not None:
        remaining = length
        while remaining:
            data = stream.read_some(min(remaining, READ_SIZE))
            if not data:
                raise ProtocolError(f"connection closed after {length - remaining} of {length}")
            remaining -= len(data)
            yield data
    elif until_close:
        while data := stream.read_some():
            yield data


def _iter_chunked(stream: BufferedSocket) -> Iterator[bytes]:
    while True:
        line = stream.readline()
        if not line.endswith(b"\n"):
            raise ProtocolError("connection closed in a chunk size line")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size line {line!r}") from None
        if size == 0:
            while stream.readline() not in (b"\r\n", b"\n", b""):  # trailers
                pass
            return
        yield from iter_body(stream, chunked=False, length=size)
        if stream.readline() not in (b"\r\n", b"\n"):
            raise ProtocolError("chunk not followed by CRLF")


def encode_body(data: bytes, content_encoding: str) -> bytes:
    """Compress ``data`` as ``gzip``, ``deflate``, ``br``, ``zstd`` or a comma-separated list.

    For tests that serve compressed bodies from the upstream (set ``Content-Encoding`` too).
    """
    for name in _codings(content_encoding):
        data = mitm_encoding.encode(data, name)  # type: ignore[assignment]
    return data


def decode_body(data: bytes, content_encoding: str | None) -> bytes:
    """Undo ``Content-Encoding`` (gzip, deflate, br, zstd, identity, or a list of them)."""
    for name in reversed(_codings(content_encoding or "")):
        data = mitm_encoding.decode(data, name)  # type: ignore[assignment]
    return data


def _codings(content_encoding: str) -> list[str]:
    names = [part.strip().lower() for part in content_encoding.split(",")]
    return [name for name in names if name and name != "identity"]


@dataclass
class Response:
    """What the client received. ``body`` is raw (still compressed); see :meth:`decoded`."""

    status: int
    reason: str
    headers: Headers
    body: bytes
    http_version: str = "HTTP/1.1"
    body_length: int = 0
    chunked: bool = False
    peer_cert_der: bytes | None = None
    tls_version: str | None = None
    alpn: str | None = None
    from_connect: bool = False
    """True when this is the proxy's answer to ``CONNECT`` (the tunnel was refused)."""
    elapsed: float = 0.0
    keep_alive: bool = field(default=False, repr=False)

    def decoded(self) -> bytes:
        return decode_body(self.body, self.headers.get("content-encoding"))

    @property
    def text(self) -> str:
        """The decoded body as text, using the ``charset`` of ``Content-Type`` or UTF-8."""
        content_type = self.headers.get("content-type", "") or ""
        charset = "utf-8"
        for param in content_type.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
        return self.decoded().decode(charset, errors="replace")

    @property
    def peer_cert(self) -> x509.Certificate | None:
        return load_cert(self.peer_cert_der) if self.peer_cert_der else None

    @property
    def peer_fingerprint(self) -> str | None:
        return cert_fingerprint(self.peer_cert_der) if self.peer_cert_der else None


def read_response(stream: BufferedSocket, method: str, *, discard_body: bool = False) -> Response:
    """Read one response (skipping ``1xx`` interim ones) to a request made with ``method``."""
    while True:
        head = read_head(stream)
        if head is None:
            raise StaleConnection("connection closed before a response")
        start, headers = head
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or not code.isdigit():
            raise ProtocolError(f"malformed status line {start!r}")
        status = int(code)
        if not (100 <= status < 200 and status != 101):
            break
    bodyless = (
        method == "HEAD"
        or status in (204, 304)
        or 100 <= status < 200
        or (method == "CONNECT" and 200 <= status < 300)
    )
    chunked, length = (False, 0) if bodyless else body_framing(headers)
    until_close = not chunked and length is None
    parts: list[bytes] = []
    size = 0
    for data in iter_body(stream, chunked=chunked, length=length, until_close=until_close):
        size += len(data)
        if not discard_body:
            parts.append(data)
    keep_alive = not until_close and (
        not headers.has_token("connection", "close")
        if version == "HTTP/1.1"
        else headers.has_token("connection", "keep-alive")
    )
    return Response(
        status, reason, headers, b"".join(parts), version, size, chunked, keep_alive=keep_alive
    )


def _host_port(host: str, port: int, default_port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == default_port else f"{shown}:{port}"


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, url: str) -> _Target:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"need an absolute http:// or https:// URL, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(parts.scheme, parts.hostname, port, path)

    @property
    def authority(self) -> str:
        return _host_port(self.host, self.port, 443 if self.scheme == "https" else 80)

    @property
    def absolute(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


@dataclass
class SlowResult:
    """Outcome of :meth:`ProxyClient.slow_request`: the proxy may answer or hang up early."""

    bytes_sent: int
    bytes_total: int
    response: Response | None
    error: str | None
    elapsed: float


class _Connection:
    """One TCP connection to the proxy; for https, tunnelled and TLS-wrapped to one origin."""

    def __init__(self, sock: socket.socket, key: tuple[object, ...]) -> None:
        self.stream = BufferedSocket(sock)
        self.key = key
        self.requests = 0
        self.reusable = True
        self.peer_cert_der: bytes | None = None
        self.tls_version: str | None = None
        self.alpn: str | None = None

    def settimeout(self, timeout: float) -> None:
        self.stream.sock.settimeout(timeout)

    def close(self) -> None:
        self.reusable = False
        with contextlib.suppress(OSError):
            self.stream.sock.close()


CaFiles = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _paths(ca_file: CaFiles | None) -> list[str]:
    if ca_file is None:
        return []
    if isinstance(ca_file, str | os.PathLike):
        return [os.fspath(ca_file)]
    return [os.fspath(path) for path in ca_file]


class ProxyClient:
    """A client that reaches every URL through an HTTP proxy, like a configured browser.

    ``ca_file`` is what TLS is verified against: the proxy's CA (``mitmproxy-ca-cert.pem`` in
    its confdir) for decrypted traffic, the test CA for bypassed traffic, or a list of both for
    a client that visits decrypted and bypassed sites alike. ``verify=False``
    accepts any certificate, still recording it in ``Response.peer_cert_der``.
    ``proxy_auth`` is ``(user, password)`` for ``Proxy-Authorization: Basic``.
    """

    def __init__(
        self,
        proxy_host: str = "127.0.0.1",
        proxy_port: int = 8080,
        ca_file: CaFiles | None = None,
        proxy_auth: tuple[str, str] | None = None,
        *,
        verify: bool = True,
        timeout: float = DEFAULT_TIMEOUT,
        source_address: str | None = None,
    ) -> None:
        self.proxy = (proxy_host, proxy_port)
        # Another loopback address (127.0.0.2) plays a client from another network.
        self.source = (source_address, 0) if source_address else None
        self.ca_files = _paths(ca_file)
        self.proxy_auth = proxy_auth
        self.verify = verify
        self.timeout = timeout
        self._contexts: dict[bool, ssl.SSLContext] = {}

    def get(
        self,
        url: str,
        headers: HeadersLike | None = None,
        method: str = "GET",
        body: bytes | None = None,
        timeout: float | None = None,
        *,
        discard_body: bool = False,
        verify: bool | None = None,
    ) -> Response:
        """One request on a fresh connection (closed afterwards)."""
        with self.session(verify=verify) as session:
            return session.request(url, headers, method, body, timeout, discard_body=discard_body)

    request = get

    def session(self, *, verify: bool | None = None, max_connections: int = 16) -> ProxySession:
        """A keep-alive session: proxy connections reused for as long as the proxy allows."""
        return ProxySession(self, self.verify if verify is None else verify, max_connections)

    def connect(
        self,
        host: str,
        port: int = 443,
        headers: HeadersLike | None = None,
        timeout: float | None = None,
    ) -> Response:
        """Send ``CONNECT host:port`` and return the proxy's answer; the tunnel is closed.

        For tests of refused clients and blocked tunnels (403, 407), where the interesting part
        is the proxy's own status and page.
        """
        conn = self._dial(timeout)
        try:
            return self._send_connect(conn, host, port, headers)
        finally:
            conn.close()

    def slow_request(
        self,
        url: str,
        headers: HeadersLike | None = None,
        *,
        delay: float = 0.05,
        max_duration: float = 5.0,
        timeout: float | None = None,
    ) -> SlowResult:
        """Send an ``http://`` request's head one byte at a time, then read the answer.

        The pause between bytes is ``delay``, shortened so that sending never takes longer than
        ``max_duration``. A proxy that hangs up on slow clients gives ``response=None`` and
        the reason in ``error``.
        """
        target = _Target.parse(url)
        if target.scheme != "http":
            raise ValueError("slow_request sends plain http:// requests only")
        data = self._request_bytes(target, headers, "GET", None)
        delay = min(delay, max_duration / max(len(data), 1))
        started = time.monotonic()
        conn = self._dial(timeout)
        sent = 0
        try:
            for index in range(len(data)):
                conn.stream.sendall(data[index : index + 1])
                sent += 1
                time.sleep(delay)
            response = read_response(conn.stream, "GET")
        except (OSError, ProtocolError) as exc:
            return SlowResult(sent, len(data), None, repr(exc), time.monotonic() - started)
        finally:
            conn.close()
        return SlowResult(sent, len(data), response, None, time.monotonic() - started)

    # Used by ProxySession.

    def _dial(self, timeout: float | None, key: tuple[object, ...] = ()) -> _Connection:
        sock = socket.create_connection(
            self.proxy, timeout=timeout or self.timeout, source_address=self.source
        )
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Connection(sock, key)

    def _auth_header(self) -> str | None:
        if self.proxy_auth is None:
            return None
        user, password = self.proxy_auth
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")

    def _send_connect(
        self, conn: _Connection, host: str, port: int, headers: HeadersLike | None = None
    ) -> Response:
        authority = _host_port(host, port, -1)
        extra = Headers(headers)
        if "host" not in extra:
            extra.set("Host", authority)
        auth = self._auth_header()
        if auth and "proxy-authorization" not in extra:
            extra.add("Proxy-Authorization", auth)
        conn.stream.sendall(f"CONNECT {authority} HTTP/1.1\r\n".encode() + extra.encode() + b"\r\n")
        response = read_response(conn.stream, "CONNECT")
        response.from_connect = True
        return response

    def _tls_context(self, verify: bool) -> ssl.SSLContext:
        context = self._contexts.get(verify)
        if context is None:
            if verify and not self.ca_files:
                context = ssl.create_default_context()  # the system's CAs
            else:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies names by default
                for path in self.ca_files if verify else ():
                    context.load_verify_locations(cafile=path)
                if not verify:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
            context.set_alpn_protocols(["http/1.1"])
            self._contexts[verify] = context
        return context

    def _request_bytes(
        self, target: _Target, headers: HeadersLike | None, method: str, body: bytes | None
    ) -> bytes:
        request_target = target.absolute if target.scheme == "http" else target.path
        hdrs = Headers(headers)
        if "host" not in hdrs:
            hdrs = Headers([("Host", target.authority), *hdrs.items()])
        auth = self._auth_header()
        if target.scheme == "http" and auth and "proxy-authorization" not in hdrs:
            hdrs.add("Proxy-Authorization", auth)
        if body is not None and "content-length" not in hdrs and "transfer-encoding" not in hdrs:
            hdrs.add("Content-Length", str(len(body)))
        head = f"{method} {request_target} HTTP/1.1\r\n".encode("latin-1") + hdrs.encode()
        return head + b"\r\n" + (body or b"")


class ProxySession:
    """Requests over kept-alive proxy connections, reopened only when they must be.

    Plain ``http://`` requests share one connection whatever their host (absolute-form);
    ``https://`` requests share one tunnel per origin, and up to ``max_connections`` tunnels
    stay open (least recently used closed first). ``connections_opened`` lets load tests assert
    that keep-alive really happened. Not thread-safe: use one session per thread.
    """

    def __init__(self, client: ProxyClient, verify: bool, max_connections: int = 16) -> None:
        self.client = client
        self.verify = verify
        self.max_connections = max_connections
        self.connections_opened = 0
        self.requests_sent = 0
        self._pool: dict[tuple[object, ...], _Connection] = {}

    def request(
        self,
        url: str,
        headers: HeadersLike | None = None,
        method: str = "GET",
        body: bytes | None = None,
        timeout: float | None = None,
        *,
        discard_body: bool = False,
    ) -> Response:
        """Like :meth:`ProxyClient.get`, on a pooled connection; retried once if stale."""
        target = _Target.parse(url)
        timeout = timeout or self.client.timeout
        data = self.client._request_bytes(target, headers, method, body)
        for attempt in (1, 2):
            started = time.monotonic()
            conn = self._connection_for(target, timeout)
            if isinstance(conn, Response):
                return conn
            reused = conn.requests > 0
            conn.requests += 1
            try:
                conn.stream.sendall(data)
                response = read_response(conn.stream, method, discard_body=discard_body)
            except (StaleConnection, BrokenPipeError, ConnectionResetError):
                self._drop(conn)
                if reused and attempt == 1:
                    continue  # the proxy closed an idle keep-alive connection: retry once
                raise
            except BaseException:
                self._drop(conn)
                raise
            break
        self.requests_sent += 1
        response.elapsed = time.monotonic() - started
        response.peer_cert_der = conn.peer_cert_der
        response.tls_version = conn.tls_version
        response.alpn = conn.alpn
        if not response.keep_alive:
            self._drop(conn)
        return response

    get = request

    def close(self) -> None:
        for conn in list(self._pool.values()):
            self._drop(conn)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        if self._pool.get(conn.key) is conn:
            del self._pool[conn.key]

    def _connection_for(self, target: _Target, timeout: float) -> _Connection | Response:
        key: tuple[object, ...] = (
            ("http",) if target.scheme == "http" else ("https", target.host, target.port)
        )
        conn = self._pool.pop(key, None)
        if conn is not None and conn.reusable:
            self._pool[key] = conn  # most recently used last
            conn.settimeout(timeout)
            return conn
        while len(self._pool) >= self.max_connections:
            self._drop(next(iter(self._pool.values())))
        conn = self.client._dial(timeout, key)
        self.connections_opened += 1
        if target.scheme == "https":
            try:
                answer = self.client._send_connect(conn, target.host, target.port)
                if not 200 <= answer.status < 300:
                    conn.close()
                    return answer
                if conn.stream.buffered:
                    raise ProtocolError("proxy sent data after its CONNECT answer")
                tls = self.client._tls_context(self.verify).wrap_socket(
                    conn.stream.sock,
                    server_hostname=target.host,
                )
            except BaseException:
                conn.close()
                raise
            conn.stream = BufferedSocket(tls)
            conn.peer_cert_der = tls.getpeercert(binary_form=True)
            conn.tls_version = tls.version()
            conn.alpn = tls.selected_alpn_protocol()
        self._pool[key] = conn
        return conn
