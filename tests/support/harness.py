"""The add-on in mitmproxy's test context (no sockets): flows in, records and metrics out."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from mitmproxy import http
from mitmproxy.options import Options
from mitmproxy.test import taddons, tflow

from auditproxy.addon import AuditProxy

from .hooks import Hooks
from .notice import DOCUMENT
from .paths import POLICIES

HTML = {"Content-Type": "text/html; charset=utf-8"}
PAGE = b"<!doctype html><html><head><title>t</title></head><body><p>page</p></body></html>"


def sample(addon: AuditProxy, name: str, **labels: str) -> float:
    return addon.metrics.registry.get_sample_value(name, labels) or 0.0


class Harness:
    def __init__(self, tctx: taddons.context, addon: AuditProxy, tmp: Path) -> None:
        self.tctx, self.addon, self.tmp = tctx, addon, tmp
        self.hooks = Hooks(tctx, addon)
        self.log_path = tmp / "access.log"
        self.policy_path = tmp / "policy.yaml"

    def configure(self, **options: object) -> None:
        self.tctx.configure(self.addon, **options)

    def records(self, action: str | None = None) -> list[dict]:
        if not self.log_path.exists():
            return []
        records = [json.loads(line) for line in self.log_path.read_text().splitlines()]
        return [r for r in records if action is None or r["event.action"] == action]

    def metric(self, name: str, **labels: str) -> float:
        return sample(self.addon, name, **labels)

    def flow(
        self,
        url: str = "http://www.facebook.com/feed?x=1",
        client: str = "10.1.2.3",
        headers: dict[str, str] | None = None,
        sni: str | None = None,
        method: str = "GET",
    ) -> http.HTTPFlow:
        request = http.Request.make(method, url, b"", headers or {})
        f = tflow.tflow(req=request)
        f.client_conn.peername = (client, 50000)
        f.client_conn.sni = sni
        return f

    def respond(
        self,
        f: http.HTTPFlow,
        status: int = 200,
        body: bytes | None = b"<html>ok</html>",
        headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
    ) -> http.HTTPFlow:
        """The origin's answer (unless the proxy answered), through responseheaders and
        response, as mitmproxy would deliver it."""
        from_origin = f.response is None
        if from_origin:
            items = headers.items() if isinstance(headers, dict) else headers or []
            fields = [
                (k.encode() if isinstance(k, str) else k, v.encode() if isinstance(v, str) else v)
                for k, v in items
            ]
            if body is not None:
                fields.append((b"Content-Length", str(len(body)).encode()))
            f.response = http.Response.make(status)
            f.response.headers = http.Headers(fields)
            f.response.raw_content = None  # only the head has arrived
        self.hooks.responseheaders(f)
        if from_origin and f.response is not None:
            stream = f.response.stream
            if not stream:
                f.response.raw_content = body  # held whole, as the headers encode it
            else:  # passed on as it comes, never held; the tests read what the client got
                sent = []
                for start in range(0, len(body or b""), 4096):
                    chunk = body[start : start + 4096]  # type: ignore[index]
                    out = stream(chunk) if callable(stream) else chunk
                    sent += [out] if isinstance(out, bytes) else list(out)
                f.response.raw_content = b"".join(sent) if body is not None else None
        self.hooks.response(f)
        return f

    def exchange(self, f: http.HTTPFlow, **kw: object) -> http.HTTPFlow:
        self.hooks.requestheaders(f)
        return self.respond(f, **kw)  # type: ignore[arg-type]

    def page(
        self,
        url: str = "http://www.facebook.com/",
        body: bytes = PAGE,
        headers: dict[str, str] | list[tuple[bytes, bytes]] | None = None,
        request_headers: dict[str, str] | None = None,
        **kw: object,
    ) -> http.HTTPFlow:
        """A top-level navigation to an HTML page."""
        f = self.flow(url, headers=request_headers or DOCUMENT, **kw)  # type: ignore[arg-type]
        return self.exchange(f, body=body, headers=HTML if headers is None else headers)


def harness_for(tmp_path: Path, policy: Path = POLICIES / "small.yaml") -> Iterator[Harness]:
    addon = AuditProxy()
    policy_copy = tmp_path / "policy.yaml"
    shutil.copy(policy, policy_copy)
    with taddons.context(addon, options=Options(confdir=str(tmp_path / "conf"))) as tctx:
        tctx.configure(
            addon,
            auditproxy_access_log=str(tmp_path / "access.log"),
            auditproxy_policy=str(policy_copy),
            auditproxy_state=str(tmp_path / "state.sqlite3"),
            auditproxy_reload_interval="0.05",
        )
        yield Harness(tctx, addon, tmp_path)
        Hooks(tctx, addon).done()
