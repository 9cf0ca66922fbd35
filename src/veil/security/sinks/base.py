"""The delivery machinery every sink shares: a bounded queue, its own thread, retries with backoff, accounting.

A sink is fed on the caller's thread by `Sink.submit`, which only reserves a slot in the sink's ledger and
appends to a deque: no I/O, no formatting, no lock held across anything slow. The sink's daemon thread turns
events into ECS documents (redacting audit attributes on the way), formats them and sends them, retrying a
failed send with exponential backoff. What the queue cannot take is dropped and counted, and what fails after
the retries is counted: both show in `veil.Telemetry.health()` (signal `logs`) and veil's `otel.sdk.*` metrics.
Nothing a sink does raises into the application, and no error message carries a credential.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from veil._fork import FirstUse
from veil._guard import log_once
from veil.export.accounting import Ledger
from veil.security.sinks.ecs import Document, SecurityEvent, document

_logger = logging.getLogger("veil")

BATCH_SIZE = 100
MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0


class DeliveryError(Exception):
    """A send failed; `retry` says whether trying again may help (a 503 may, a 400 will not)."""

    def __init__(self, cause: str, *, retry: bool = True, delay: float | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        self.retry = retry
        self.delay = delay


class Worker:
    """A bounded queue drained in batches by its own daemon thread; subclasses implement `process(batch)`."""

    kind = "worker"

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name  # a credential-free label for messages (masked URL or file name)
        self.ledger = Ledger("logs", None, f"veil_security_{self.kind}", capacity)
        self._queue: deque[Any] = deque()
        self._wake = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._closed = False
        self._pid = -1
        self._thread: threading.Thread | None = None
        self._first_use = FirstUse()

    # -- caller's thread ---------------------------------------------------------------------------------

    def submit(self, item: Any) -> None:
        """Queue one item; never blocks, never raises; a full queue drops and counts it."""
        if self._pid != os.getpid():
            self._start()
        if not self.ledger.admit():
            return
        self._queue.append(item)
        # After the append: the thread sets `idle` again only once it has seen the queue empty. The checks
        # first keep the common case (thread busy or already woken) free of the events' locks.
        if self._idle.is_set():
            self._idle.clear()
        if not self._wake.is_set():
            self._wake.set()

    def _start(self) -> None:
        # First use, or first use in a forked child (threads do not survive fork; the ledger resets itself).
        self._pid = os.getpid()
        self._queue = deque()
        self._idle = threading.Event()
        self._idle.set()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"veil-security-{self.kind}", daemon=True)
        self._thread.start()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was processed or given up; True if that happened within `timeout`."""
        if self._thread is None or self._pid != os.getpid():
            return True
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float) -> bool:
        """Flush within `timeout`, then stop the thread and release the transport."""
        deadline = time.monotonic() + timeout
        flushed = self.flush(timeout)
        self._closed = True
        self.ledger.closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(max(deadline - time.monotonic(), 0.0))
        return flushed

    # -- the worker's thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(1.0)
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH_SIZE, len(self._queue)))]
                # the first delivery imports what the transport loads lazily (time.strptime's module, ssl...):
                # no fork may split that (veil._fork.FirstUse)
                work = functools.partial(self.ledger.export, len(batch), functools.partial(self.process, batch), bool)
                self._first_use.call(work)
            if not self._queue:
                self._idle.set()
            if self._closed:
                self._call_quietly(self.close_transport)
                return

    def process(self, batch: Sequence[Any]) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def close_transport(self) -> None:
        """Release sockets or files (called on the worker's thread when it stops)."""

    def _call_quietly(self, function: Callable[[], object]) -> None:
        try:
            function()
        except Exception:
            log_once(f"security.{self.kind}.close", "veil: closing security output %s failed", self.name)


class Sink(Worker):
    """One delivery target. Subclasses implement `send` (raise DeliveryError) and may override `close_transport`."""

    kind = "sink"

    def __init__(self, name: str, capacity: int, redact: Callable[[str, Any], Any]) -> None:
        super().__init__(name, capacity)
        self._redact = redact
        self.service: dict[str, str] = {}  # service.name (and version) stamped on every document
        self.sleep: Callable[[float], None] = time.sleep

    def process(self, batch: Sequence[SecurityEvent]) -> bool:
        return self._deliver(batch)

    def _deliver(self, batch: Sequence[SecurityEvent]) -> bool:
        documents = [document(event, self._redact, self.service) for event in batch]
        delay = FIRST_BACKOFF_SECONDS
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self.send(documents)
                return True
            except DeliveryError as error:
                failure = error
            except Exception as error:  # a transport bug must not kill the thread
                failure = DeliveryError(type(error).__name__)
            if not failure.retry or attempt == MAX_ATTEMPTS or self._closed:
                break
            self.sleep(min(failure.delay if failure.delay is not None else delay, MAX_BACKOFF_SECONDS))
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)
        log_once(
            f"security.sink.{self.kind}",
            "veil: security sink %s failed (%s); %d event(s) counted as failed",
            self.name,
            failure.cause,
            len(batch),
            level=logging.WARNING,
        )
        return False

    def send(self, documents: Sequence[Document]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"event": {"kind": "alert"}}` -> `{"event.kind": "alert"}` (for syslog structured data and CEF)."""
    flat: dict[str, Any] = {}
    for key, value in document.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
