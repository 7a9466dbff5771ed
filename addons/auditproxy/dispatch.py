"""mitmproxy's event dispatch, asking only the add-ons that have the hook.

mitmproxy (`AddonManager.trigger_event`) hands every event to every add-on in its chain,
about 35 in mitmdump, each through a context manager (`safecall`), a coroutine
(`invoke_addon`) and two generators (`_iter_hooks`, `traverse`), whether or not the add-on
has the hook; and every flow event is followed by an `update` event that goes the same
way. Under load that is a third of the proxy's CPU time, more than auditproxy's own work
(bench/RESULTS.md, issue #16). An add-on without the hook would do nothing with the event,
so skipping it changes nothing but the cost: the ones that have it are asked in the same
order, through the same `safecall` and `invoke_addon`, and `AddonHalt` still stops the
event. An add-on with children (`addons`: the script loader, auditproxy itself) is always
asked, since its children change at run time (a script reloads).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall


class HookIndex:
    """Stands in for `AddonManager.trigger_event` (see `install`)."""

    def __init__(self, manager: AddonManager) -> None:
        self.manager = manager
        self._asked: dict[str, list[Any]] = {}
        # The chain list the index was built from (held, so that its identity cannot be
        # reused by a new list) and its length then.
        self._seen: tuple[list[Any] | None, int] = (None, -1)

    def asked(self, name: str) -> list[Any]:
        """The chain's add-ons that have hook `name` or children, in chain order."""
        chain = self.manager.chain
        # `add` appends to the chain, `remove` and `clear` replace it: either shows here.
        seen, length = self._seen
        if chain is not seen or len(chain) != length:
            self._asked.clear()
            self._seen = (chain, len(chain))
        found = self._asked.get(name)
        if found is None:
            found = self._asked[name] = [
                addon
                for addon in chain
                if hasattr(addon, "addons") or getattr(addon, name, None) is not None
            ]
        return found

    async def __call__(self, event: hooks.Hook) -> None:
        invoke = self.manager.invoke_addon
        for addon in self.asked(event.name):
            try:
                with safecall():
                    await invoke(addon, event)
            except exceptions.AddonHalt:
                return


def install(manager: AddonManager) -> HookIndex:
    """Make `manager` dispatch through a `HookIndex` (its `handle_lifecycle`, which the
    proxy server calls for every hook, goes through `trigger_event`)."""
    index = HookIndex(manager)
    trigger: Callable[[hooks.Hook], Coroutine[Any, Any, None]] = index.__call__
    manager.trigger_event = trigger  # type: ignore[method-assign]
    return index
