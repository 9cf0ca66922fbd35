"""The HTTP metric instruments: request duration and body sizes (server and client), active server requests.

Created once per instrumentation by `request_metrics()`; `record` is what a finished request costs. On an SDK
meter provider veil can join (see `veil._histograms`), the histograms are aggregated by veil
(`AggregatedRequestMetrics`, about a tenth of the SDK's cost); otherwise through SDK instruments
(`RequestMetrics`). Both export the same metrics. Pre-stable instruments (milliseconds, old names) exist only
in dup mode.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final, Protocol

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

from veil._histograms import HistogramSpec, Recorder, recorder_for
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

DEFAULT_BUCKETS: Final[tuple[float, ...]] = (0, 5, 10, 25, 50, 75, 100, 250, 500, 750, 1000, 2500, 5000, 7500, 10000)
"""The metrics SDK specification's default explicit bucket boundaries, used by the body-size histograms."""

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


_DESCRIPTIONS: Final[tuple[str, str, str]] = (
    "Duration of HTTP {side} requests.",
    "Size of HTTP {side} request bodies.",
    "Size of HTTP {side} response bodies.",
)
_OLD_DESCRIPTIONS: Final[tuple[str, str]] = (
    "Duration of HTTP {side} requests (pre-stable name).",
    "Request size (old name).",
)


class RecordsRequests(Protocol):
    """What the server and client request objects call once per finished request."""

    def record(  # noqa: PLR0917 - positional on purpose: called once per request
        self,
        elapsed: float,
        request_size: int | None,
        response_size: int | None,
        attributes: dict[str, AttributeValue],
        old: dict[str, AttributeValue] | None,
        context: Context,
    ) -> None: ...


def _specs(side: Side, old: bool) -> tuple[HistogramSpec, HistogramSpec, HistogramSpec]:
    """The duration, request size and response size histograms of `side` (pre-stable ones if `old`)."""
    if old:
        duration, request_size, response_size = _OLD_NAMES[side]
        return (
            HistogramSpec(duration, "ms", _OLD_DESCRIPTIONS[0].format(side=side), _OLD_DURATION_BUCKETS),
            HistogramSpec(request_size, "By", _OLD_DESCRIPTIONS[1], DEFAULT_BUCKETS),
            HistogramSpec(response_size, "By", _OLD_RESPONSE_SIZE_DESCRIPTIONS[side], DEFAULT_BUCKETS),
        )
    duration, request_size, response_size = _NAMES[side]
    return (
        HistogramSpec(duration, "s", _DESCRIPTIONS[0].format(side=side), DURATION_BUCKETS),
        HistogramSpec(request_size, "By", _DESCRIPTIONS[1].format(side=side), DEFAULT_BUCKETS),
        HistogramSpec(response_size, "By", _DESCRIPTIONS[2].format(side=side), DEFAULT_BUCKETS),
    )


def request_metrics(meter: Meter, side: Side, dup: bool) -> RecordsRequests:
    """The request histograms of `side` on `meter`: aggregated by veil when it can join the provider."""
    recorder = recorder_for(meter, _specs(side, old=False))
    if recorder is not None:
        old = recorder_for(meter, _specs(side, old=True)) if dup else None
        if old is not None or not dup:
            return AggregatedRequestMetrics(recorder, old)
    return RequestMetrics(meter, side, dup)


class AggregatedRequestMetrics:
    """The request histograms aggregated by veil (`veil._histograms`) and merged into each collection."""

    __slots__ = ("_old", "_recorder")

    def __init__(self, recorder: Recorder, old: Recorder | None) -> None:
        self._recorder = recorder
        self._old = old

    def record(  # noqa: PLR0917 - positional on purpose: called once per request
        self,
        elapsed: float,
        request_size: int | None,
        response_size: int | None,
        attributes: dict[str, AttributeValue],
        old: dict[str, AttributeValue] | None,
        context: Context,
    ) -> None:
        """Record one finished request (`elapsed` in seconds; `old` is None unless dup mode)."""
        self._recorder.record(attributes, (elapsed, request_size, response_size), context)
        if old is not None and self._old is not None:
            self._old.record(old, (elapsed * 1000.0, request_size, response_size), context)


class RequestMetrics:
    """http.{server,client}.request.duration and the body-size histograms of one side, as SDK instruments."""

    __slots__ = ("duration", "old_duration", "old_request_size", "old_response_size", "request_size", "response_size")

    def __init__(self, meter: Meter, side: Side, dup: bool) -> None:
        self.duration, self.request_size, self.response_size = _instruments(meter, _specs(side, old=False))
        self.old_duration: Histogram | None = None
        self.old_request_size: Histogram | None = None
        self.old_response_size: Histogram | None = None
        if dup:
            self.old_duration, self.old_request_size, self.old_response_size = _instruments(
                meter, _specs(side, old=True)
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


def _instruments(meter: Meter, specs: tuple[HistogramSpec, ...]) -> tuple[Histogram, ...]:
    """SDK histograms for `specs`; the duration's buckets are advisory, the sizes keep the SDK's defaults."""
    return tuple(
        meter.create_histogram(
            spec.name,
            unit=spec.unit,
            description=spec.description,
            explicit_bucket_boundaries_advisory=spec.boundaries if spec.boundaries is not DEFAULT_BUCKETS else None,
        )
        for spec in specs
    )


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
