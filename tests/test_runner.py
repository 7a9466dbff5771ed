from __future__ import annotations

import gc
import logging

from mitmproxy import options

from auditproxy.runner import AuditProxyMaster


async def test_master_has_the_addon_and_freezes_the_start_up_heap(tmp_path):
    opts = options.Options(confdir=str(tmp_path))
    master = AuditProxyMaster(opts)
    addon = master.addons.get("auditproxy")
    assert addon is not None
    opts.update(auditproxy_metrics_port=0, auditproxy_access_log=str(tmp_path / "a.log"))
    assert logging.getLogger("mitmproxy.proxy.server").level == logging.WARNING
    gc.unfreeze()
    try:
        await master.running()
        assert gc.get_freeze_count() > 0
        assert addon.engine is not None
    finally:
        gc.unfreeze()
        addon.runtime.done()
