"""Helpers shared by the HTTP client instrumentation tests: providers, the `instrument` fixtures, span checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_RESEND_COUNT,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.network_attributes import NETWORK_PROTOCOL_VERSION
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.trace import SpanKind, StatusCode

from tests.instrumentation._recording import Recording, free_port, recording

__all__ = [
    "REDACTED_QUERY",
    "SIGNED_QUERY",
    "Providers",
    "assert_children_of",
    "assert_error",
    "assert_lasted",
    "assert_plain_get",
    "assert_propagated",
    "assert_redirects_in_one_span",
    "attributes",
    "free_port",
    "ids_of",
    "instrument_fixtures",
    "providers_fixture",
    "traceparent_ids",
]


class Providers(Recording):
    def spans(self) -> list[ReadableSpan]:
        return list(self.finished())

    def client_spans(self) -> list[ReadableSpan]:
        return [span for span in self.spans() if span.kind is SpanKind.CLIENT]

    def only_client_span(self) -> ReadableSpan:
        spans = self.client_spans()
        assert len(spans) == 1, [(span.name, dict(span.attributes or {})) for span in spans]
        return spans[0]


@pytest.fixture(name="providers")
def providers_fixture() -> Iterator[Providers]:
    """SDK providers with in-memory span and metric readers, for one client test."""
    yield from recording(Providers)


def instrument_fixtures(*defaults: Callable[[], Any]) -> tuple[Any, Any]:
    """The `instrument` and `traced` fixtures of a client test module.

    `instrument(*instrumentors, **options)` instruments the given instrumentors (by default, one of each of
    `defaults`) with the test's providers unless `options` names others, and returns the first one; all are
    uninstrumented after the test. `traced` is `instrument()` with no options.
    """

    @pytest.fixture(name="instrument")
    def instrument(providers: Providers) -> Iterator[Callable[..., Any]]:
        used: list[Any] = []

        def apply(*instrumentors: Any, **options: Any) -> Any:
            chosen = instrumentors or tuple(make() for make in defaults)
            for instrumentor in chosen:
                instrumentor.instrument(**{**providers.providers, **options})
                used.append(instrumentor)
            return chosen[0]

        yield apply
        for instrumentor in used:
            instrumentor.uninstrument()

    @pytest.fixture(name="traced")
    def traced(instrument: Callable[..., Any]) -> Any:
        return instrument()

    return instrument, traced


def traceparent_ids(value: str | None) -> tuple[str, str]:
    """(trace id, parent span id) of a traceparent header, as lowercase hex."""
    assert value is not None, "no traceparent header arrived"
    version, trace_id, span_id, _flags = value.split("-")
    assert version == "00"
    return trace_id, span_id


def ids_of(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def assert_propagated(span: ReadableSpan, traceparent: str | None) -> None:
    assert traceparent_ids(traceparent) == ids_of(span)


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def assert_plain_get(providers: Providers, url: str, port: int, traceparent: str | None) -> ReadableSpan:
    """The one client span of a successful GET of `url` on 127.0.0.1:`port`, with `traceparent` sent."""
    span = providers.only_client_span()
    assert span.name == "GET"
    assert attributes(span) == {
        HTTP_REQUEST_METHOD: "GET",
        URL_FULL: url,
        SERVER_ADDRESS: "127.0.0.1",
        SERVER_PORT: port,
        HTTP_RESPONSE_STATUS_CODE: 200,
        NETWORK_PROTOCOL_VERSION: "1.1",
    }
    assert_propagated(span, traceparent)
    return span


def assert_redirects_in_one_span(
    providers: Providers, resends: int, traceparents: Sequence[str | None]
) -> ReadableSpan:
    """One client span for a chain of `resends` redirects; `traceparents` (one a hop) all name it."""
    span = providers.only_client_span()
    assert attributes(span)[HTTP_REQUEST_RESEND_COUNT] == resends
    assert len(traceparents) == resends + 1
    for traceparent in traceparents:
        assert_propagated(span, traceparent)
    return span


def assert_error(span: ReadableSpan, error_type: str) -> None:
    assert span.status.status_code is StatusCode.ERROR
    assert attributes(span)[ERROR_TYPE] == error_type


def assert_lasted(span: ReadableSpan, seconds: float) -> None:
    """The span lasted at least `seconds` (it ended with the body, not with the headers)."""
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time >= seconds * 1e9


def assert_children_of(
    spans: Sequence[ReadableSpan], parents: Sequence[tuple[str, str]], arrived: Mapping[str, str | None]
) -> None:
    """Concurrent calls: call `i` (query `...=i`) is a child of `parents[i]` and sent its own traceparent.

    `arrived` maps the index the server saw to the traceparent header it got.
    """
    assert len(spans) == len(parents)
    by_index = {int(str(attributes(span)[URL_FULL]).rsplit("=", 1)[1]): span for span in spans}
    for index, (trace_id, parent_id) in enumerate(parents):
        span = by_index[index]
        assert span.parent is not None
        assert format(span.parent.span_id, "016x") == parent_id
        assert format(span.context.trace_id, "032x") == trace_id
    for index, span in by_index.items():
        assert traceparent_ids(arrived[str(index)]) == ids_of(span)


SIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20240101&X-Amz-Signature=deadbeef"
    "&flag&empty=&sig=abc&Signature=xyz&AWSAccessKeyId=AKID&X-Goog-Signature=goog&color=blue"
)
REDACTED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED"
    "&flag&empty=&sig=REDACTED&Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED&color=blue"
)
