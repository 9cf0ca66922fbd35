"""`veil._cache.remember`: clear-when-full eviction on a plain dict, and its lock-free concurrency contract."""

from __future__ import annotations

import sys
import threading

from veil._cache import remember


def test_remember_stores_and_returns_the_value() -> None:
    cache: dict[str, int | None] = {}
    assert remember(cache, "a", 1, 4) == 1
    assert remember(cache, "none", None, 4) is None
    assert cache == {"a": 1, "none": None}
    assert type(cache) is dict  # reads stay the exact dict's own (fast) operations


def test_a_full_cache_is_emptied_before_the_next_entry() -> None:
    cache: dict[int, int] = {}
    for key in range(3):
        remember(cache, key, key, 3)
    assert len(cache) == 3
    remember(cache, 1, 10, 3)  # full: even a key it holds empties it first (as the hand-rolled caches did)
    assert cache == {1: 10}
    for key in range(100):
        remember(cache, key, key, 3)
        assert 1 <= len(cache) <= 3


def test_many_threads_reading_and_storing_see_only_stored_values_and_stay_bounded() -> None:
    limit, workers, rounds = 64, 8, 20_000
    cache: dict[int, str] = {}
    barrier = threading.Barrier(workers)
    errors: list[str] = []
    largest = [0]

    def work(seed: int) -> None:
        barrier.wait()
        key = seed
        for _ in range(rounds):
            key = (key * 1103515245 + 12345) % 500
            value = cache.get(key)
            if value is None:
                value = remember(cache, key, f"value {key}", limit)  # a pure function of the key, as required
            if value != f"value {key}":
                errors.append(f"{key}: {value!r}")
            largest[0] = max(largest[0], len(cache))

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, between any two bytecodes
    try:
        threads = [threading.Thread(target=work, args=(seed,)) for seed in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)

    assert errors == []
    assert largest[0] <= limit + workers  # the documented overshoot: one entry per thread storing at once
    assert len(cache) <= limit + workers
