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

Item 2 of issue #16: of mitmdump's default add-ons, fourteen have flow hooks that do
nothing until an option turns them on (`--set modify_headers=...`, `anticache`, a server
replay, `save_stream_file`, `proxyauth`...): thirteen of them for each request's
`request` alone, about 45 us a request in mitmproxy's calls (bench/RESULTS.md). They stay
in the chain, so every mitmproxy option still works; `IDLE` says, for each, when its hook
has work, checked at each event (an attribute or an option: their state changes with
options and commands), and an idle one is not asked. (An add-on asked only for its
children is always asked: see `_busy`.)
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from mitmproxy import ctx, exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall
from mitmproxy.addons import (
    anticache,
    anticomp,
    blocklist,
    maplocal,
    mapremote,
    modifybody,
    modifyheaders,
    proxyauth,
    save,
    savehar,
    serverplayback,
    stickyauth,
    stickycookie,
    upstream_auth,
)

Busy = Callable[[Any], Any]  # an add-on -> whether its hook has anything to do (truthy)

# mitmproxy's add-ons (the exact classes) whose hooks named here do nothing unless the
# test says they have work: each hook reads that same attribute or option first and does
# nothing without it (mitmproxy 12.3; tests/test_dispatch.py checks that each leaves a
# flow unchanged under the defaults, and that its option wakes it). A test that fails (a
# later mitmproxy renamed the attribute) asks the add-on. Their other hooks (configure,
# load, done, ...) are always asked.
IDLE: dict[type, tuple[frozenset[str], Busy]] = {
    anticache.AntiCache: (frozenset({"request"}), lambda _: ctx.options.anticache),
    anticomp.AntiComp: (frozenset({"request"}), lambda _: ctx.options.anticomp),
    blocklist.BlockList: (frozenset({"request"}), lambda a: a.items),
    mapremote.MapRemote: (frozenset({"request"}), lambda a: a.replacements),
    maplocal.MapLocal: (frozenset({"request"}), lambda a: a.replacements),
    modifybody.ModifyBody: (frozenset({"request", "response"}), lambda a: a.replacements),
    modifyheaders.ModifyHeaders: (
        frozenset({"requestheaders", "responseheaders"}),
        lambda a: a.replacements,
    ),
    stickyauth.StickyAuth: (frozenset({"request"}), lambda a: a.flt),
    stickycookie.StickyCookie: (frozenset({"request", "response"}), lambda a: a.flt),
    serverplayback.ServerPlayback: (frozenset({"request"}), lambda a: a.flowmap),
    upstream_auth.UpstreamAuth: (frozenset({"requestheaders"}), lambda a: a.auth),
    proxyauth.ProxyAuth: (frozenset({"requestheaders", "http_connect"}), lambda a: a.validator),
    save.Save: (frozenset({"request", "response", "error"}), lambda a: a.stream),
    savehar.SaveHar: (frozenset({"response", "error"}), lambda _: ctx.options.hardump),
}


class Fixed:
    """The handlers of one hook in an add-on whose children cannot change: `addons` a tuple
    of add-ons that have no `addons` themselves. What mitmproxy's `invoke_addon` would
    find walking the add-on and its children (`traverse`, `getattr` on each), found once;
    `children` is the tuple they were found in (the index checks it is still the one)."""

    __slots__ = ("children", "handlers")

    def __init__(self, children: tuple[Any, ...], handlers: tuple[Callable[..., Any], ...]):
        self.children, self.handlers = children, handlers


Asked = tuple[Any, Busy | None, Fixed | None]


def fixed_handlers(addon: Any, name: str) -> Fixed | None:
    """`Fixed` for `addon` and hook `name`, or None: an add-on whose children may change
    (a list, or a child with children), or one `invoke_addon` would have to refuse."""
    children = getattr(addon, "addons", None)
    if type(children) is not tuple or any(hasattr(c, "addons") for c in children):
        return None
    handlers = []
    for a in (addon, *children):
        func = getattr(a, name, None)
        if func:
            if not callable(func):
                return None  # a module of that name (skipped) or an error: mitmproxy's way
            handlers.append(func)
    return Fixed(children, tuple(handlers))


_HOOK_FIELDS: dict[type, tuple[str, ...]] = {}


def hook_args(event: hooks.Hook) -> list[Any]:
    """`event.args()` (its dataclass fields' values, in order), the field names found once
    per hook class: `dataclasses.fields` on every call was 1.5 us of each hook."""
    names = _HOOK_FIELDS.get(type(event))
    if names is None:
        names = _HOOK_FIELDS[type(event)] = tuple(f.name for f in dataclasses.fields(event))
    return [getattr(event, n) for n in names]


def call(handlers: tuple[Callable[..., Any], ...], event: hooks.Hook) -> Awaitable[None] | None:
    """`invoke_addon`'s work on a `Fixed` add-on: each handler in order; a handler's
    awaitable answer is awaited before the next is called (then the rest is returned, for
    the caller to await). None when all of them are done."""
    args = hook_args(event)
    for i, func in enumerate(handlers):
        res = func(*args)
        if res is not None and inspect.isawaitable(res):
            return _call_rest(res, handlers[i + 1 :], args)
    return None


async def _call_rest(
    pending: Awaitable[Any], rest: tuple[Callable[..., Any], ...], args: list[Any]
) -> None:
    await pending
    for func in rest:
        res = func(*args)
        if res is not None and inspect.isawaitable(res):
            await res


class HookIndex:
    """Stands in for `AddonManager.trigger_event` (see `install`)."""

    def __init__(self, manager: AddonManager) -> None:
        self.manager = manager
        self._asked: dict[str, list[Asked]] = {}
        # The chain list the index was built from (held, so that its identity cannot be
        # reused by a new list) and its length then.
        self._seen: tuple[list[Any] | None, int] = (None, -1)

    def asked(self, name: str) -> list[Asked]:
        """The chain's add-ons that have hook `name` or children, in chain order, each with
        its test of work for this hook (`IDLE`), or None: always asked; and its `Fixed`
        handlers, or None: asked through mitmproxy's `invoke_addon`."""
        chain = self.manager.chain
        # `add` appends to the chain, `remove` and `clear` replace it: either shows here.
        seen, length = self._seen
        if chain is not seen or len(chain) != length:
            self._asked.clear()
            self._seen = (chain, len(chain))
        found = self._asked.get(name)
        if found is None:
            found = self._asked[name] = [
                (addon, _busy(addon, name), fixed_handlers(addon, name))
                for addon in chain
                if hasattr(addon, "addons") or getattr(addon, name, None) is not None
            ]
        return found

    async def __call__(self, event: hooks.Hook) -> None:
        invoke = self.manager.invoke_addon
        for addon, busy, fixed in self.asked(event.name):
            if busy is not None and _idle(addon, busy):
                continue  # its hook would do nothing
            try:
                with safecall():
                    if fixed is not None and addon.addons is fixed.children:
                        pending = call(fixed.handlers, event)
                        if pending is not None:
                            await pending
                    else:
                        await invoke(addon, event)
            except exceptions.AddonHalt:
                return


def _busy(addon: Any, name: str) -> Busy | None:
    if getattr(addon, name, None) is None:
        # Asked for its children only: always asked. Skipping a parent while it had no
        # children stalled a raw TCP relay now and then (a server-first greeting waited
        # 10 s, about 1 run in 15 of tests/e2e/test_audit_trail.py's SSH test; never with
        # this line). Cause not found yet: see the closing note of 2026-11-29.
        return None
    idle = IDLE.get(type(addon))
    return idle[1] if idle is not None and name in idle[0] else None


def _idle(addon: Any, busy: Busy) -> bool:
    try:
        return not busy(addon)
    except Exception:  # not the add-on `IDLE` knows: ask it
        return False


def install(manager: AddonManager) -> HookIndex:
    """Make `manager` dispatch through a `HookIndex` (its `handle_lifecycle`, which the
    proxy server calls for every hook, goes through `trigger_event`)."""
    index = HookIndex(manager)
    trigger: Callable[[hooks.Hook], Coroutine[Any, Any, None]] = index.__call__
    manager.trigger_event = trigger  # type: ignore[method-assign]
    return index
