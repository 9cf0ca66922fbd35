"""The bounded caches behind veil's memoized decisions (redaction routes, URL and header verdicts, request shapes).

A cache is a plain `dict`, read with the dict's own operations (`cache.get(key)`, `key in cache`, `cache[key]`),
and written only through `remember(cache, key, value, limit)`. It sits on hot paths (a redaction per attribute,
a URL per request), so reads carry no lock, no hit/miss counter and no wrapper: an exact `dict` keeps the
interpreter's fast paths for it, which a dict subclass would lose (measured at 12-15 ns more per read on
CPython 3.11).

Eviction: when `remember` finds the cache holding `limit` entries, it empties it first (clear when full). Its keys
come from data (attribute keys, URLs, header names, statements), so it must not grow with them; its values are
cheap to compute again, and a steady workload's working set is far below the limit, so refilling after a clear
costs less than tracking recency on every read would.

Concurrency: a cache may be shared by many threads without a lock. Each step is one dict operation (`get`,
`len`, `clear`, item assignment), which the interpreter performs atomically (under the GIL; per object on
free-threaded builds), so a reader finds either an entry that was stored whole or no entry. What is not atomic is
`remember`'s "clear if full, then store": threads storing at the same moment may each find room, so the cache
can hold up to `limit` plus the number of those threads until the next `remember` empties it, and a `clear` may
drop an entry another thread just stored. Both only cost a recomputation, because a cached value must be a pure
function of its key (two threads computing it store equal values). Holding no lock also means nothing needs
renewing in a forked child.
"""

from __future__ import annotations

from typing import TypeVar

_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(cache: dict[_K, _V], key: _K, value: _V, limit: int) -> _V:
    """Store `value` under `key` in `cache`, emptying `cache` first when it holds `limit` entries; return `value`."""
    if len(cache) >= limit:
        cache.clear()
    cache[key] = value
    return value
