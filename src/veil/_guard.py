"""Keeping veil's own failures away from the host application.

`log_once` reports an internal problem at most once per key and minute (`OncePerInterval`, which also thins out
the SDK's export loggers), so a bug hit on every request does not flood the logs; `guard` runs a piece of
instrumentation code and swallows (and reports) what it raises.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from veil._cache import remember

_logger = logging.getLogger("veil")
_T = TypeVar("_T")

_INTERVAL_SECONDS = 60.0


class OncePerInterval:
    """Lets each key pass at most once per `interval` seconds; thread-safe.

    `limit` bounds how many keys are remembered: when it is reached they are all forgotten (so a key may then pass
    again early); None remembers every key (for keys that come from code, not from data). Its lock is renewed in a
    forked child by `renew_locks_after_fork`, which `veil._fork` runs before any other after-fork callback.
    """

    def __init__(self, interval: float = _INTERVAL_SECONDS, limit: int | None = None) -> None:
        self.interval = interval
        self._limit = sys.maxsize if limit is None else limit
        self._last: dict[Hashable, float] = {}
        self._lock = threading.Lock()
        _limiters.add(self)

    def first(self, key: Hashable) -> bool:
        """Whether `key` may pass now (and if so, start its interval)."""
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            remember(self._last, key, now, self._limit)  # under the lock: two threads never both pass
        return True

    def forget(self) -> None:
        """Let every key pass again."""
        with self._lock:
            self._last.clear()

    def _renew_lock(self) -> None:
        self._lock = threading.Lock()


_limiters: weakref.WeakSet[OncePerInterval] = weakref.WeakSet()
_logged = OncePerInterval()


def renew_locks_after_fork() -> None:
    """In a forked child: fresh locks for every limiter (another thread of the parent may have held one)."""
    for limiter in list(_limiters):
        limiter._renew_lock()


def log_once(
    key: str,
    message: str,
    *args: object,
    level: int = logging.WARNING,
    exc_info: bool = False,
    logger: logging.Logger = _logger,
) -> bool:
    """Log `message` unless the same `key` was logged within the last minute; return whether it was logged."""
    if not _logged.first(key):
        return False
    logger.log(level, message, *args, exc_info=exc_info)
    return True


@contextmanager
def guard(key: str) -> Iterator[None]:
    """Run the enclosed instrumentation code; an exception is logged once per `key` and swallowed."""
    try:
        yield
    except Exception:
        log_once(key, "veil: internal error in %s (the application is unaffected)", key, exc_info=True)


def call_guarded(key: str, function: Callable[..., _T], *args: object, **kwargs: object) -> _T | None:
    """Call `function`; on an exception log once per `key` and return None instead of raising."""
    try:
        return function(*args, **kwargs)
    except Exception:
        log_once(key, "veil: %s raised (ignored; the application is unaffected)", key, exc_info=True)
        return None


def reset_for_tests() -> None:
    """Forget which keys were logged (tests assert on the first occurrence)."""
    _logged.forget()
