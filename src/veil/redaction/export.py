"""Exporter wrappers that redact every span, log record and metric point on the export thread.

Each wrapper builds redacted copies (the originals may be shared with other exporters and are never mutated),
hands them to the wrapped exporter, and forwards `force_flush` and `shutdown`. A span or record whose copy
cannot be built is dropped, never exported raw. Redacted spans and log records carry `veil.redaction.count`
(and, with the debug option, `veil.redaction.keys`: attribute keys, never values).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import Link, Status

from veil import _sdk
from veil._cache import remember
from veil._guard import log_once
from veil.redaction.engine import REDACTION_COUNT_ATTRIBUTE, REDACTION_KEYS_ATTRIBUTE, Redactor
from veil.redaction.statements import sanitize_span_statements

_RESOURCE_CACHE_LIMIT = 64


class _Work:
    """What redacting one span or record found: the count and, in debug mode, the keys."""

    __slots__ = ("count", "keys", "truncated")

    def __init__(self, debug: bool) -> None:
        self.count = 0
        self.truncated = False
        self.keys: list[str] | None = [] if debug else None


class ExportRedaction:
    """Redacted copies of spans, log records and metrics: what the three wrappers (and the pytest capture) export."""

    def __init__(self, redactor: Redactor, max_value_length: int | None = None) -> None:
        self.redactor = redactor
        self.max_value_length = max_value_length
        self.debug = redactor.config.debug_keys
        self._resources: dict[int, tuple[Resource, Resource]] = {}

    def text(self, key: str | None, value: Any, work: _Work) -> Any:
        redacted, count = self.redactor.redact_counted(key, value)
        if count:
            work.count += count
            if work.keys is not None and key is not None:
                work.keys.append(key)
        if self.max_value_length is not None and key is not None:
            # The value length limit is applied here, after redaction: a secret cut short first would no longer
            # match its detector.
            redacted = self._truncate(redacted, work)
        return redacted

    def _truncate(self, value: Any, work: _Work) -> Any:
        limit = self.max_value_length
        assert limit is not None
        if isinstance(value, str):
            if len(value) > limit:
                work.truncated = True
                return value[:limit]
            return value
        if isinstance(value, (tuple, list)) and any(isinstance(item, str) and len(item) > limit for item in value):
            work.truncated = True
            return tuple(item[:limit] if isinstance(item, str) else item for item in value)
        return value

    def attributes(self, attributes: Mapping[str, Any] | None, work: _Work) -> Mapping[str, Any] | None:
        if not attributes:
            return attributes
        changed: dict[str, Any] | None = None
        for key, value in attributes.items():
            redacted = self.text(key, value, work)
            if redacted is not value:
                if changed is None:
                    changed = dict(attributes)
                changed[key] = redacted
        if changed is None:
            return attributes
        return _bounded(changed, getattr(attributes, "dropped", 0))

    def resource(self, resource: Resource | None) -> Resource | None:
        if resource is None:
            return None
        cached = self._resources.get(id(resource))  # dict reads and writes are atomic: no lock to inherit at fork
        if cached is not None and cached[0] is resource:
            return cached[1]
        work = _Work(debug=False)
        attributes = self.attributes(resource.attributes, work)
        redacted = resource
        if attributes is not resource.attributes:
            redacted = Resource(dict(attributes or {}), resource.schema_url)
        remember(self._resources, id(resource), (resource, redacted), _RESOURCE_CACHE_LIMIT)
        return redacted

    def mark(self, attributes: Mapping[str, Any] | None, work: _Work) -> Mapping[str, Any]:
        marked = dict(attributes or {})
        marked[REDACTION_COUNT_ATTRIBUTE] = work.count
        if work.keys:
            marked[REDACTION_KEYS_ATTRIBUTE] = tuple(dict.fromkeys(work.keys))
        return _bounded(marked, getattr(attributes, "dropped", 0))

    def span(self, span: ReadableSpan) -> ReadableSpan:
        work = _Work(self.debug)
        name = self.text(None, span.name, work)
        # --- statement sanitizer (veil.redaction.statements): db.query.text of every instrumentation
        source, sanitized = (
            (span.attributes, 0) if self.redactor.config.sql == "off" else sanitize_span_statements(span)
        )
        work.count += sanitized
        # ---
        attributes = self.attributes(source, work)
        status = span.status
        if status.description:
            description = self.text(None, status.description, work)
            if description is not status.description:
                status = Status(status.status_code, description)
        events = [self._event(event, work) for event in span.events]
        links = [self._link(link, work) for link in span.links]
        resource = self.resource(span.resource)
        if not work.count and not work.truncated and resource is span.resource:
            return span
        if work.count:
            attributes = self.mark(attributes, work)
        return ReadableSpan(
            name=name,
            context=span.context,
            parent=span.parent,
            resource=resource,
            attributes=attributes,
            events=_bounded_list(events, span.events),
            links=_bounded_list(links, span.links),
            kind=span.kind,
            status=status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _event(self, event: Event, work: _Work) -> Event:
        before = work.count
        name = self.text(None, event.name, work)
        attributes = self.attributes(event.attributes, work)
        if work.count == before and attributes is event.attributes:
            return event
        return Event(name, attributes, event.timestamp)

    def _link(self, link: Link, work: _Work) -> Link:
        attributes = self.attributes(link.attributes, work)
        if attributes is link.attributes:
            return link
        return Link(link.context, attributes)

    def log(self, record: ReadableLogRecord) -> ReadableLogRecord:
        work = _Work(self.debug)
        original = record.log_record
        body = self.text(None, original.body, work)
        attributes = self.attributes(original.attributes, work)
        event_name = original.event_name
        if event_name:
            event_name = self.text(None, event_name, work)
        resource = self.resource(record.resource)
        if not work.count and resource is record.resource:
            return record
        copy = object.__new__(type(original))
        copy.__dict__.update(original.__dict__)
        copy.body = body
        copy.event_name = event_name
        copy.attributes = self.mark(attributes, work) if work.count else attributes
        return dataclasses.replace(record, log_record=copy, resource=resource or record.resource)

    def metrics(self, data: MetricsData) -> MetricsData:
        changed = False
        resource_metrics = []
        for item in data.resource_metrics:
            resource = self.resource(item.resource)
            scopes = []
            for scope in item.scope_metrics:
                metrics = [self._metric(metric) for metric in scope.metrics]
                if any(new is not old for new, old in zip(metrics, scope.metrics, strict=True)):
                    scopes.append(dataclasses.replace(scope, metrics=metrics))
                else:
                    scopes.append(scope)
            scopes_changed = any(new is not old for new, old in zip(scopes, item.scope_metrics, strict=True))
            if resource is not item.resource or scopes_changed:
                resource_metrics.append(
                    dataclasses.replace(item, resource=resource or item.resource, scope_metrics=scopes)
                )
                changed = True
            else:
                resource_metrics.append(item)
        return dataclasses.replace(data, resource_metrics=resource_metrics) if changed else data

    def _metric(self, metric: Any) -> Any:
        points = getattr(metric.data, "data_points", None)
        if not points:
            return metric
        new_points = []
        for point in points:
            attributes = self.attributes(point.attributes, _Work(debug=False))
            new_points.append(
                point if attributes is point.attributes else dataclasses.replace(point, attributes=attributes)
            )
        if all(new is old for new, old in zip(new_points, points, strict=True)):
            return metric
        return dataclasses.replace(metric, data=dataclasses.replace(metric.data, data_points=new_points))


def _bounded(attributes: Mapping[str, Any], dropped: int) -> BoundedAttributes:
    bounded = BoundedAttributes(maxlen=None, attributes=attributes, immutable=True)
    bounded.dropped = dropped
    return bounded


def _bounded_list(items: Sequence[Any], original: Sequence[Any]) -> BoundedList[Any]:
    bounded = BoundedList.from_seq(None, items)
    bounded.dropped = getattr(original, "dropped", 0)
    return bounded


_Item = TypeVar("_Item")


def _redact_each(items: Sequence[_Item], redact: Callable[[_Item], _Item], what: str) -> list[_Item]:
    """The redacted copies of `items`; an item that cannot be redacted is dropped (logged once), never exported
    as it is."""
    redacted = []
    for item in items:
        try:
            redacted.append(redact(item))
        except Exception:
            log_once(f"redaction.{what}", "veil: a %s could not be redacted and was dropped", what, exc_info=True)
    return redacted


class RedactingSpanExporter(SpanExporter):
    """Redacts span names, attributes, status, events, links and resources, then exports through `inner`."""

    def __init__(self, inner: SpanExporter, redactor: Redactor, max_value_length: int | None = None) -> None:
        """`max_value_length`: the attribute value length limit, applied after redaction (see telemetry)."""
        self.inner = inner
        self.redactor = redactor
        self._redaction = ExportRedaction(redactor, max_value_length)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redacted = _redact_each(spans, self._redaction.span, "span")
        result = self.inner.export(redacted) if redacted else SpanExportResult.SUCCESS
        # A dropped span is a loss: report the batch as failed so health() and the loss warning count it.
        return SpanExportResult.FAILURE if len(redacted) < len(spans) else result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)

    def shutdown(self) -> None:
        self.inner.shutdown()


class RedactingLogExporter(LogRecordExporter):
    """Redacts log bodies, attributes, event names and resources, then exports through `inner`."""

    def __init__(self, inner: LogRecordExporter, redactor: Redactor) -> None:
        self.inner = inner
        self.redactor = redactor
        self._redaction = ExportRedaction(redactor)

    def export(self, batch: Sequence[ReadableLogRecord]) -> LogRecordExportResult:
        redacted = _redact_each(batch, self._redaction.log, "log record")
        result: LogRecordExportResult = self.inner.export(redacted) if redacted else LogRecordExportResult.SUCCESS
        return LogRecordExportResult.FAILURE if len(redacted) < len(batch) else result

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return bool(self.inner.force_flush(timeout_millis))

    def shutdown(self) -> None:
        self.inner.shutdown()  # type: ignore[no-untyped-call]


class RedactingMetricExporter(_sdk.DelegatingMetricExporter):
    """Redacts metric data point attributes and resources, then exports through `inner`.

    Temporality and aggregation preferences are those of `inner`.
    """

    def __init__(self, inner: MetricExporter, redactor: Redactor) -> None:
        super().__init__(inner)
        self.redactor = redactor
        self._redaction = ExportRedaction(redactor)

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        try:
            redacted = self._redaction.metrics(metrics_data)
        except Exception:
            log_once("redaction.metrics", "veil: metrics could not be redacted and were dropped", exc_info=True)
            return MetricExportResult.FAILURE
        return self.inner.export(redacted, timeout_millis=timeout_millis, **kwargs)
