"""The HTTP metric instruments: request duration and body sizes (server and client), active server requests.

Created once per instrumentation by `request_metrics()`; `RequestMetrics.record` is what a finished request
costs. On an SDK meter provider veil can join (see `veil._histograms`), the histograms are aggregated by veil
(about a tenth of the SDK's cost); otherwise they are SDK instruments. Both export the same metrics.
Pre-stable instruments (milliseconds, old names) exist only in dup mode.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
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


class _Histograms(Protocol):
    """One measurement per histogram of a set (`values` in order, None = not measured), as `Recorder.record`."""

    def record(
        self, attributes: Mapping[str, AttributeValue], values: Sequence[float | None], context: Context | None
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


def request_metrics(meter: Meter, side: Side, dup: bool) -> RequestMetrics:
    """The request histograms of `side` on `meter`: aggregated by veil when it can join the provider."""
    return RequestMetrics(
        _histograms(meter, _specs(side, old=False)), _histograms(meter, _specs(side, old=True)) if dup else None
    )


def _histograms(meter: Meter, specs: tuple[HistogramSpec, ...]) -> _Histograms:
    recorder = recorder_for(meter, specs)
    return recorder if recorder is not None else _Instruments(meter, specs)


class _Instruments:
    """`specs` as SDK histograms (the fallback): the duration's buckets are advisory, the sizes keep the SDK's
    defaults. The SDK copies the attribute mapping of every measurement, so cached sets are never mutated.
    """

    __slots__ = ("_instruments",)

    def __init__(self, meter: Meter, specs: tuple[HistogramSpec, ...]) -> None:
        self._instruments: tuple[Histogram, ...] = tuple(
            meter.create_histogram(
                spec.name,
                unit=spec.unit,
                description=spec.description,
                explicit_bucket_boundaries_advisory=spec.boundaries if spec.boundaries is not DEFAULT_BUCKETS else None,
            )
            for spec in specs
        )

    def record(
        self, attributes: Mapping[str, AttributeValue], values: Sequence[float | None], context: Context | None
    ) -> None:
        for instrument, value in zip(self._instruments, values, strict=True):
            if value is not None:
                instrument.record(value, attributes, context)


class RequestMetrics:
    """http.{server,client}.request.duration and the request/response body-size histograms of one side, and
    their pre-stable twins in dup mode; aggregated by veil (`veil._histograms`) or recorded as SDK instruments.
    """

    __slots__ = ("_old", "_stable")

    def __init__(self, stable: _Histograms, old: _Histograms | None) -> None:
        self._stable = stable
        self._old = old

    @property
    def aggregated(self) -> bool:
        """Whether veil aggregates these histograms itself (rather than through SDK instruments)."""
        return isinstance(self._stable, Recorder) and (self._old is None or isinstance(self._old, Recorder))

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
        self._stable.record(attributes, (elapsed, request_size, response_size), context)
        if old is not None and self._old is not None:
            self._old.record(old, (elapsed * 1000.0, request_size, response_size), context)


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
