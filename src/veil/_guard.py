"""Keeping veil's own failures away from the host application.

`log_once` reports an internal problem at most once per key and interval, so a bug hit on every request does
not flood the logs; `guard` runs a piece of instrumentation code and swallows (and reports) what it raises.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_logger = logging.getLogger("veil")
_T = TypeVar("_T")

_INTERVAL_SECONDS = 60.0
_last_logged: dict[str, float] = {}
_lock = threading.Lock()


def _fresh_lock_in_child() -> None:
    # A fork taken while another thread held the lock would leave the child's copy locked forever.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_in_child)


def log_once(
    key: str,
    message: str,
    *args: object,
    level: int = logging.WARNING,
    exc_info: bool = False,
    logger: logging.Logger = _logger,
) -> bool:
    """Log `message` unless the same `key` was logged within the last minute; return whether it was logged."""
    now = time.monotonic()
    with _lock:
        last = _last_logged.get(key)
        if last is not None and now - last < _INTERVAL_SECONDS:
            return False
        _last_logged[key] = now
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
    with _lock:
        _last_logged.clear()
