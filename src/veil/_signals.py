"""The flush on a stop by signal: SIGTERM or SIGINT at a moment when the signal's disposition would kill.

A process killed by a signal runs no `atexit` hook, so the exit flush alone loses up to a batch delay of spans
and a metric interval of metrics whenever a signal ends the process: a plain script under `kill`, and every
server that re-raises the signal after its own graceful shutdown (uvicorn restores the previous handler and
calls `signal.raise_signal`). veil takes the place of the default disposition only, never of a handler:

* where SIGTERM or SIGINT is at SIG_DFL when veil is configured, veil's handler is installed instead;
* `signal.signal` and `signal.getsignal` are wrapped, so whoever installs SIG_DFL later (a server restoring
  the original handler before re-raising, asyncio removing its handler) installs veil's handler, and whoever
  asks sees SIG_DFL; every other handler is installed and returned untouched, so servers chain and restore as
  they did.

veil's handler puts the real SIG_DFL back first (a second signal kills at once, as without veil), shuts the
pipelines down within VEIL_SHUTDOWN_TIMEOUT (on daemon threads, so it cannot block for longer), then raises
the signal again: the process dies by the same signal, with the same status, as it would have without veil.
The handler runs, as every Python signal handler does, when the main thread next runs Python code.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

_logger = logging.getLogger("veil")

COVERED = frozenset({signal.SIGTERM, signal.SIGINT})

_real_signal = signal.signal
_real_getsignal = signal.getsignal
_flush: Callable[[], object] | None = None
_lock = threading.Lock()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """Flush within the bound, then die by `signum` as the default disposition would have."""
    _real_signal(signum, signal.SIG_DFL)
    flush = _flush
    if flush is not None:
        try:
            flush()
        except BaseException:  # nothing may stop the process from dying as it was told to
            _logger.debug("veil: flush on signal %d failed", signum, exc_info=True)
    signal.raise_signal(signum)


def _visible(handler: Any) -> Any:
    """What the application sees in place of veil's handler: the default disposition it stands for."""
    return signal.SIG_DFL if handler is _on_signal else handler


@functools.wraps(_real_signal)
def _signal(signalnum: Any, handler: Any) -> Any:
    if signalnum in COVERED and handler == signal.SIG_DFL and _flush is not None:
        handler = _on_signal
    return _visible(_real_signal(signalnum, handler))


@functools.wraps(_real_getsignal)
def _getsignal(signalnum: Any) -> Any:
    return _visible(_real_getsignal(signalnum))


def install(flush: Callable[[], object]) -> None:
    """Flush with `flush()` before a covered signal kills the process; idempotent, never raises."""
    global _flush
    with _lock:
        _flush = flush
        setattr(signal, "signal", _signal)  # noqa: B010 - the module attribute every caller looks up
        setattr(signal, "getsignal", _getsignal)  # noqa: B010
    if threading.current_thread() is not threading.main_thread():
        # Only the main thread may set handlers; later SIG_DFL installs from it are still covered.
        _logger.debug("veil: configured outside the main thread; SIG_DFL is taken over only when set again")
        return
    for signum in COVERED:
        try:
            if _real_getsignal(signum) == signal.SIG_DFL:
                _real_signal(signum, _on_signal)
        except (OSError, ValueError):
            _logger.debug("veil: could not watch signal %d", signum, exc_info=True)
