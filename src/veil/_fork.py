"""The fork hub: what veil's modules and objects redo in a forked child, registered with the OS once.

`after_fork(callback)` adds a callback that runs in the child right after `os.fork()` (gunicorn --preload,
multiprocessing's fork start method): typically a fresh lock, since a lock another thread of the parent held at
fork time stays held forever in the child, or state that belongs to the parent process only.

- Callbacks run in registration order. `veil._guard`'s locks are renewed first (registered when this module is
  imported, before anything else can register): every other callback, and the hub itself when one raises, may
  log through it.
- A bound method is held weakly (`weakref.WeakMethod`): registering `self._reset` does not keep `self` alive, and
  once the object is gone its callback is skipped and dropped from the hub. A plain function is held strongly:
  a closure held weakly would die at once (nothing else refers to it), so a closure must capture a
  `weakref.ref` of its object, never the object itself.
- Each callback is isolated: one that raises is logged once (`veil._guard.log_once`) and the others still run.
- The hub is registered with `os.register_at_fork` exactly once; where fork is unavailable `after_fork` is a
  no-op.

`holding_off_fork()` is the other direction: work on a background thread that imports (building an exporter on
its first export pulls in some 200 modules; requests imports `netrc` on its first request) runs inside it, and
a fork from any thread waits for that work to end, at most `FORK_WAIT_SECONDS`. A child forked while another
thread of the parent was half-way through importing a module inherits that module's import lock, held by a
thread that does not exist in the child: the child's first import of the module blocks forever (a gunicorn
worker whose log exporter never exports). `FirstUse` applies it to the first call of something in each process,
where the lazy imports happen.

The hub's slot in the OS's list of after-fork hooks is the moment this module was imported, so its callbacks run
before the hooks of SDK objects built later (providers, batch processors, metric readers): a lock veil renews
here is fresh before the SDK restarts the threads that take it. The one callback that must instead run after
such hooks (undoing what an SDK provider's own hook does) uses `after_fork_after_existing_hooks`.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MethodType
from typing import TypeVar

from veil import _guard

Callback = Callable[[], object]
_R = TypeVar("_R")

_SUPPORTED = hasattr(os, "register_at_fork")
_PRUNE_FLOOR = 32  # dead references are swept when the hub has grown to twice its size after the last sweep

FORK_WAIT_SECONDS = 5.0  # the longest a fork waits for `holding_off_fork` work; then it goes ahead (logged once)

_lock = threading.Lock()
_callbacks: list[Callable[[], Callback | None]] = []  # each returns its callback, or None once it is dead
_live_after_sweep = 0


def _reference(callback: Callback) -> Callable[[], Callback | None]:
    if isinstance(callback, MethodType):
        return weakref.WeakMethod(callback)

    def strong() -> Callback:
        return callback

    return strong


def after_fork(callback: Callback) -> None:
    """Run `callback` in every child forked from now on (a bound method held weakly, a function strongly)."""
    global _live_after_sweep
    if not _SUPPORTED:
        return
    reference = _reference(callback)
    with _lock:
        if len(_callbacks) >= max(_PRUNE_FLOOR, 2 * _live_after_sweep):
            # Objects that register a bound method (one per exporter, ledger, ...) come and go: without the
            # sweep a long-lived process building many of them would keep every dead reference.
            _callbacks[:] = [alive for alive in _callbacks if alive() is not None]
            _live_after_sweep = len(_callbacks)
        _callbacks.append(reference)


def _run(callback: Callback) -> None:
    try:
        callback()
    except Exception:
        name = getattr(callback, "__qualname__", type(callback).__qualname__)
        _guard.log_once(
            f"fork.{name}",
            "veil: an after-fork callback (%s) raised in the forked child (ignored)",
            name,
            exc_info=True,
        )


def _run_in_child() -> None:
    global _lock, _live_after_sweep, _work
    # The parent thread that forked may not be the one that held the hub's lock; the child's copy could be held.
    _lock = threading.Lock()
    _work = threading.RLock()  # the forking thread's hold on it was taken for the parent
    _forking.held = False
    # A registration (one append) and a sweep (one slice assignment) are each a single atomic step: the child's
    # copy of the list is whole even if another thread of the parent was registering at fork time.
    for reference in list(_callbacks):
        callback = reference()
        if callback is not None:
            _run(callback)
    with _lock:  # a callback may have registered another (it runs in the next fork): keep those
        _callbacks[:] = [alive for alive in _callbacks if alive() is not None]
        _live_after_sweep = len(_callbacks)


_work = threading.RLock()  # held by `holding_off_fork` work, and by a forking thread from before to after the fork
_forking = threading.local()  # per forking thread: whether its before-fork hook took `_work`


@contextmanager
def holding_off_fork() -> Iterator[None]:
    """Hold any `os.fork()` (from any thread) until this block ends: for background work that imports.

    Blocks of different threads run one at a time. A fork waits at most `FORK_WAIT_SECONDS` for them, so a block
    that waits on the network (an exporter's first export to a collector that does not answer) delays a fork by
    that much at most, once per process.
    """
    with _work:
        yield


class FirstUse:
    """Runs the first call in each process under `holding_off_fork`, and every later call directly."""

    __slots__ = ("_pid",)

    def __init__(self) -> None:
        self._pid = -1  # the process in which a first call has finished

    def call(self, work: Callable[[], _R]) -> _R:
        if self._pid == os.getpid():
            return work()
        with holding_off_fork():
            try:
                return work()
            finally:
                self._pid = os.getpid()


def _before_fork() -> None:
    _forking.held = _work.acquire(timeout=FORK_WAIT_SECONDS)
    if not _forking.held:
        _guard.log_once(
            "fork.wait",
            "veil: a fork waited %.0f s for veil's background work (an exporter's or sink's first use) and went "
            "ahead; the child may block on an import that work had started",
            FORK_WAIT_SECONDS,
        )


def _after_fork_in_parent() -> None:
    if getattr(_forking, "held", False):
        _forking.held = False
        _work.release()


def after_fork_after_existing_hooks(callback: Callback) -> None:
    """Run `callback` in every child forked from now on, after every after-fork hook registered before this call.

    For a callback that must follow an SDK object's own hook (a provider refreshes its resource after a fork,
    and veil puts its own back): the hub's slot precedes those hooks, so this registers with
    `os.register_at_fork` itself, once per call. Held and isolated like `after_fork`'s callbacks.
    """
    if not _SUPPORTED:
        return
    reference = _reference(callback)

    def in_child() -> None:
        alive = reference()
        if alive is not None:
            _run(alive)

    os.register_at_fork(after_in_child=in_child)


if _SUPPORTED:
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_run_in_child)
    after_fork(_guard.renew_locks_after_fork)
