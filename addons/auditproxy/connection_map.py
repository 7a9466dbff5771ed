"""Per-connection state that lives as long as mitmproxy's connection object.

`ConnectionMap` is `weakref.WeakKeyDictionary` for mitmproxy's `Connection`s, found by
`Connection.id`: the same semantics (an entry goes when its connection object is freed;
keys compare as mitmproxy's `Connection.__eq__` does, by `id`), without the calls a
WeakKeyDictionary makes on every lookup (a new weak reference, then mitmproxy's
`__hash__` and `__eq__`, both Python functions). A request looks up its connection's
state about ten times; those lookups were 4 % of the add-on's time (issue #16,
bench/RESULTS.md). Pure: no mitmproxy imports (keys need only `id` and weak references).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

_MISSING: Any = object()


class ConnectionMap[K, V](MutableMapping[K, V]):
    """A weak-keyed mapping of connections (anything with a str `id` and weak references).

    Two dicts by id, values and weak references (`weakref.KeyedRef`, which carries the id
    to the one callback of the map): storing allocates a reference per new key and
    nothing else, since every object the cyclic collector tracks brings its next pass
    closer, and a pass is the tail of the hooks' latency (bench/RESULTS.md)."""

    __slots__ = ("__weakref__", "_forget", "_refs", "_values")

    def __init__(self) -> None:
        self._values: dict[str, V] = {}
        self._refs: dict[str, weakref.KeyedRef] = {}
        self._forget = _forgetter(self)

    def get(self, key: K, default: Any = None) -> Any:  # type: ignore[override]
        return self._values.get(key.id, default)  # type: ignore[attr-defined]

    def __getitem__(self, key: K) -> V:
        try:
            return self._values[key.id]  # type: ignore[attr-defined]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: K, value: V) -> None:
        ident: str = key.id  # type: ignore[attr-defined]
        if ident not in self._refs:
            # As WeakKeyDictionary: a key equal to one stored keeps the stored reference.
            self._refs[ident] = weakref.KeyedRef(key, self._forget, ident)
        self._values[ident] = value

    def __delitem__(self, key: K) -> None:
        ident: str = key.id  # type: ignore[attr-defined]
        del self._values[ident]
        self._refs.pop(ident, None)

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        # Each step one dict operation: the callback may run in another thread meanwhile
        # (the collector runs where it is triggered), as WeakKeyDictionary allows for.
        ident: str = key.id  # type: ignore[attr-defined]
        self._refs.pop(ident, None)
        value = self._values.pop(ident, _MISSING)
        if value is not _MISSING:
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __contains__(self, key: object) -> bool:
        return getattr(key, "id", None) in self._values

    def __iter__(self) -> Iterator[K]:
        for ref in list(self._refs.values()):
            key = ref()
            if key is not None:
                yield key

    def __len__(self) -> int:
        return len(self._values)


def _forgetter(owner: ConnectionMap[Any, Any]) -> Callable[[weakref.KeyedRef], None]:
    """The map's callback: drops a freed key's entry (if the entry is still that key's: it
    may have been deleted and stored again for another object since). It holds the map
    weakly, as WeakKeyDictionary's does: a map freed first is no matter."""
    owner_ref = weakref.ref(owner)

    def forget(ref: weakref.KeyedRef) -> None:
        mapping = owner_ref()
        if mapping is not None and mapping._refs.get(ref.key) is ref:
            mapping._refs.pop(ref.key, None)
            mapping._values.pop(ref.key, None)

    return forget
