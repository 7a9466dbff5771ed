"""`auditproxy run`: mitmdump with the add-on built in, its own log on stderr.

The add-on is added directly rather than as a `-s` script: a script that fails to reload
leaves mitmproxy running without it, and the add-on reloads its policy by itself anyway.
stdout is kept for the access log (`--access-log -`), so mitmproxy's messages go to stderr.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
from collections.abc import Sequence

from mitmproxy import ctx, options
from mitmproxy.addons import dumper, termlog
from mitmproxy.tools import cmdline
from mitmproxy.tools.dump import DumpMaster
from mitmproxy.tools.main import run

from auditproxy import dispatch
from auditproxy.addon import AuditProxy


class QuietConnections:
    """mitmproxy logs every client and server connect at INFO: thousands of lines a minute
    on a department proxy. Keep them for `--set termlog_verbosity=debug` only."""

    LOGGER = "mitmproxy.proxy.server"

    def __init__(self) -> None:
        logging.getLogger(self.LOGGER).setLevel(logging.WARNING)

    def configure(self, updated: set[str]) -> None:
        if "termlog_verbosity" in updated:
            debug = ctx.options.termlog_verbosity == "debug"
            logging.getLogger(self.LOGGER).setLevel(logging.NOTSET if debug else logging.WARNING)


class AuditProxyMaster(DumpMaster):
    """mitmdump's master with the add-on, its log on stderr, and a frozen start-up heap."""

    def __init__(self, opts: options.Options, **kwargs: object) -> None:
        super().__init__(opts, with_termlog=False, with_dumper=False, **kwargs)
        if os.environ.get("AUDITPROXY_DISPATCH", "indexed") != "mitmproxy":
            dispatch.install(self.addons)
        self._termlog_addon = termlog.TermLog(out=sys.stderr)
        self.addons.add(
            self._termlog_addon,
            dumper.Dumper(outfile=sys.stderr),
            QuietConnections(),
            AuditProxy(),
        )

    async def running(self) -> None:
        await super().running()
        # Everything made at start-up (modules, options, the policy's index, certificates)
        # lives as long as the process: move it out of the cyclic GC's way. Otherwise every
        # full collection walks it again, a pause of tens of milliseconds on the one event
        # loop that carries every connection (measured: bench/RESULTS.md).
        gc.collect()
        gc.freeze()


def run_proxy(arguments: Sequence[str]) -> int:
    """Run until SIGINT/SIGTERM. mitmproxy exits 1 itself on bad options or ports in use."""
    run(AuditProxyMaster, cmdline.mitmdump, list(arguments))
    return 0
