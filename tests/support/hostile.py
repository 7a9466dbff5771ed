"""Hostile clients and origins for end-to-end tests: every one bounded in connections,
bytes and time, and stopped by an `Event`.

Clients (raw sockets to the proxy, from any 127.0.0.0/8 address):
    endless_headers   a request head whose header lines never end (reconnecting)
    slow_head         a request head sent a byte at a time
    slow_body         a POST whose body trickles in a byte at a time
    idle_sockets      connections opened and left silent
    huge_cookie       a request with a Cookie header of a given size
    tiny_chunks       a chunked upload of one-byte chunks
    download          reads a (possibly endless) response for a while, fast or slowly
Origins (routes of the test Upstream):
    endless_body      a chunked response that never ends, in pieces of a given size
    tiny_chunked_body a chunked response of one-byte chunks that never ends
    giant_head        a response whose head is megabytes of header lines

`rss` reads a process's resident memory from /proc.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from .upstream import Reply

LINE = (b"X-Junk: " + b"a" * 1000 + b"\r\n") * 16  # 16 header lines a write


@dataclass
class Stats:
    connections: int = 0
    closed_by_proxy: int = 0
    bytes_sent: int = 0
    bytes_read: int = 0
    statuses: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def rss(pid: int) -> int:
    """Resident memory of `pid` in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise ValueError("no VmRSS")


def dial(port: int, source: str | None = None, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0) if source else None
    )
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _readable(sock: socket.socket, wait: float) -> bool:
    """Whether `sock` has something to read (or an EOF) within `wait` seconds. poll, not
    select: these tests hold more than 1,024 sockets."""
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(wait * 1000))


def status_of(sock: socket.socket, wait: float = 0.5) -> int | None:
    """The status of whatever answer the proxy sent, without waiting long; None if none."""
    try:
        if not _readable(sock, wait):
            return None
        data = sock.recv(64)
    except (OSError, ValueError):
        return None
    if data.startswith(b"HTTP/1.1 "):
        return int(data[9:12])
    return None


def closed_by_peer(sock: socket.socket, wait: float) -> bool:
    """Whether the proxy closed `sock` within `wait` seconds (EOF or reset)."""
    try:
        while _readable(sock, wait):
            if not sock.recv(65536):
                return True
        return False
    except OSError:
        return True


def endless_headers(
    port: int, stop: threading.Event, source: str | None = None, *, reconnect: bool = True
) -> Stats:
    """Header lines that never end; when the proxy hangs up, connect and start again."""
    stats = Stats()
    while not stop.is_set():
        one = endless_headers_once(port, stop, source)
        stats.connections += one.connections
        stats.closed_by_proxy += one.closed_by_proxy
        stats.bytes_sent += one.bytes_sent
        stats.statuses += one.statuses
        stats.errors += one.errors
        if not reconnect:
            break
        stop.wait(0.01)
    return stats


def endless_headers_once(
    port: int, stop: threading.Event, source: str | None = None, max_bytes: int = 1 << 40
) -> Stats:
    """One connection's header lines, until the proxy hangs up, `stop` or `max_bytes`."""
    stats = Stats()
    try:
        sock = dial(port, source)
    except OSError as e:
        stats.errors.append(repr(e))
        stop.wait(0.05)
        return stats
    stats.connections += 1
    with sock:
        try:
            sock.sendall(b"GET http://news.example/endless HTTP/1.1\r\nHost: news.example\r\n")
            while not stop.is_set() and stats.bytes_sent < max_bytes:
                sock.sendall(LINE)
                stats.bytes_sent += len(LINE)
        except OSError:
            stats.closed_by_proxy += 1
            status = status_of(sock, 0.2)
            if status:
                stats.statuses[status] += 1
    return stats


def slow_head(
    port: int, stop: threading.Event, source: str | None = None, delay: float = 0.2
) -> Stats:
    """A head sent a byte at a time, again and again."""
    stats = Stats()
    while not stop.is_set():
        try:
            sock = dial(port, source)
        except OSError as e:
            stats.errors.append(repr(e))
            stop.wait(0.1)
            continue
        stats.connections += 1
        with sock:
            try:
                for byte in b"GET http://news.example/slow HTTP/1.1\r\nX-Slow: " + b"s" * 10_000:
                    if stop.is_set():
                        break
                    sock.sendall(bytes([byte]))
                    stats.bytes_sent += 1
                    stop.wait(delay)
            except OSError:
                stats.closed_by_proxy += 1
                status = status_of(sock, 0.2)
                if status:
                    stats.statuses[status] += 1
    return stats


def slow_body(
    port: int, stop: threading.Event, source: str | None = None, delay: float = 0.5
) -> Stats:
    """A POST that announces a megabyte and sends it a byte at a time."""
    stats = Stats()
    while not stop.is_set():
        try:
            sock = dial(port, source)
        except OSError as e:
            stats.errors.append(repr(e))
            stop.wait(0.1)
            continue
        stats.connections += 1
        with sock:
            try:
                sock.sendall(
                    b"POST http://news.example/upload HTTP/1.1\r\nHost: news.example\r\n"
                    b"Content-Length: 1000000\r\n\r\n"
                )
                while not stop.is_set():
                    sock.sendall(b"x")
                    stats.bytes_sent += 1
                    stop.wait(delay)
            except OSError:
                stats.closed_by_proxy += 1
                status = status_of(sock, 0.2)
                if status:
                    stats.statuses[status] += 1
    return stats


@contextlib.contextmanager
def idle_sockets(port: int, count: int, source: str | None = None) -> Iterator[list]:
    """`count` connections opened and left silent (fewer if connecting fails)."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            try:
                sockets.append(dial(port, source, timeout=2))
            except OSError:
                break
        yield sockets
    finally:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


def huge_cookie(port: int, size: int, source: str | None = None, path: str = "/") -> int | None:
    """One request carrying a Cookie header of `size` bytes: the status, or None if the
    proxy hung up without one."""
    with dial(port, source, timeout=10) as sock:
        head = (
            f"GET http://news.example{path} HTTP/1.1\r\nHost: news.example\r\n"
            f"Cookie: c={'v' * size}\r\nConnection: close\r\n\r\n"
        ).encode()
        with contextlib.suppress(OSError):
            sock.sendall(head)
        return status_of(sock, 10)


def tiny_chunks(
    port: int, chunks: int, source: str | None = None, path: str = "/tiny"
) -> int | None:
    """A chunked POST of `chunks` one-byte chunks (sent in batches): the status."""
    with dial(port, source, timeout=20) as sock:
        sock.sendall(
            f"POST http://news.example{path} HTTP/1.1\r\nHost: news.example\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        batch = b"1\r\nx\r\n" * 1000
        for _ in range(chunks // 1000):
            sock.sendall(batch)
        sock.sendall(b"0\r\n\r\n")
        return status_of(sock, 20)


def download(
    port: int,
    url: str,
    stop: threading.Event,
    source: str | None = None,
    *,
    rate: int | None = None,
) -> Stats:
    """GET `url` and read its body until `stop` (at `rate` bytes/s, or as fast as it comes),
    then hang up; again and again."""
    stats = Stats()
    while not stop.is_set():
        try:
            sock = dial(port, source, timeout=5)
        except OSError as e:
            stats.errors.append(repr(e))
            stop.wait(0.1)
            continue
        stats.connections += 1
        with sock:
            try:
                host = url.split("/")[2]
                sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                while not stop.is_set():
                    data = sock.recv(1024 if rate else 65536)
                    if not data:
                        break
                    stats.bytes_read += len(data)
                    if rate:
                        stop.wait(len(data) / rate)
            except OSError as e:
                stats.errors.append(repr(e))
    return stats


def endless_body(stop: threading.Event, piece: int = 16 * 1024, limit: int = 1 << 34) -> Reply:
    """An origin's chunked response that goes on until `stop` (or `limit` bytes)."""
    block = b"e" * piece

    def pieces() -> Iterator[bytes]:
        sent = 0
        while not stop.is_set() and sent < limit:
            yield block
            sent += piece

    return Reply(200, pieces, [("Content-Type", "application/octet-stream")], chunked=True)


def tiny_chunked_body(stop: threading.Event, limit: int = 1 << 34) -> Reply:
    """An origin's chunked response of one-byte chunks that goes on until `stop`."""
    block = b"1\r\nt\r\n" * 10_000

    def pieces() -> Iterator[bytes]:
        sent = 0
        while not stop.is_set() and sent < limit:
            yield block
            sent += len(block)
        yield b"0\r\n\r\n"

    return Reply(200, pieces, [("Content-Type", "text/plain")], chunked=True, framed=True)


def giant_head(lines: int = 5000) -> Reply:
    """An origin's response whose head is `lines` kilobyte-long header lines."""
    return Reply(200, b"never seen", [("X-Junk", "a" * 1000)] * lines)


def sample_until(stop: threading.Event, pid: int, every: float = 0.2) -> list[int]:
    """Resident memory of `pid` every `every` seconds until `stop` (call in a thread)."""
    samples = []
    while not stop.is_set():
        with contextlib.suppress(OSError, ValueError):
            samples.append(rss(pid))
        stop.wait(every)
    return samples
