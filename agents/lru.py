"""A bounded mapping: least recently used entries go first once it is full, and entries may expire.

Every per-process map keyed by something the outside world chooses (users, chats, updates, models) is one of these,
so that none grows with the number of users the bot has ever seen. Plain Python, no locking: each instance is used
from one thread (the event loop).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")


class LRUCache(Generic[K, V]):
    """At most `max_size` entries, each dropped `ttl` seconds after it was set (None: never).

    Reading an entry (`get`, `[]`, `in`) makes it the most recently used; `on_evict(key, value)` is called for an
    entry pushed out by size (not for one removed with `pop`/`del` or one that expired).
    """

    def __init__(self, max_size: int, ttl: float | None = None, *,
                 on_evict: Callable[[K, V], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size, self.ttl = max_size, ttl
        self._on_evict = on_evict
        self._clock = clock
        self._data: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def _live(self, key: K) -> tuple[float, V] | None:
        item = self._data.get(key)
        if item is None:
            return None
        if self.ttl is not None and self._clock() - item[0] >= self.ttl:
            del self._data[key]
            return None
        self._data.move_to_end(key)
        return item

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        item = self._live(key)
        return default if item is None else item[1]

    def __getitem__(self, key: K) -> V:
        item = self._live(key)
        if item is None:
            raise KeyError(key)
        return item[1]

    def __contains__(self, key: object) -> bool:
        return self._live(key) is not None  # type: ignore[arg-type]

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = (self._clock(), value)
        self._data.move_to_end(key)
        self._shrink()

    def touch(self, key: K, value: V) -> None:
        """Make `key` the most recently used, keeping its value and age when present."""
        if self._live(key) is None:
            self[key] = value

    def pop(self, key: K, default: V | None = None) -> V | None:
        item = self._data.pop(key, None)
        if item is None or (self.ttl is not None and self._clock() - item[0] >= self.ttl):
            return default
        return item[1]

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __len__(self) -> int:
        self._expire()
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        self._expire()
        return iter(list(self._data))

    def values(self) -> list[V]:
        self._expire()
        return [value for _, value in self._data.values()]

    def _expire(self) -> None:
        if self.ttl is None:
            return
        now = self._clock()
        # entries are in order of use, not of age: a full pass, bounded by max_size
        for key in [k for k, (at, _) in self._data.items() if now - at >= self.ttl]:
            del self._data[key]

    def _shrink(self) -> None:
        # the least recently used go first, expired or not: a full pass for expired entries on every insert would
        # cost O(max_size) per message once the cache is full
        while len(self._data) > self.max_size:
            key, (at, value) = self._data.popitem(last=False)
            expired = self.ttl is not None and self._clock() - at >= self.ttl
            if self._on_evict is not None and not expired:
                self._on_evict(key, value)
