"""The indexed dispatch asks the same add-ons, in the same order, as mitmproxy's own."""

from __future__ import annotations

from typing import Any

import pytest
from mitmproxy import exceptions, hooks, options
from mitmproxy.addons import (
    anticache,
    anticomp,
    blocklist,
    default_addons,
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
from mitmproxy.master import Master
from mitmproxy.proxy.layers import http
from mitmproxy.test import taddons, tflow

from auditproxy import dispatch


class Recorder:
    """An add-on that notes each call of the hooks it has in a shared journal."""

    def __init__(self, name: str, journal: list[str], *hook_names: str) -> None:
        self.name = name
        for hook in hook_names:
            setattr(self, hook, self._noting(hook, journal))

    def _noting(self, hook: str, journal: list[str]) -> Any:
        def note(*_: object) -> None:
            journal.append(f"{self.name}.{hook}")

        return note


class Halting:
    """Stops the event for the add-ons after it."""

    name = "halting"

    def request(self, flow: object) -> None:
        raise exceptions.AddonHalt


class Failing:
    """An add-on fault: logged by `safecall`, the other add-ons still asked."""

    name = "failing"

    def request(self, flow: object) -> None:
        raise RuntimeError("boom")


class Parent:
    """An add-on with children that change at run time, as mitmproxy's script loader."""

    name = "parent"

    def __init__(self) -> None:
        self.addons: list[Any] = []


def _master() -> Master:
    return Master(options.Options(), event_loop=None)


async def _journal_of(master: Master, event: hooks.Hook, journal: list[str]) -> list[str]:
    journal.clear()
    await master.addons.trigger_event(event)
    return list(journal)


def _chain(journal: list[str], parent: Parent) -> list[Any]:
    return [
        Recorder("a", journal, "request", "response"),
        Recorder("b", journal, "response"),
        parent,
        Recorder("c", journal, "request", "update"),
        Recorder("d", journal),
    ]


async def test_same_calls_in_the_same_order_as_mitmproxy_for_each_event():
    flow = tflow.tflow(resp=True)
    events = [
        hooks.UpdateHook([flow]),
        http.HttpRequestHook(flow),
        http.HttpResponseHook(flow),
        http.HttpErrorHook(flow),
    ]
    seen: dict[bool, list[list[str]]] = {}
    for indexed in (False, True):
        journal: list[str] = []
        parent = Parent()
        parent.addons.append(Recorder("child", journal, "request", "error"))
        master = _master()
        master.addons.add(*_chain(journal, parent))
        if indexed:
            dispatch.install(master.addons)
        seen[indexed] = [await _journal_of(master, event, journal) for event in events]
    assert seen[True] == seen[False]
    assert seen[True] == [
        ["c.update"],
        ["a.request", "child.request", "c.request"],
        ["a.response", "b.response"],
        ["child.error"],
    ]


async def test_a_halt_stops_the_event_and_a_fault_does_not(caplog):
    journal: list[str] = []
    master = _master()
    master.addons.add(Recorder("first", journal, "request"), Failing())
    master.addons.add(Recorder("second", journal, "request"), Halting())
    master.addons.add(Recorder("never", journal, "request"))
    dispatch.install(master.addons)
    assert await _journal_of(master, http.HttpRequestHook(tflow.tflow()), journal) == [
        "first.request",
        "second.request",
    ]
    assert "boom" in caplog.text  # the fault was logged, as mitmproxy's safecall does


async def test_children_added_and_removed_at_run_time_are_asked():
    journal: list[str] = []
    parent = Parent()
    master = _master()
    master.addons.add(Recorder("a", journal, "request"), parent)
    dispatch.install(master.addons)
    event = http.HttpRequestHook(tflow.tflow())
    assert await _journal_of(master, event, journal) == ["a.request"]
    parent.addons.append(Recorder("script", journal, "request"))  # a script (re)loads
    assert await _journal_of(master, event, journal) == ["a.request", "script.request"]
    parent.addons.clear()
    assert await _journal_of(master, event, journal) == ["a.request"]


async def test_the_index_follows_the_chain_when_add_ons_are_added_and_removed():
    journal: list[str] = []
    master = _master()
    first = Recorder("a", journal, "request")
    master.addons.add(first)
    dispatch.install(master.addons)
    event = http.HttpRequestHook(tflow.tflow())
    assert await _journal_of(master, event, journal) == ["a.request"]
    master.addons.add(Recorder("b", journal, "request"))
    assert await _journal_of(master, event, journal) == ["a.request", "b.request"]
    master.addons.remove(first)
    assert await _journal_of(master, event, journal) == ["b.request"]
    # Removed and added again without an event in between: same length, new list.
    master.addons.remove(master.addons.get("b"))
    master.addons.add(Recorder("c", journal, "request"))
    assert await _journal_of(master, event, journal) == ["c.request"]


@pytest.mark.parametrize("variable, indexed", [(None, True), ("mitmproxy", False)])
async def test_auditproxy_run_installs_the_index_unless_told_not_to(
    monkeypatch, tmp_path, variable, indexed
):
    from auditproxy.runner import AuditProxyMaster

    if variable is None:
        monkeypatch.delenv("AUDITPROXY_DISPATCH", raising=False)
    else:
        monkeypatch.setenv("AUDITPROXY_DISPATCH", variable)
    master = AuditProxyMaster(options.Options(confdir=str(tmp_path)))
    trigger = master.addons.trigger_event
    assert isinstance(getattr(trigger, "__self__", None), dispatch.HookIndex) is indexed


# --- idle add-ons (issue #16, item 2) ------------------------------------------------------

# For each add-on of `dispatch.IDLE`: options that give its hooks work.
BUSY_WITH: dict[type, dict[str, Any]] = {
    anticache.AntiCache: {"anticache": True},
    anticomp.AntiComp: {"anticomp": True},
    blocklist.BlockList: {"block_list": [":~d blocked.test:404"]},
    mapremote.MapRemote: {"map_remote": ["|example.com|example.org"]},
    maplocal.MapLocal: {"map_local": ["|example.com/x|/tmp"]},
    modifybody.ModifyBody: {"modify_body": ["/~q/foo/bar"]},
    modifyheaders.ModifyHeaders: {"modify_headers": ["/~q/X-Test/1"]},
    stickyauth.StickyAuth: {"stickyauth": ".*"},
    stickycookie.StickyCookie: {"stickycookie": ".*"},
    upstream_auth.UpstreamAuth: {"upstream_auth": "user:pass"},
    proxyauth.ProxyAuth: {"proxyauth": "any"},
    savehar.SaveHar: {"hardump": "/dev/null"},
}


@pytest.mark.parametrize("cls", list(dispatch.IDLE), ids=lambda c: c.__name__)
def test_an_idle_add_on_s_hooks_change_nothing_and_an_option_wakes_it(cls, tmp_path):
    """With mitmproxy's defaults the hooks `IDLE` skips leave a flow as it was (so
    skipping them changes nothing), and the test says idle; the add-on's option wakes it."""
    hooks_of, busy = dispatch.IDLE[cls]
    addon = cls()
    with taddons.context(addon) as tctx:
        tctx.configure(addon)
        assert not busy(addon)
        for hook in sorted(hooks_of):
            flow = tflow.tflow(resp=True)
            before = flow.get_state()
            getattr(addon, hook)(flow)
            assert flow.get_state() == before, hook
        if cls is save.Save:
            tctx.configure(addon, save_stream_file=str(tmp_path / "flows"))
        elif cls is serverplayback.ServerPlayback:
            addon.load_flows([tflow.tflow(resp=True)])
        else:
            tctx.configure(addon, **BUSY_WITH[cls])
        assert busy(addon)


async def test_idle_add_ons_are_not_asked_busy_ones_are(monkeypatch):
    """mitmdump's default add-ons with the index: an idle one is skipped, and the same one
    is asked again once an option gives it work (checked at each event)."""
    master = _master()
    master.addons.add(*default_addons())
    index = dispatch.install(master.addons)
    calls: list[str] = []
    monkeypatch.setattr(
        modifyheaders.ModifyHeaders, "requestheaders", lambda self, f: calls.append("asked")
    )
    index.asked("requestheaders")  # remembered before the option changes: still right
    await master.addons.trigger_event(http.HttpRequestHeadersHook(tflow.tflow()))
    assert calls == []
    master.options.update(modify_headers=["/~q/X-Test/1"])
    await master.addons.trigger_event(http.HttpRequestHeadersHook(tflow.tflow()))
    assert calls == ["asked"]


async def test_a_parent_without_children_is_asked_all_the_same():
    journal: list[str] = []
    parent = Parent()
    master = _master()
    master.addons.add(parent)
    index = dispatch.install(master.addons)
    ((asked, busy, fixed),) = index.asked("request")
    assert asked is parent and busy is None  # never skipped (dispatch._busy says why)
    assert fixed is None  # its children may change: walked at each event
    parent.addons.append(Recorder("script", journal, "request"))
    assert await _journal_of(master, http.HttpRequestHook(tflow.tflow()), journal) == [
        "script.request"
    ]


async def test_an_add_on_unlike_the_one_idle_knows_is_asked(monkeypatch):
    """A later mitmproxy that renamed the attribute `IDLE` reads: the add-on is asked."""
    master = _master()
    master.addons.add(*default_addons())
    dispatch.install(master.addons)
    calls: list[str] = []
    headers = master.addons.get("modifyheaders")
    del headers.replacements
    monkeypatch.setattr(
        modifyheaders.ModifyHeaders, "requestheaders", lambda self, f: calls.append("asked")
    )
    await master.addons.trigger_event(http.HttpRequestHeadersHook(tflow.tflow()))
    assert calls == ["asked"]


class FixedParent:
    """Children that cannot change (a tuple of add-ons without children): `AuditProxy`."""

    name = "fixed"

    def __init__(self, *children: Any) -> None:
        self.addons = tuple(children)


class Waiting:
    """A handler whose work goes on off the loop (the notice's): an awaitable answer."""

    def __init__(self, journal: list[str]) -> None:
        self.journal = journal

    def request(self, flow: object) -> Any:
        async def later() -> None:
            self.journal.append("waiting.request (awaited)")

        self.journal.append("waiting.request")
        return later()


async def test_a_parent_with_fixed_children_has_the_same_calls_found_once():
    flow = tflow.tflow(resp=True)
    events = [http.HttpRequestHook(flow), http.HttpResponseHook(flow), hooks.DoneHook()]
    seen: dict[bool, list[list[str]]] = {}
    for indexed in (False, True):
        journal: list[str] = []
        children = (Waiting(journal), Recorder("x", journal, "request"))
        fixed = FixedParent(*children)
        fixed.request = Recorder("fixed", journal, "request").request  # type: ignore[attr-defined]
        master = _master()
        master.addons.add(
            Recorder("a", journal, "request"), fixed, Recorder("y", journal, "request")
        )
        if indexed:
            index = dispatch.install(master.addons)
        seen[indexed] = [await _journal_of(master, event, journal) for event in events]
    assert seen[True] == seen[False]
    assert seen[True][0] == [
        "a.request",
        "fixed.request",
        "waiting.request",
        "waiting.request (awaited)",
        "x.request",  # after the awaited answer, as mitmproxy's `invoke_addon` does
        "y.request",
    ]
    (entry,) = [e for e in index.asked("request") if e[0].name == "fixed"]
    assert entry[2] is not None and len(entry[2].handlers) == 3


async def test_fixed_children_replaced_are_walked_again():
    journal: list[str] = []
    fixed = FixedParent(Recorder("x", journal, "request"))
    master = _master()
    master.addons.add(fixed)
    dispatch.install(master.addons)
    event = http.HttpRequestHook(tflow.tflow())
    assert await _journal_of(master, event, journal) == ["x.request"]
    fixed.addons = (Recorder("z", journal, "request"),)
    assert await _journal_of(master, event, journal) == ["z.request"]


def test_only_a_tuple_of_childless_add_ons_is_fixed():
    journal: list[str] = []
    leaf = Recorder("x", journal, "request")
    assert dispatch.fixed_handlers(FixedParent(leaf), "request") is not None
    assert dispatch.fixed_handlers(Parent(), "request") is None  # a list: may change
    assert dispatch.fixed_handlers(FixedParent(Parent()), "request") is None  # grandchildren
    assert dispatch.fixed_handlers(leaf, "request") is None  # no children at all


def test_hook_args_are_mitmproxy_s():
    flow = tflow.tflow(resp=True)
    for event in (http.HttpRequestHook(flow), hooks.UpdateHook([flow]), hooks.DoneHook()):
        assert dispatch.hook_args(event) == event.args()
        assert dispatch.hook_args(event) == event.args()  # the names, remembered
