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
    """A weak-keyed mapping of connections (anything with a str `id` and weak references)."""

    __slots__ = ("__weakref__", "_data")

    def __init__(self) -> None:
        # id -> (a weak reference to the first key stored under it, the value)
        self._data: dict[str, tuple[weakref.ref[Any], V]] = {}

    def get(self, key: K, default: Any = None) -> Any:  # type: ignore[override]
        entry = self._data.get(key.id)  # type: ignore[attr-defined]
        return default if entry is None else entry[1]

    def __getitem__(self, key: K) -> V:
        entry = self._data.get(key.id)  # type: ignore[attr-defined]
        if entry is None:
            raise KeyError(key)
        return entry[1]

    def __setitem__(self, key: K, value: V) -> None:
        ident: str = key.id  # type: ignore[attr-defined]
        entry = self._data.get(ident)
        # As WeakKeyDictionary: a key equal to one stored keeps the stored one's reference.
        ref = entry[0] if entry is not None else weakref.ref(key, _remover(self, ident))
        self._data[ident] = (ref, value)

    def __delitem__(self, key: K) -> None:
        del self._data[key.id]  # type: ignore[attr-defined]

    def pop(self, key: K, default: Any = _MISSING) -> Any:
        entry = self._data.pop(key.id, None)  # type: ignore[attr-defined]
        if entry is not None:
            return entry[1]
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __contains__(self, key: object) -> bool:
        return getattr(key, "id", None) in self._data

    def __iter__(self) -> Iterator[K]:
        for ref, _ in list(self._data.values()):
            key = ref()
            if key is not None:
                yield key

    def __len__(self) -> int:
        return len(self._data)


def _remover(owner: ConnectionMap[Any, Any], ident: str) -> Callable[[weakref.ref[Any]], None]:
    """The callback that drops `ident`'s entry when its key is freed (if the entry is still
    that key's: it may have been deleted and stored again for another object since). It
    holds the map weakly, as WeakKeyDictionary's does: a map freed first is no matter."""
    owner_ref = weakref.ref(owner)

    def remove(ref: weakref.ref[Any]) -> None:
        mapping = owner_ref()
        if mapping is None:
            return
        entry = mapping._data.get(ident)
        if entry is not None and entry[0] is ref:
            del mapping._data[ident]

    return remove
