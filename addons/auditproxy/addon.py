"""The mitmproxy add-on: thin hooks over the pure pipeline.

One request's path through it; each hook runs its stages in this order, each guarded on
its own (a fault is logged, counted in `auditproxy_errors_total{stage}`, and the flow goes
on unchanged: fail open):

    http_connect     refuse clients outside the policy's networks; remember who opened
                     the tunnel (proxy auth, a front proxy's header) for its requests
    tls_clienthello  classify the tunnel by every name it goes by; `bypass` leaves it
                     undecrypted and writes its `tunnel` record
    requestheaders   classify -> identify -> decide (`Engine.decide`); enforce block or
                     refuse; answer the notice's acknowledgement link
    responseheaders  notice: is this page due today's notice? count streamed bytes
    response         notice: claim the day, insert the banner; then the sinks: one
                     access record, the metrics
    error            notice: give back a claim whose page failed; the access record

The Decision is kept in `flow.metadata["auditproxy"]` for every later stage and add-on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

from mitmproxy import connection, ctx, exceptions, http, tls
from mitmproxy import version as mitmproxy_version

from auditproxy import pages
from auditproxy.accesslog import (
    AccessLog,
    Exchange,
    LogSink,
    access_event,
    strip_query,
    tunnel_event,
)
from auditproxy.days import Calendar, DailyUsers
from auditproxy.engine import Decision, Engine
from auditproxy.flowheaders import host_header, request_headers
from auditproxy.identity import canonical_address, load_key
from auditproxy.metrics import Heartbeat, Metrics, MetricsServer, status_class
from auditproxy.notice import NoticeStage
from auditproxy.policy import Action, Policy, PolicyError, parse_policy
from auditproxy.state import MemoryState, NoticeState, Resilient, SQLiteState
from auditproxy.watch import FileWatch

logger = logging.getLogger("auditproxy")

DECISION = "auditproxy"  # flow.metadata key: the Decision
_LOGGED = "auditproxy.logged"  # flow.metadata key: the access record went out
_ENFORCED = "auditproxy.enforced"  # flow.metadata key: "block" or "refuse" (we answered)
_STREAMED_BYTES = "auditproxy.streamed_bytes"

DEFAULT_POLICY = Path(__file__).parent / "data" / "department.yaml"
KEY_FILE_NAME = "auditproxy-pseudonym.key"
STATE_FILE_NAME = "auditproxy-state.sqlite3"
DEFAULT_NOTICE_MAX_BYTES = 4 * 1024 * 1024
_FAULT_LOG_INTERVAL = 10.0  # seconds between tracebacks of the same stage


def hook(name: str) -> Callable:
    """Time a hook into `auditproxy_hook_duration_seconds{hook}`: the add-on's own cost."""

    def decorate(method: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
        @functools.wraps(method)
        def timed(self: AuditProxy, arg: Any) -> None:
            start = time.perf_counter()
            try:
                method(self, arg)
            finally:
                self._hook_timers[name].observe(time.perf_counter() - start)

        return timed

    return decorate


class _ByteCounter:
    """Stands in as `response.stream` to count bytes of a streamed body as they pass."""

    __slots__ = ("inner", "total")

    def __init__(self, inner: Callable[[bytes], Any] | None) -> None:
        self.inner = inner
        self.total = 0

    def __call__(self, chunk: bytes) -> Any:
        self.total += len(chunk)
        return self.inner(chunk) if self.inner is not None else chunk


class AuditProxy:
    """Policy lifecycle, the request pipeline and its sinks (access log, metrics)."""

    HOOKS = (
        "requestheaders",
        "http_connect",
        "tls_clienthello",
        "responseheaders",
        "response",
        "error",
    )

    def __init__(self) -> None:
        self.metrics = Metrics(mitmproxy_version.VERSION)
        self.heartbeat = Heartbeat()
        self.engine: Engine | None = None
        self.access_log: AccessLog | None = None
        self.calendar: Calendar | None = None
        self.daily_users: DailyUsers | None = None
        self.watch: FileWatch | None = None
        self.server: MetricsServer | None = None
        self._sink: LogSink | None = None
        self._tasks: list[asyncio.Task] = []
        self._tunnel_identity: WeakKeyDictionary[connection.Client, tuple[str | None, str | None]]
        self._tunnel_identity = WeakKeyDictionary()
        self._hook_timers = {h: self.metrics.hook_duration.labels(h) for h in self.HOOKS}
        self._last_fault_log: dict[str, float] = {}
        self._reload_interval = 1.0
        self._options_ready = False
        self._force_reload = False
        self._state: NoticeState | None = None
        self._pruned_before: date | None = None
        self.notice = NoticeStage(self.metrics, self._emit, MemoryState(), DEFAULT_NOTICE_MAX_BYTES)

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        loader.add_option(
            "auditproxy_policy",
            str,
            str(DEFAULT_POLICY),
            "The department's electronic-network policy (YAML). Watched: a valid change "
            "applies within seconds; an invalid one is logged and the last good policy stays.",
        )
        loader.add_option(
            "auditproxy_reload_interval",
            str,
            "1",
            "Seconds between checks of the policy file and the access log's rotation.",
        )
        loader.add_option(
            "auditproxy_access_log",
            str,
            "-",
            "Where the JSON access log goes: a file (reopened when rotated) or '-' for stdout.",
        )
        loader.add_option(
            "auditproxy_metrics_host",
            str,
            "127.0.0.1",
            "Address for the /metrics and /healthz endpoints.",
        )
        loader.add_option(
            "auditproxy_metrics_port",
            int,
            9464,
            "Port for the /metrics and /healthz endpoints; 0 turns them off.",
        )
        loader.add_option(
            "auditproxy_pseudonym_key",
            str,
            "",
            "File holding the secret key for user pseudonyms (HMAC-SHA256). Default: "
            f"CONFDIR/{KEY_FILE_NAME}, created with mode 0600 on first start.",
        )
        loader.add_option(
            "auditproxy_state",
            str,
            "",
            "The daily notice state: a SQLite file, or redis://HOST:PORT/DB (rediss:// for "
            "TLS) shared by several instances behind a load balancer. Default: "
            f"CONFDIR/{STATE_FILE_NAME}.",
        )
        loader.add_option(
            "auditproxy_notice_max_bytes",
            int,
            DEFAULT_NOTICE_MAX_BYTES,
            "Largest page (decoded bytes) the notice is put into; larger pages are skipped "
            "(reason too_large). Keep it at or below mitmproxy's stream_large_bodies.",
        )

        self._options_ready = True

    def configure(self, updated: set[str]) -> None:
        if not self._options_ready:
            return  # load() is still registering options; each one announces itself
        if "auditproxy_reload_interval" in updated:
            self._reload_interval = _parse_interval(ctx.options.auditproxy_reload_interval)
        if "auditproxy_access_log" in updated or self._sink is None:
            self._open_access_log(ctx.options.auditproxy_access_log)
        if "auditproxy_notice_max_bytes" in updated:
            self.notice.max_bytes = ctx.options.auditproxy_notice_max_bytes
        if updated & {"auditproxy_state", "confdir"} or self._state is None:
            self._open_state()
        policy_options = {"auditproxy_policy", "auditproxy_pseudonym_key", "confdir"}
        if updated & policy_options or self.engine is None:
            path = ctx.options.auditproxy_policy or str(DEFAULT_POLICY)
            try:
                engine = self._compile(Path(path).read_bytes(), path)
            except OSError as e:
                self.metrics.policy_reloads.labels("failure").inc()
                raise exceptions.OptionsError(f"cannot read policy {path}: {e.strerror}") from e
            except ValueError as e:
                self.metrics.policy_reloads.labels("failure").inc()
                raise exceptions.OptionsError(f"policy {path} is not usable:\n{e}") from e
            self._install(engine)
            self.watch = FileWatch(path)

    def _open_access_log(self, path: str) -> None:
        try:
            sink = LogSink(
                path, self._count_record, on_fault=lambda message: self.fault("log", message)
            )
        except OSError as e:
            raise exceptions.OptionsError(
                f"cannot open access log {path}: {e.strerror or e}"
            ) from e
        if self._sink is not None:
            self._sink.close()
        self._sink = sink
        if self.engine is not None:
            self.access_log = AccessLog(sink, self.engine.policy.logging)

    def _open_state(self) -> None:
        value = ctx.options.auditproxy_state or str(
            Path(ctx.options.confdir).expanduser() / STATE_FILE_NAME
        )
        state = self._state_store(value)
        if self._state is not None:
            self._state.close()
        self._state = state
        self.notice.state = state
        # auditproxy_state_backend is read at each scrape, so it follows faults and recoveries.
        for name in ("sqlite", "redis", "memory"):
            self.metrics.state_backend.labels(name).set_function(
                lambda name=name: float(name == state.backend)
            )

    def _state_store(self, value: str) -> Resilient:
        """The configured store behind its memory fallback.

        `redis://` or `rediss://` names a Redis server that several instances share (the
        `redis` extra); anything else is the embedded SQLite file. A bad URL or a missing
        client stops the start (an operator's mistake); an unreachable server does not.
        """
        from auditproxy import state_redis

        if not state_redis.is_state_url(value):
            return Resilient(lambda: SQLiteState(value), self._state_fault, name="sqlite")
        try:
            settings = state_redis.parse_state_url(value)
            state_redis.require_client()
        except (ValueError, RuntimeError) as e:
            raise exceptions.OptionsError(f"auditproxy_state: {e}") from None

        def day_end(day: date) -> float:  # the policy's timezone, as reloaded
            tz = self.calendar.tz if self.calendar is not None else state_redis.UTC
            return state_redis.end_of_day(day, tz)

        def opener() -> NoticeState:
            return state_redis.RedisState(settings, day_end)

        logger.info("notice state shared on %s", settings.describe())
        return Resilient(opener, self._state_fault, settings.retry_after, name="redis")

    def _state_fault(self, what: str, error: Exception) -> None:
        self.fault(
            "state",
            f"notice state {what} failed ({type(error).__name__}: {error}); "
            "using memory until it works again",
        )

    def _count_record(self, outcome: str) -> None:
        self.metrics.log_records.labels(outcome).inc()

    def _key_path(self) -> tuple[Path, bool]:
        """The key file (pseudonyms, notice tokens), and whether we may create it: only at
        the default place, so a mistyped path never silently starts a new key."""
        if ctx.options.auditproxy_pseudonym_key:
            return Path(ctx.options.auditproxy_pseudonym_key).expanduser(), False
        return Path(ctx.options.confdir).expanduser() / KEY_FILE_NAME, True

    def _compile(self, data: bytes, source: str) -> Engine:
        """Policy bytes -> a ready Engine. Pure enough to run in a worker thread."""
        policy = parse_policy(data, source=source)
        NoticeStage.check(policy)
        key_path, may_create = self._key_path()
        return Engine(policy, load_key(key_path, create=may_create))

    def _install(self, engine: Engine) -> None:
        policy: Policy = engine.policy
        previous = self.engine
        self.engine = engine
        self.metrics.set_policy(policy.name, policy.sha256)
        self.metrics.policy_last_reload_successful.set(1)
        if previous is None or previous.policy.timezone != policy.timezone:
            self.calendar = Calendar(policy.timezone)
            self.daily_users = DailyUsers(self.calendar)
        assert self.calendar is not None
        self.notice.configure(engine, self.calendar)
        if self._sink is not None:
            if self.access_log is None:
                self.access_log = AccessLog(self._sink, policy.logging)
            else:
                self.access_log = self.access_log.with_settings(policy.logging)
        if previous is not None:
            self.metrics.policy_reloads.labels("success").inc()
            logger.info(
                "policy reloaded: %s (sha256 %s, %d sites)",
                policy.name,
                policy.sha256[:12],
                len(policy.sites),
            )
        else:
            logger.info(
                "policy loaded: %s from %s (sha256 %s, %d sites, %d domains)",
                policy.name,
                policy.source,
                policy.sha256[:12],
                len(policy.sites),
                len(engine.classifier),
            )

    # ------------------------------------------------------------------ lifecycle

    def running(self) -> None:
        if self.engine is None:
            # Added without any of our options set: configure from the defaults now. An
            # error logged here makes mitmproxy's start-up check exit with status 1.
            try:
                self.configure(set())
            except exceptions.OptionsError as e:
                logger.error("auditproxy cannot start: %s", e)
                return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._beat(), name="auditproxy-heartbeat"),
            loop.create_task(self._maintain(), name="auditproxy-maintain"),
        ]
        # SIGHUP reopens the log and re-reads the policy at once; where the loop cannot take
        # signals (not the main thread, or no SIGHUP on the platform) polling does the work.
        if hasattr(signal, "SIGHUP") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(RuntimeError, ValueError):
                loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self._start_metrics_server()

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self._sink is not None:
            self._sink.close()
        if self._state is not None:
            self._state.close()

    def _start_metrics_server(self) -> None:
        port = ctx.options.auditproxy_metrics_port
        if self.server is not None or not port:
            return
        host = ctx.options.auditproxy_metrics_host
        try:
            server = MetricsServer(self.metrics, self.heartbeat, host, port, self._health)
        except OSError as e:
            # Metrics are not worth taking the web away from staff: keep proxying, retry.
            self.fault("metrics", f"cannot listen on {host}:{port} for metrics: {e.strerror}")
            return
        server.start()
        self.server = server
        logger.info("metrics and health on http://%s:%d/metrics and /healthz", host, port)

    def _health(self) -> dict:
        engine = self.engine
        return {
            "policy": engine.policy.name if engine else None,
            "policy_sha256": engine.policy.sha256 if engine else None,
            "access_log_ok": self._sink.healthy if self._sink else False,
            "access_log_backlog": self._sink.backlog if self._sink else 0,
        }

    async def _beat(self) -> None:
        while True:
            self.heartbeat.beat()
            await asyncio.sleep(1.0)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(self._reload_interval)
            for stage, step in (
                ("log", self._maintain_log),
                ("reload", self._check_policy),
                ("state", self._maintain_state),
                ("metrics", self._maintain_metrics),
            ):
                try:
                    result = step()
                    if asyncio.iscoroutine(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.fault(stage)

    def _maintain_log(self) -> None:
        if self._sink is not None:
            self._sink.maintain()

    def _maintain_state(self) -> None:
        """Once a day, forget the past days (only today's claims matter)."""
        if self._state is None or self.calendar is None:
            return
        self._state.poll()  # back on the store after a fault, even with no traffic
        today = self.calendar.today()
        if self._pruned_before != today:
            removed = self._state.prune(today)
            self._pruned_before = today
            if removed:
                logger.info("notice state: forgot %d records of past days", removed)

    def _maintain_metrics(self) -> None:
        self._start_metrics_server()
        if self.daily_users is not None:
            counts = self.daily_users.counts()
            for category in {c.name for c in self.engine.policy.categories} | {"other"}:
                self.metrics.daily_users.labels(category).set(counts.get(category, 0))

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reopening the access log and re-reading the policy")
        if self._sink is not None:
            self._sink.reopen()
        if self.watch is not None:
            self._force_reload = True  # re-read the key file too, even if the policy is the same
            self.watch.force()

    async def _check_policy(self) -> None:
        watch = self.watch
        if watch is None or not watch.poll():
            return
        if watch.missing():
            self._reload_failed(f"policy file {watch.path} is missing")
            return
        try:
            data = Path(watch.path).read_bytes()
        except OSError as e:
            self._reload_failed(f"cannot read policy {watch.path}: {e.strerror}")
            return
        forced, self._force_reload = self._force_reload, False
        unchanged = self.engine and hashlib.sha256(data).hexdigest() == self.engine.policy.sha256
        if unchanged and not forced:  # touched, not changed
            self.metrics.policy_last_reload_successful.set(1)
            return
        try:
            engine = await asyncio.to_thread(self._compile, data, watch.path)
        except PolicyError as e:
            self._reload_failed(f"policy {watch.path} has {len(e.problems)} problem(s):\n{e}")
            return
        except ValueError as e:
            self._reload_failed(f"policy {watch.path} is not usable: {e}")
            return
        self._install(engine)

    def _reload_failed(self, why: str) -> None:
        self.metrics.policy_reloads.labels("failure").inc()
        self.metrics.policy_last_reload_successful.set(0)
        current = self.engine.policy if self.engine else None
        keeping = f"{current.name} (sha256 {current.sha256[:12]})" if current else "nothing"
        logger.error("policy reload failed; keeping %s in force. %s", keeping, why)

    def fault(self, stage: str, message: str | None = None) -> None:
        """Count a fault inside the add-on and log it (tracebacks at most every 10 s)."""
        self.metrics.errors.labels(stage).inc()
        now = time.monotonic()
        if now - self._last_fault_log.get(stage, float("-inf")) < _FAULT_LOG_INTERVAL:
            return
        self._last_fault_log[stage] = now
        # WARNING, not ERROR: the proxy survives these, and mitmproxy aborts its start-up
        # on any ERROR (a corrupt state file must not keep the web from staff). The
        # counter is what alerts.
        if message:
            logger.warning("auditproxy %s fault (traffic continues): %s", stage, message)
        else:
            logger.warning("auditproxy %s fault (traffic continues)", stage, exc_info=True)

    # ------------------------------------------------------------------ hooks
    #
    # Each hook runs its stages in pipeline order; each stage is guarded on its own, so a
    # fault in one (counted under its name) never stops the next or the traffic.

    def _run(self, stage: str, step: Callable[..., None], *args: Any) -> None:
        try:
            step(*args)
        except Exception:
            self.fault(stage)

    @hook("http_connect")
    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or not flow.live or self.engine is None:
            return
        self._run("enforce", self._admit_tunnel, self.engine, flow)

    @hook("tls_clienthello")
    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if self.engine is None or data.ignore_connection:
            return
        self._run("tunnel", self._decide_tunnel, self.engine, data)

    @hook("requestheaders")
    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.error or not flow.live or self.engine is None:
            return
        engine = self.engine
        self._run("classify", self._decide_request, engine, flow)
        decision: Decision | None = flow.metadata.get(DECISION)
        if decision is None or flow.response:
            return  # answered before us (e.g. 407 from proxy authentication): log only
        self._run("enforce", self._enforce, engine, flow, decision)
        if not flow.response and self.notice.is_acknowledgement(flow):
            self._run("notice", self._acknowledge, engine, flow, decision)

    @hook("responseheaders")
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        decision: Decision | None = flow.metadata.get(DECISION)
        if flow.response is None or decision is None or self.engine is None:
            return
        if not flow.metadata.get(_ENFORCED):
            self._run("notice", self.notice.consider, self.engine, flow, decision)
        if flow.response.stream:
            self._run("metrics", self._count_streamed, flow)

    @hook("response")
    def response(self, flow: http.HTTPFlow) -> None:
        decision: Decision | None = flow.metadata.get(DECISION)
        if decision is not None and self.engine is not None:
            self._run("notice", self.notice.deliver, self.engine, flow, decision)
        self._run("log", self._record, flow)

    @hook("error")
    def error(self, flow: http.HTTPFlow) -> None:
        if flow.request.method == "CONNECT":
            return  # a tunnel's fate is its requests' (or its tunnel record's)
        self._run("notice", self.notice.undelivered, flow)
        self._run("log", self._record, flow)

    # ------------------------------------------------------------------ pipeline steps

    def _admit_tunnel(self, engine: Engine, flow: http.HTTPFlow) -> None:
        """Refuse an outsider's CONNECT; remember who opened the tunnel for its requests."""
        header_value = self._take_identity_header(engine, flow)
        if flow.client_conn.peername[0] not in engine.clients:
            flow.metadata[DECISION] = self._decide(engine, flow, header_value)
            self._refuse(engine, flow)
            self._record(flow)
            return
        proxyauth = flow.metadata.get("proxyauth")
        user = proxyauth[0] if proxyauth else None
        self._tunnel_identity[flow.client_conn] = (user, header_value)

    def _decide_tunnel(self, engine: Engine, data: tls.ClientHelloData) -> None:
        """Classify a TLS connection by every name it goes by; leave `bypass` undecrypted."""
        client = data.context.client
        server_address = data.context.server.address
        server_host = server_address[0] if server_address else None
        sni = data.client_hello.sni
        user, header_value = self._tunnel_identity.get(client, (None, None))
        decision = engine.decide(
            host=sni or server_host,
            other_names=(server_host,),
            sni=sni,
            client_address=client.peername[0],
            proxyauth_user=user,
            header_value=header_value,
        )
        self.metrics.tunnels.labels(decision.match.category, decision.action_label).inc()
        if decision.action is Action.BYPASS:
            data.ignore_connection = True
            port = server_address[1] if server_address else 443
            self._emit(tunnel_event(decision, port, canonical_address(client.peername[0])))

    def _decide_request(self, engine: Engine, flow: http.HTTPFlow) -> None:
        header_value = self._take_identity_header(engine, flow)
        if header_value is None:  # HTTPS: a front proxy's header came with the CONNECT
            header_value = self._tunnel_identity.get(flow.client_conn, (None, None))[1]
        flow.metadata[DECISION] = self._decide(engine, flow, header_value)

    def _enforce(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> None:
        if not decision.allowed_client:
            self._refuse(engine, flow)
        elif decision.action is Action.BLOCK:
            self._block(engine, flow, decision)

    def _acknowledge(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> None:
        if self.notice.acknowledge(engine, flow, decision):
            flow.metadata[_LOGGED] = True  # its record is the notice-acknowledged one

    def _count_streamed(self, flow: http.HTTPFlow) -> None:
        response = flow.response
        assert response is not None
        counter = _ByteCounter(response.stream if callable(response.stream) else None)
        response.stream = counter
        flow.metadata[_STREAMED_BYTES] = counter

    def _take_identity_header(self, engine: Engine, flow: http.HTTPFlow) -> str | None:
        """Read the front proxy's identity header, and never pass it on to the origin."""
        name = engine.identity_header
        if not name or name.lower().encode() not in request_headers(flow):
            return None
        value = flow.request.headers.get(name)
        del flow.request.headers[name]
        request_headers(flow).pop(name.lower().encode(), None)
        return value

    def _decide(self, engine: Engine, flow: http.HTTPFlow, header_value: str | None) -> Decision:
        request = flow.request
        proxyauth = flow.metadata.get("proxyauth")
        return engine.decide(
            host=host_header(flow) or request.host,
            other_names=(request.host,),
            sni=flow.client_conn.sni,
            client_address=flow.client_conn.peername[0],
            proxyauth_user=proxyauth[0] if proxyauth else None,
            header_value=header_value,
        )

    def _refuse(self, engine: Engine, flow: http.HTTPFlow) -> None:
        flow.metadata[_ENFORCED] = "refuse"
        flow.response = http.Response.make(
            403, pages.refused_page(engine.policy), pages.PAGE_HEADERS
        )

    def _block(self, engine: Engine, flow: http.HTTPFlow, decision: Decision) -> None:
        flow.metadata[_ENFORCED] = "block"
        flow.response = http.Response.make(
            403, pages.blocked_page(engine.policy, decision.host), pages.PAGE_HEADERS
        )

    def _record(self, flow: http.HTTPFlow) -> None:
        """The one access record of a request, and its metrics."""
        if flow.metadata.get(_LOGGED):
            return
        decision: Decision | None = flow.metadata.get(DECISION)
        if decision is None:
            if self.engine is None:
                return
            decision = self._decide(self.engine, flow, None)
        flow.metadata[_LOGGED] = True
        exchange = _exchange(flow)
        action = "blocked" if flow.metadata.get(_ENFORCED) else "access"
        self._emit(access_event(decision, exchange, action))

        match = decision.match
        m = self.metrics
        m.requests.labels(
            match.category, match.site, decision.action_label, status_class(exchange.status)
        ).inc()
        if exchange.response_bytes:
            m.response_bytes.labels(match.category).inc(exchange.response_bytes)
        if exchange.duration_ns is not None:
            m.request_duration.labels(match.category).observe(exchange.duration_ns / 1e9)
        users = self.daily_users
        if (
            users is not None
            and decision.allowed_client
            and users.add(match.category, decision.identity.name)
        ):
            m.daily_users.labels(match.category).set(users.count(match.category))

    def _emit(self, fields: dict) -> None:
        if self.access_log is not None:
            self.access_log.emit(fields)


def _exchange(flow: http.HTTPFlow) -> Exchange:
    request, response = flow.request, flow.response
    streamed = flow.metadata.get(_STREAMED_BYTES)
    if streamed is not None:
        size: int | None = streamed.total
    elif response is not None:
        size = len(response.raw_content) if response.raw_content is not None else None
    else:
        size = None
    end = response.timestamp_end if response is not None else None
    if end is None and flow.error is not None:
        end = flow.error.timestamp
    duration = int((end - request.timestamp_start) * 1e9) if end else None
    return Exchange(
        method=request.method,
        scheme=request.scheme,
        port=request.port,
        path=strip_query(request.path),
        http_version=request.http_version.removeprefix("HTTP/"),
        status=response.status_code if response is not None else None,
        response_bytes=size,
        duration_ns=duration,
        client_address=canonical_address(flow.client_conn.peername[0]),
        error=_safe_error(flow.error.msg) if flow.error else None,
    )


def _safe_error(message: str) -> str:
    """An error message without anything that looks like a URL's query string."""
    words = [strip_query(w) if "?" in w else w for w in message.split()]
    return " ".join(words)[:300]


def _parse_interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.05 <= value <= 3600:
        raise exceptions.OptionsError(
            f"auditproxy_reload_interval must be seconds between 0.05 and 3600, not {text!r}"
        )
    return value
