"""`ConnectionMap`: WeakKeyDictionary's behaviour for mitmproxy connections, by `id`."""

from __future__ import annotations

import gc
import weakref

import pytest
from mitmproxy.test import tflow

from auditproxy.connection_map import ConnectionMap


def test_it_maps_a_connection_to_its_state() -> None:
    states: ConnectionMap = ConnectionMap()
    client, other = tflow.tclient_conn(), tflow.tclient_conn()
    states[client] = "a"
    assert states.get(client) == "a" and states[client] == "a"
    assert client in states and other not in states and "not a connection" not in states
    assert states.get(other) is None and states.get(other, "none") == "none"
    with pytest.raises(KeyError):
        states[other]
    states[client] = "b"
    assert states[client] == "b" and len(states) == 1 and list(states) == [client]
    assert states.setdefault(other, "c") == "c" and len(states) == 2


def test_pop_and_del_as_a_dict() -> None:
    states: ConnectionMap = ConnectionMap()
    client = tflow.tclient_conn()
    states[client] = 1
    assert states.pop(client) == 1 and states.pop(client, None) is None
    with pytest.raises(KeyError):
        states.pop(client)
    states[client] = 2
    del states[client]
    assert client not in states
    with pytest.raises(KeyError):
        del states[client]


def test_an_entry_goes_with_its_connection() -> None:
    states: ConnectionMap = ConnectionMap()
    client = tflow.tclient_conn()
    kept = tflow.tclient_conn()
    states[client], states[kept] = "gone", "kept"
    del client
    gc.collect()
    assert len(states) == 1 and list(states) == [kept]


def test_keys_compare_as_mitmproxy_compares_connections() -> None:
    """Two objects of one connection (same `id`) are one key, as in WeakKeyDictionary:
    the entry keeps the first object's reference and goes when that one is freed."""
    states: ConnectionMap = ConnectionMap()
    reference: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
    first = tflow.tclient_conn()
    second = tflow.tclient_conn()
    second.id = first.id
    for mapping in (states, reference):
        mapping[first] = 1
        mapping[second] = 2
        assert mapping[first] == 2 and len(mapping) == 1
    del first
    gc.collect()
    assert second not in states and second not in reference


def test_a_stale_callback_leaves_a_new_entry_alone() -> None:
    """An entry removed and stored again for another object of the same id: the first
    object's end does not take the new entry with it."""
    states: ConnectionMap = ConnectionMap()
    first = tflow.tclient_conn()
    second = tflow.tclient_conn()
    second.id = first.id
    states[first] = "first"
    del states[first]
    states[second] = "second"
    del first
    gc.collect()
    assert states[second] == "second"


def test_the_map_may_go_before_its_connections() -> None:
    states: ConnectionMap = ConnectionMap()
    client = tflow.tclient_conn()
    states[client] = 1
    watch = weakref.ref(states)
    del states
    gc.collect()
    assert watch() is None
    del client  # its callback finds no map: nothing happens
    gc.collect()
