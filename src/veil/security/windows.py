"""Sliding-window counters per key (a client address, a user) for attack waves and auth-failure bursts.

`WindowCounter.add(keys, route, now)` records one event for each key and returns the keys that just reached
the threshold within the window and are not cooling down; the caller reports them once, and the keys then stay
silent for `cooldown` seconds (a scan of thousands of requests is one finding, not hundreds). Memory is bounded:
at most `max_keys` keys, the least recently seen evicted first; each key keeps at most `threshold` timestamps
and `MAX_SAMPLES` distinct sample routes. Thread-safe; the critical section is a few dictionary operations.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

MAX_SAMPLES = 10


@dataclass
class _Window:
    times: deque[float]
    routes: list[str] = field(default_factory=list)
    quiet_until: float = 0.0


@dataclass(frozen=True)
class Crossing:
    """A key that reached the threshold: how many events in the window, and sample routes."""

    key: str
    count: int
    routes: tuple[str, ...]
    first: float  # monotonic time of the oldest event counted


class WindowCounter:
    def __init__(self, threshold: int, window: float, cooldown: float, max_keys: int = 10_000) -> None:
        self.threshold = threshold
        self.window = window
        self.cooldown = cooldown
        self.max_keys = max_keys
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def add(self, keys: Sequence[str], route: str | None, now: float) -> list[Crossing]:
        crossed: list[Crossing] = []
        with self._lock:
            for key in keys:
                window = self._windows.pop(key, None)  # re-inserted below: insertion order is recency
                if window is None:
                    window = _Window(deque(maxlen=self.threshold))
                    if len(self._windows) >= self.max_keys:
                        del self._windows[next(iter(self._windows))]
                self._windows[key] = window
                times = window.times
                times.append(now)
                while times and now - times[0] > self.window:
                    times.popleft()
                if route and route not in window.routes and len(window.routes) < MAX_SAMPLES:
                    window.routes.append(route)
                if len(times) >= self.threshold and now >= window.quiet_until:
                    crossed.append(Crossing(key, len(times), tuple(window.routes), times[0]))
            if crossed:
                # Every key of this event falls silent, so one event never yields two findings.
                for key in keys:
                    quiet = self._windows[key]
                    quiet.quiet_until = now + self.cooldown
                    quiet.times.clear()
                    quiet.routes = []
        return crossed
