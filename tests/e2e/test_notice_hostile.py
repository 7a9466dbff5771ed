"""Hostile pages on a monitored site, through a real `auditproxy run` (issue #13).

Each page is built to make the notice's work as costly as it can: 300 KB of a script that
switches escape states every 5 bytes (once 37 s of a frozen proxy), a gzip body of many
empty members with a truncated last one (once quadratic), a zstd bomb (once 264 MB of
memory a request). While several people open it at once, again and again (each time the
page is skipped and the day's claim given back, so each time the work is done anew):
- another person's requests to another site keep completing quickly (bounded generously:
  under 2 s each, where they take milliseconds);
- `/healthz` answers 200;
- the hostile page arrives intact: the origin's bytes (it is skipped, each time);
- the skip is counted in `auditproxy_notice_skipped_total{reason}` (for what the page is,
  or `deadline` when the workers are busy with the others).
"""

from __future__ import annotations

import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import ProxyClient, Reply
from support import hostile_pages as hostile
from support.notice import DOCUMENT, NOTICE

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

HOSTILE_URL = "http://www.facebook.com/hostile"
OTHER_URL = "http://www.example.org/news"
BOUND_SECONDS = 2.0  # another person's request; ~0.01 s normally
SKIPPED = "auditproxy_notice_skipped_total"


def zstd_bomb(size: int = 512 * 1024 * 1024) -> bytes:
    """A few KB that decode to `size` bytes of zeros (built a MiB at a time)."""
    compressor = zstd.ZstdCompressor(level=1)
    block = bytes(1024 * 1024)
    return b"".join(compressor.compress(block) for _ in range(size // len(block))) + (
        compressor.flush()
    )


def cases() -> dict[str, tuple[str | None, bytes, str]]:
    """(Content-Encoding, body, the skip reason expected) of each hostile page."""
    empty = hostile.encode(b"", "gzip")
    return {
        "script escape switches": (
            None,
            hostile.scan_shapes(300_000)["script, many <!-->"],
            "no_insertion_point",
        ),
        "gzip of many empty members": ("gzip", empty * 150_000 + empty[:-4], "decode_error"),
        "zstd bomb": ("zstd", zstd_bomb(), "too_large"),
    }


CASES = cases()


def healthz(proxy) -> int:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(proxy.metrics_url("/healthz"), timeout=10) as response:
        return response.status


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_hostile_page_holds_up_nobody(start_proxy, e2e_policy, upstream, name: str) -> None:
    encoding, body, reason = CASES[name]
    headers = [("Content-Type", "text/html; charset=utf-8")]
    if encoding:
        headers.append(("Content-Encoding", encoding))
    upstream.route("www.facebook.com", "/hostile", Reply(200, body, headers))
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, timeout=60)
    assert client.get(OTHER_URL).status == 200  # warm

    done = threading.Event()
    other: list[float] = []
    health: list[int] = []

    def another_person() -> None:
        while not done.is_set():
            started = time.monotonic()
            assert client.get(OTHER_URL).status == 200
            other.append(time.monotonic() - started)
            health.append(healthz(proxy))

    def hostile_visit(_: int):
        return client.get(HOSTILE_URL, headers=DOCUMENT)

    watcher = threading.Thread(target=another_person)
    watcher.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            responses = list(pool.map(hostile_visit, range(8)))
    finally:
        done.set()
        watcher.join(30)

    assert other, "the other person's requests never completed"
    assert max(other) < BOUND_SECONDS, f"another person waited {max(other):.2f} s"
    assert set(health) == {200}
    for response in responses:  # skipped, each: exactly the origin's bytes
        assert (response.status, response.body) == (200, body)
    # Concurrent visits lose the day's claim to one another: at least one skip, for what
    # the page is, or for the deadline when the workers are busy (a loaded machine).
    deadline = time.monotonic() + 10
    while sum(proxy.metric(SKIPPED, reason=r) for r in (reason, "deadline")) < 1:
        assert time.monotonic() < deadline, proxy.metric(SKIPPED)
        time.sleep(0.1)
    records = proxy.wait_for_records(len(responses) + 2)
    assert all(r["http.response.status_code"] == 200 for r in records)
    assert not [r for r in records if r["event.action"] == "notice-shown"]


def test_the_notice_still_goes_out_after_hostile_pages(start_proxy, e2e_policy, upstream) -> None:
    """The skipped pages gave the day back: the person's next ordinary page shows it."""
    _, body, _ = CASES["script escape switches"]
    upstream.route("www.facebook.com", "/hostile", Reply.html(body))
    proxy = start_proxy(policy=e2e_policy)
    client = ProxyClient("127.0.0.1", proxy.port, timeout=60)
    for _ in range(3):
        assert client.get(HOSTILE_URL, headers=DOCUMENT).body == body
    page = client.get("http://www.facebook.com/", headers=DOCUMENT)
    assert NOTICE in page.decoded()
    proxy.wait_for_records(1, lambda r: r["event.action"] == "notice-shown")
