# Over 300 lines: the proxy's lifecycle shares one state; split, each part reaches in.
"""What the pipeline runs on: options, the policy in force and its reloads, the pseudonym
key, the notice state store, the access log and its hash chain, the metrics endpoint and
the upkeep tasks.

The first add-on of the pipeline (`addon.AuditProxy`): mitmproxy hands it the options
(`load`, `configure`) and the process's life (`running`, `done`); every stage after it
reads the policy in force from it (`runtime.engine`), which is swapped whole on a reload,
so a request is decided by one policy, never half of an old one and half of a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from mitmproxy import ctx, exceptions
from mitmproxy import version as mitmproxy_version
from mitmproxy.utils import human

from auditproxy import gate, websocket_limit
from auditproxy.decide.admission import Admission, Limits, file_limit, raise_file_limit
from auditproxy.decide.decision import Engine
from auditproxy.decide.identity import load_key
from auditproxy.notice.resilient import Resilient, open_store
from auditproxy.notice.stage import NoticeStage
from auditproxy.notice.store import MemoryState
from auditproxy.options import (
    DEFAULT_NOTICE_MAX_BYTES,
    KEY_FILE_NAME,
    LIMIT_OPTIONS,
    OPTIONS,
    STATE_FILE_NAME,
    chain_state_candidates,
    limits_from,
    parse_interval,
)
from auditproxy.policy.days import Calendar
from auditproxy.policy.files import DEFAULT_MAX_BYTES, read_regular_file
from auditproxy.policy.load import DEFAULT_POLICY, parse_policy
from auditproxy.policy.model import NoticeInterval, PolicyError
from auditproxy.policy.watch import FileWatch
from auditproxy.sinks.accesslog import AccessLog
from auditproxy.sinks.chain import LogChain
from auditproxy.sinks.chainstate import Claim, claim, claim_free
from auditproxy.sinks.health import Snapshot, readiness
from auditproxy.sinks.http import Heartbeat, MetricsServer
from auditproxy.sinks.logfile import LogSink
from auditproxy.sinks.metrics import DailyUsers, Metrics
from auditproxy.sinks.recorder import Recorder
from auditproxy.sinks.seal import derive_key

logger = logging.getLogger("auditproxy")
UTC = ZoneInfo("UTC")
FILES_COUNT_INTERVAL = 5.0  # seconds between counts of the open descriptors (off the loop)


class Runtime:
    """Options, the policy in force, the state store, the log, metrics and upkeep."""

    name = "auditproxy.runtime"  # mitmproxy's add-on name

    def __init__(self) -> None:
        self.metrics = Metrics(mitmproxy_version.VERSION)
        self.recorder = Recorder(self.metrics)
        self.heartbeat = Heartbeat()
        self.notice = NoticeStage(MemoryState(), DEFAULT_NOTICE_MAX_BYTES)
        self.engine: Engine | None = None
        self.calendar: Calendar | None = None
        self.watch: FileWatch | None = None
        self.server: MetricsServer | None = None
        self.sink: LogSink | None = None
        self.chain: LogChain | None = None  # the access log's hash chain, one per sink
        self.state: Resilient | None = None
        self.limits = Limits()
        self.admission = Admission(self.limits, file_limit())
        self._tasks: list[asyncio.Task] = []
        # Whether the options can serve a policy (e.g. a keytab for its auth): each
        # raises ValueError; run on every load, so such a reload keeps the last good one.
        self.checks: list[Callable[[Engine], None]] = []
        self._reload_interval = 1.0
        self._policy_max_bytes = DEFAULT_MAX_BYTES
        self._options_ready = False
        self._force_reload = False
        self._pruned_before: date | None = None
        self.metrics.log_sequence.set_function(
            lambda: float(self.chain.sequence) if self.chain is not None else 0.0
        )
        self._files_counted_at = float("-inf")
        self._files_raised: tuple[int, int] | None = None
        self._reload_problem: str | None = None  # while reloads fail: why the last one did
        self._reload_failing_since: float | None = None
        self._reload_failures = 0
        self._websocket_limited = False
        admission, m = self.admission, self.metrics
        m.client_connections.set_function(lambda: admission.clients)
        m.open_files.set_function(lambda: admission.files)
        m.open_files_limit.set_function(lambda: admission.files_limit)

    # ------------------------------------------------------------------ options

    def load(self, loader: Any) -> None:
        for name, kind, default, help_text in OPTIONS:
            loader.add_option(name, kind, default, help_text)
        self._options_ready = True
        # As early as possible: mitmproxy listens before `running`. The soft limit (often
        # 1,024) is what `accept` runs into; the hard one is what the system allows us.
        self._files_raised = raise_file_limit()
        self.admission.files_limit = file_limit()
        count = gate.count_open_files()
        if count is not None:
            self.admission.measured(count)

    def _limit_websocket_messages(self, options: Any) -> None:
        """A WebSocket message is held no larger than a body (`websocket_limit`)."""
        size = getattr(options, "stream_large_bodies", None)
        try:
            websocket_limit.install(human.parse_size(size) if size else None)
        except ValueError as e:
            raise exceptions.OptionsError(f"stream_large_bodies: {e}") from None
        self._websocket_limited = True

    def configure(self, updated: set[str]) -> None:
        if not self._options_ready:
            return  # load() is still registering options; each one announces itself
        options = ctx.options
        if "auditproxy_reload_interval" in updated:
            try:
                self._reload_interval = parse_interval(options.auditproxy_reload_interval)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
        if "auditproxy_access_log" in updated or self.sink is None:
            self._open_access_log(options.auditproxy_access_log)
        elif "auditproxy_log_chain_state" in updated and self.engine is not None:
            self._attach_chain()
        if "stream_large_bodies" in updated or not self._websocket_limited:
            self._limit_websocket_messages(options)
        if "auditproxy_notice_max_bytes" in updated:
            self.notice.max_bytes = options.auditproxy_notice_max_bytes
        if "auditproxy_policy_max_bytes" in updated:
            if options.auditproxy_policy_max_bytes < 1:
                raise exceptions.OptionsError("auditproxy_policy_max_bytes must be positive")
            self._policy_max_bytes = options.auditproxy_policy_max_bytes
        if updated & LIMIT_OPTIONS:
            try:
                self.limits = limits_from(options)
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None
            self.admission.limits = self.limits
        if updated & {"auditproxy_state", "confdir"} or self.state is None:
            self._open_state()
        policy_options = {"auditproxy_policy", "auditproxy_pseudonym_key", "confdir"}
        if updated & policy_options or self.engine is None:
            path = options.auditproxy_policy or str(DEFAULT_POLICY)
            try:
                # Start-up or an operator's option change: nothing waits on a FIFO here
                # either, but the parse itself runs here (reloads run off the loop).
                engine = self.compile(read_regular_file(path, self._policy_max_bytes), path)
            except OSError as e:
                self.metrics.policy_reloads.labels("failure").inc()
                raise exceptions.OptionsError(f"cannot read policy {path}: {e.strerror}") from e
            except ValueError as e:
                self.metrics.policy_reloads.labels("failure").inc()
                raise exceptions.OptionsError(f"policy {path} is not usable:\n{e}") from e
            self.install(engine)
            self.watch = FileWatch(path)

    def _open_access_log(self, path: str) -> None:
        recorder = self.recorder
        try:
            sink = LogSink(
                path,
                recorder.log_record,
                on_fault=lambda message: recorder.fault("log", message),
                on_dropped=self._line_dropped,
            )
        except OSError as e:
            raise exceptions.OptionsError(
                f"cannot open access log {path}: {e.strerror or e}"
            ) from e
        if self.sink is not None:
            self.sink.close()  # what it drops is remembered by the chain it was sealed in
            self._close_chain()
        self.sink = sink
        if self.engine is not None:
            self._attach_chain()

    # ------------------------------------------------------------------ the hash chain

    def _attach_chain(self) -> None:
        """Open the hash chain of the access log in use, under the key in force (it
        resumes where this log's chain stopped), and log through it. Raises OptionsError
        (mitmproxy then rolls the option back and configures again) for a state file that
        another process holds."""
        assert self.sink is not None and self.engine is not None
        self._close_chain()  # first: it may hold the very state file
        state_path, held = self._claim_chain_state(self.sink.path)
        self.chain = LogChain.open(
            derive_key(self.engine.secret),
            self.sink.path,
            state_path,
            claim=held,
            on_fault=lambda message: self.recorder.fault("log", message),
        )
        self.metrics.set_log_chain(self.chain.chain)
        self.recorder.access_log = AccessLog(self.sink, self.engine.policy.logging, self.chain)

    def _claim_chain_state(self, log_path: str) -> tuple[Path | None, Claim | None]:
        """The chain's state file, locked for this process: one writer per chain."""
        explicit = ctx.options.auditproxy_log_chain_state
        if explicit:
            path = Path(explicit).expanduser()
            try:
                held = claim(path)
            except OSError as e:
                raise exceptions.OptionsError(
                    f"auditproxy_log_chain_state: cannot lock {path}: {e.strerror or e}"
                ) from None
            if held is None:
                raise exceptions.OptionsError(
                    f"auditproxy_log_chain_state: {path} is in use by another process; "
                    "give each instance its own"
                )
            return path, held
        candidates = chain_state_candidates(ctx.options.confdir, log_path)
        try:
            found = claim_free(candidates)
        except OSError as e:
            found, why = None, f"cannot lock it: {e.strerror or e}"
        else:
            why = "every one of them is in use"
        if found is None:
            self.recorder.fault(
                "log",
                f"no state file for the access log's hash chain ({candidates[0]}: {why}); "
                "it resumes from the log file alone",
            )
            return None, None
        return found

    def _line_dropped(self, line: bytes) -> None:
        """The log sink gave up on a sealed line: the chain declares it later."""
        if self.chain is not None:
            self.chain.dropped(line)

    def _close_chain(self) -> None:
        if self.chain is not None:
            self.chain.close()
            self.chain = None

    def _open_state(self) -> None:
        value = ctx.options.auditproxy_state or str(
            Path(ctx.options.confdir).expanduser() / STATE_FILE_NAME
        )
        state = self._state_store(value)
        if self.state is not None:
            self.state.close()
        self.state = state
        self.notice.state = state
        # auditproxy_state_backend is read at each scrape, so it follows faults and recoveries.
        for name in ("sqlite", "redis", "memory"):
            self.metrics.state_backend.labels(name).set_function(
                lambda name=name: float(name == state.backend)
            )

    def _state_store(self, value: str) -> Resilient:
        def timezone() -> ZoneInfo:  # the policy's, as reloaded
            return self.calendar.tz if self.calendar is not None else UTC

        def interval() -> NoticeInterval:  # the notice's period, as reloaded
            engine = self.engine
            return engine.policy.notice.interval if engine is not None else NoticeInterval.DAY

        try:
            return open_store(
                value, self._state_fault, timezone, self._state_lost, interval=interval
            )
        except (ValueError, RuntimeError) as e:
            raise exceptions.OptionsError(f"auditproxy_state: {e}") from None

    def _state_lost(self, cause: str) -> None:
        self.metrics.state_lost.labels(cause).inc()
        logger.warning(
            "notice state lost its data while running (%s); answering from memory and "
            "re-creating it with today's claims",
            cause,
        )

    def _state_fault(self, what: str, error: Exception) -> None:
        self.recorder.fault(
            "state",
            f"notice state {what} failed ({type(error).__name__}: {error}); "
            "using memory until it works again",
        )

    def _key_path(self) -> tuple[Path, bool]:
        """The key file (pseudonyms, notice tokens), and whether we may create it: only at
        the default place, so a mistyped path never silently starts a new key."""
        if ctx.options.auditproxy_pseudonym_key:
            return Path(ctx.options.auditproxy_pseudonym_key).expanduser(), False
        return Path(ctx.options.confdir).expanduser() / KEY_FILE_NAME, True

    def compile(self, data: bytes, source: str) -> Engine:
        """Policy bytes -> a ready Engine. Pure enough to run in a worker thread."""
        policy = parse_policy(data, source=source)
        NoticeStage.check(policy)
        key_path, may_create = self._key_path()
        engine = Engine(policy, load_key(key_path, create=may_create))
        for check in self.checks:
            check(engine)
        return engine

    def install(self, engine: Engine) -> None:
        policy = engine.policy
        previous = self.engine
        self.engine = engine
        self.metrics.set_policy(policy.name, policy.sha256)
        self.metrics.policy_last_reload_successful.set(1)
        if previous is None or previous.policy.timezone != policy.timezone:
            self.calendar = Calendar(policy.timezone)
            self.recorder.daily_users = DailyUsers(self.calendar)
        assert self.calendar is not None
        self.notice.configure(engine, self.calendar)
        recorder = self.recorder
        if self.sink is not None:
            if self.chain is None:
                self._attach_chain()
            elif (
                previous is not None
                and previous.secret != engine.secret
                and self.chain.rekey(derive_key(engine.secret))
            ):
                # The key file changed (SIGHUP re-reads it): a new chain under the new key,
                # whose first record names the old chain's last.
                self.metrics.set_log_chain(self.chain.chain)
            assert recorder.access_log is not None
            recorder.access_log = recorder.access_log.with_settings(policy.logging)
        if previous is not None:
            self.metrics.policy_reloads.labels("success").inc()
            logger.info(
                "policy reloaded: %s (sha256 %s, %d sites)",
                policy.name,
                policy.sha256[:12],
                len(policy.sites),
            )
            self._reload_recovered()
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
        admission = self.admission
        before, after = self._files_raised or (admission.files_limit, admission.files_limit)
        logger.info(
            "open files: limit %d%s, %d kept in reserve; up to %d client connections, %s",
            after,
            f" (raised from {before})" if after != before else "",
            admission.limits.file_reserve,
            admission.max_connections,
            f"{admission.limits.max_per_client} per address"
            if admission.limits.max_per_client
            else "no limit per address",
        )
        self._start_metrics_server()  # last: once /healthz answers, start-up is logged

    def done(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.sink is not None:
            self.sink.close()
        self._close_chain()  # after the sink: the state names what it wrote and dropped
        if self.state is not None:
            self.state.close()

    def _start_metrics_server(self) -> None:
        port = ctx.options.auditproxy_metrics_port
        if self.server is not None or not port:
            return
        host = ctx.options.auditproxy_metrics_host
        try:
            server = MetricsServer(
                self.metrics, self.heartbeat, host, port, self.health, self.readiness
            )
        except OSError as e:
            # Metrics are not worth taking the web away from staff: keep proxying, retry.
            self.recorder.fault(
                "metrics", f"cannot listen on {host}:{port} for metrics: {e.strerror}"
            )
            return
        server.start()
        self.server = server
        logger.info(
            "metrics, health and readiness on http://%s:%d/metrics, /healthz and /readyz",
            host,
            port,
        )

    def health(self) -> dict:
        engine = self.engine
        return {
            "policy": engine.policy.name if engine else None,
            "policy_sha256": engine.policy.sha256 if engine else None,
            "access_log_ok": self.sink.healthy if self.sink else False,
            "access_log_backlog": self.sink.backlog if self.sink else 0,
            "access_log_chain": self.chain.chain if self.chain else None,
            "access_log_sequence": self.chain.sequence if self.chain else 0,
            "state_backend": self.state.backend if self.state else None,
        }

    def readiness(self) -> tuple[bool, dict]:
        """`/readyz` (called from the endpoint's thread): see `sinks.health`."""
        engine, state, sink, admission = self.engine, self.state, self.sink, self.admission
        failing_since = self._reload_failing_since
        return readiness(
            Snapshot(
                event_loop_age=self.heartbeat.age(),
                event_loop_ok=self.heartbeat.healthy(),
                policy=engine.policy.name if engine else None,
                policy_sha256=engine.policy.sha256 if engine else None,
                reload_problem=self._reload_problem,
                reload_failing_for=(
                    time.monotonic() - failing_since if failing_since is not None else None
                ),
                state_backend=state.backend if state else None,
                state_configured=state.name if state else None,
                state_lost=state.lost if state else None,
                state_losses=state.losses if state else 0,
                log_ok=sink.healthy if sink else False,
                log_backlog=sink.backlog if sink else 0,
                log_backlog_limit=sink.backlog_limit if sink else 1,
                open_files=admission.files,
                files_limit=admission.files_limit,
                file_reserve=admission.limits.file_reserve,
                clients=admission.clients,
                max_clients=admission.max_connections,
            )
        )

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
                ("admit", self._maintain_admission),
            ):
                try:
                    result = step()
                    if asyncio.iscoroutine(result):
                        await result
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.recorder.fault(stage)

    def _maintain_log(self) -> None:
        sink, chain = self.sink, self.chain
        if sink is not None:
            sink.maintain()
        if chain is not None:
            if chain.has_dropped and sink is not None and sink.healthy and not sink.backlog:
                self.recorder.log_dropped(chain)
            chain.maintain()

    async def _maintain_state(self) -> None:
        """Notice a store that lost its data and re-create it (off the loop); once a day,
        forget the past periods (only the current period's claims matter)."""
        if self.state is None or self.calendar is None:
            return
        state = self.state
        state.poll()  # back on the store after a fault, even with no traffic
        cause = await asyncio.to_thread(state.probe)
        if cause is not None and state is self.state:
            state.lose(cause)
        if state.rebuild_due():
            try:
                store, written = await asyncio.to_thread(state.rebuild)
            except Exception as e:
                state.rebuild_failed(e)
            else:
                if state is self.state:
                    state.install(store, written)
                else:
                    store.close()
        engine = self.engine
        today = self.notice.period(engine) if engine is not None else self.calendar.today()
        if self._pruned_before != today:  # the current notice period's first day
            removed = state.prune(today)
            self._pruned_before = today
            if removed:
                logger.info("notice state: forgot %d records of past periods", removed)

    def _maintain_metrics(self) -> None:
        self._start_metrics_server()
        users, engine = self.recorder.daily_users, self.engine
        if users is not None and engine is not None:
            counts = users.counts()
            for category in {c.name for c in engine.policy.categories} | {"other"}:
                self.metrics.daily_users.labels(category).set(counts.get(category, 0))

    async def _maintain_admission(self) -> None:
        """Summed-up refusal records; a fresh count of open files now and then."""
        self.recorder.flush_refusals(self.engine)
        now = time.monotonic()
        if now - self._files_counted_at >= FILES_COUNT_INTERVAL:
            self._files_counted_at = now
            count = await asyncio.to_thread(gate.count_open_files)
            if count is not None:
                self.admission.measured(count)

    def _on_sighup(self) -> None:
        logger.info("SIGHUP: reopening the access log and re-reading the policy")
        if self.sink is not None:
            self.sink.reopen()
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
        forced, self._force_reload = self._force_reload, False
        in_force = self.engine.policy.sha256 if self.engine and not forced else None
        try:
            # Read (without waiting on a FIFO), hash and parse in a worker thread: a large
            # policy takes seconds to parse, and a path may be anything.
            engine = await asyncio.to_thread(self._read_and_compile, watch.path, in_force)
        except OSError as e:
            self._reload_failed(f"cannot read policy {watch.path}: {e.strerror or e}")
            return
        except PolicyError as e:
            self._reload_failed(f"policy {watch.path} has {len(e.problems)} problem(s):\n{e}")
            return
        except ValueError as e:
            self._reload_failed(f"policy {watch.path} is not usable: {e}")
            return
        if engine is None:  # touched, or back to the policy in force
            self.metrics.policy_last_reload_successful.set(1)
            self._reload_recovered()
            return
        self.install(engine)

    def _read_and_compile(self, path: str, in_force: str | None) -> Engine | None:
        """Off the loop: the policy's Engine, or None if it is the one in force."""
        data = read_regular_file(path, self._policy_max_bytes)
        if in_force is not None and hashlib.sha256(data).hexdigest() == in_force:
            return None
        return self.compile(data, path)

    def _reload_failed(self, why: str) -> None:
        self.metrics.policy_reloads.labels("failure").inc()
        self.metrics.policy_last_reload_successful.set(0)
        current = self.engine.policy if self.engine else None
        keeping = f"{current.name} (sha256 {current.sha256[:12]})" if current else "nothing"
        logger.error("policy reload failed; keeping %s in force. %s", keeping, why)
        self._reload_problem = why.splitlines()[0][:500]
        if self._reload_failing_since is None:
            self._reload_failing_since = time.monotonic()
        self._reload_failures += 1

    def _reload_recovered(self) -> None:
        """The first good reload after failures: say so (a fixed policy is worth a line)."""
        if self._reload_failing_since is None:
            return
        failing_for = time.monotonic() - self._reload_failing_since
        engine = self.engine
        logger.warning(
            "policy reload recovered after %d failed attempt(s) over %.0f s: %s (sha256 %s) "
            "is in force",
            self._reload_failures,
            failing_for,
            engine.policy.name if engine else "?",
            engine.policy.sha256[:12] if engine else "?",
        )
        self._reload_problem = self._reload_failing_since = None
        self._reload_failures = 0
