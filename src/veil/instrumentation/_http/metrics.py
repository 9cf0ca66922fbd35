"""The HTTP metric instruments: request duration and body sizes (server and client), active server requests.

Created once per instrumentation; `RequestMetrics.record` is what a finished request costs. Pre-stable
instruments (milliseconds, old names) exist only in dup mode.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final

from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
from opentelemetry.semconv._incubating.metrics.http_metrics import (
    HTTP_CLIENT_REQUEST_BODY_SIZE,
    HTTP_CLIENT_RESPONSE_BODY_SIZE,
    HTTP_SERVER_ACTIVE_REQUESTS,
    HTTP_SERVER_REQUEST_BODY_SIZE,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
)
from opentelemetry.semconv.metrics import MetricInstruments
from opentelemetry.semconv.metrics.http_metrics import (
    HTTP_CLIENT_REQUEST_DURATION,
    HTTP_SERVER_REQUEST_DURATION,
)
from opentelemetry.util.types import AttributeValue

from veil.instrumentation._http.config import Side
from veil.instrumentation._http.semconv import ActiveKey

DURATION_BUCKETS: Final[tuple[float, ...]] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    0.75,
    1.0,
    2.5,
    5.0,
    7.5,
    10.0,
)
"""Advisory bucket boundaries (seconds) of http.server/client.request.duration, from the conventions."""

_OLD_DURATION_BUCKETS: Final[tuple[float, ...]] = tuple(bound * 1000 for bound in DURATION_BUCKETS)

# side -> (duration, request body size, response body size), stable then pre-stable names
_NAMES: Final[dict[str, tuple[str, str, str]]] = {
    "server": (HTTP_SERVER_REQUEST_DURATION, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_RESPONSE_BODY_SIZE),
    "client": (HTTP_CLIENT_REQUEST_DURATION, HTTP_CLIENT_REQUEST_BODY_SIZE, HTTP_CLIENT_RESPONSE_BODY_SIZE),
}
_OLD_NAMES: Final[dict[str, tuple[str, str, str]]] = {
    "server": (
        MetricInstruments.HTTP_SERVER_DURATION,
        MetricInstruments.HTTP_SERVER_REQUEST_SIZE,
        MetricInstruments.HTTP_SERVER_RESPONSE_SIZE,
    ),
    "client": (
        MetricInstruments.HTTP_CLIENT_DURATION,
        MetricInstruments.HTTP_CLIENT_REQUEST_SIZE,
        MetricInstruments.HTTP_CLIENT_RESPONSE_SIZE,
    ),
}
_OLD_RESPONSE_SIZE_DESCRIPTIONS: Final = {"server": "Response size (old).", "client": "Response size (old name)."}


class RequestMetrics:
    """http.{server,client}.request.duration and the request/response body-size histograms of one side."""

    __slots__ = ("duration", "old_duration", "old_request_size", "old_response_size", "request_size", "response_size")

    def __init__(self, meter: Meter, side: Side, dup: bool) -> None:
        duration, request_size, response_size = _NAMES[side]
        self.duration: Histogram = meter.create_histogram(
            duration,
            unit="s",
            description=f"Duration of HTTP {side} requests.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.request_size: Histogram = meter.create_histogram(
            request_size, unit="By", description=f"Size of HTTP {side} request bodies."
        )
        self.response_size: Histogram = meter.create_histogram(
            response_size, unit="By", description=f"Size of HTTP {side} response bodies."
        )
        self.old_duration: Histogram | None = None
        self.old_request_size: Histogram | None = None
        self.old_response_size: Histogram | None = None
        if dup:
            old_duration, old_request_size, old_response_size = _OLD_NAMES[side]
            self.old_duration = meter.create_histogram(
                old_duration,
                unit="ms",
                description=f"Duration of HTTP {side} requests (pre-stable name).",
                explicit_bucket_boundaries_advisory=_OLD_DURATION_BUCKETS,
            )
            self.old_request_size = meter.create_histogram(
                old_request_size, unit="By", description="Request size (old name)."
            )
            self.old_response_size = meter.create_histogram(
                old_response_size, unit="By", description=_OLD_RESPONSE_SIZE_DESCRIPTIONS[side]
            )

    def record(  # noqa: PLR0917 - positional on purpose: called once per request
        self,
        elapsed: float,
        request_size: int | None,
        response_size: int | None,
        attributes: dict[str, AttributeValue],
        old: dict[str, AttributeValue] | None,
        context: Context,
    ) -> None:
        """Record one finished request (`elapsed` in seconds; `old` is None unless dup mode).

        The SDK copies the attribute mapping of every measurement, so cached attribute sets are never mutated.
        """
        self.duration.record(elapsed, attributes, context)
        if request_size is not None:
            self.request_size.record(request_size, attributes, context)
        if response_size is not None:
            self.response_size.record(response_size, attributes, context)
        if old is not None and self.old_duration is not None:
            self.old_duration.record(elapsed * 1000.0, old, context)
            if request_size is not None and self.old_request_size is not None:
                self.old_request_size.record(request_size, old, context)
            if response_size is not None and self.old_response_size is not None:
                self.old_response_size.record(response_size, old, context)


class ActiveRequests:
    """http.server.active_requests, kept as plain per-attribute-set counts.

    Reported through an observable up-down counter, which exports the same cumulative sum for a fraction of
    the cost of two synchronous SDK measurements per request.
    """

    __slots__ = ("_counts", "_lock")

    def __init__(self, meter: Meter) -> None:
        self._counts: dict[ActiveKey, int] = {}
        self._lock = threading.Lock()
        meter.create_observable_up_down_counter(
            HTTP_SERVER_ACTIVE_REQUESTS,
            callbacks=[self._observe],
            unit="{request}",
            description="Number of active HTTP server requests.",
        )

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(count, dict(key)) for key, count in counts]

    def add(self, key: ActiveKey, delta: int) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + delta
