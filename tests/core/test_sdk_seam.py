"""veil._sdk against the installed OpenTelemetry SDK: every private name it relies on, checked by name and end to end.

A failure here means an OpenTelemetry release changed something veil borrows: the message names the SDK
attribute, and veil/_sdk.py says what veil relies on it for. The last tests check that no other module of
src/veil uses a private OpenTelemetry name (read from the source with `ast`, so comments do not count).
"""

from __future__ import annotations

import ast
import contextvars
import importlib
import inspect
import logging
import os
import pathlib
import textwrap
import threading
from collections.abc import Iterator
from functools import cache
from typing import Any

import grpc
import pytest
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader, MetricExporter
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.semconv._incubating.attributes.process_attributes import PROCESS_PID
from opentelemetry.trace.span import TraceState

from veil import _sdk

SRC = pathlib.Path(_sdk.__file__).parent
SEAM = pathlib.Path(_sdk.__file__)


def _relies(condition: object, what: str) -> None:
    """Fail naming the SDK behaviour veil._sdk relies on."""
    if not condition:
        pytest.fail(f"the installed OpenTelemetry SDK changed {what} (veil._sdk relies on it)", pytrace=False)


# ------------------------------------------------------------------------------------------ context keys


def test_span_key_is_where_the_trace_api_keeps_the_current_span() -> None:
    from opentelemetry.trace.propagation import _SPAN_KEY

    _relies(_sdk.SPAN_KEY == _SPAN_KEY, "opentelemetry.trace.propagation._SPAN_KEY")
    span = trace.NonRecordingSpan(trace.SpanContext(1, 2, is_remote=False))
    context = otel_context.Context({_sdk.SPAN_KEY: span})
    _relies(trace.get_current_span(context) is span, "trace.get_current_span reading _SPAN_KEY")
    _relies(trace.set_span_in_context(span).get(_sdk.SPAN_KEY) is span, "trace.set_span_in_context")


def test_suppression_keys_are_those_of_the_instrumentation_package() -> None:
    from opentelemetry.instrumentation.utils import suppress_http_instrumentation, suppress_instrumentation

    _relies(
        _sdk.SUPPRESS_INSTRUMENTATION_KEY == otel_context._SUPPRESS_INSTRUMENTATION_KEY,
        "opentelemetry.context._SUPPRESS_INSTRUMENTATION_KEY",
    )
    _relies(
        _sdk.SUPPRESS_HTTP_INSTRUMENTATION_KEY == otel_context._SUPPRESS_HTTP_INSTRUMENTATION_KEY,
        "opentelemetry.context._SUPPRESS_HTTP_INSTRUMENTATION_KEY",
    )
    assert otel_context.get_value(_sdk.SUPPRESS_INSTRUMENTATION_KEY) is None
    with suppress_instrumentation():
        _relies(otel_context.get_value(_sdk.SUPPRESS_INSTRUMENTATION_KEY) is True, "suppress_instrumentation()")
    with suppress_http_instrumentation():
        _relies(
            otel_context.get_value(_sdk.SUPPRESS_HTTP_INSTRUMENTATION_KEY) is True, "suppress_http_instrumentation()"
        )


def test_current_context_reader_is_the_runtime_context_variable() -> None:
    runtime = getattr(otel_context, "_RUNTIME_CONTEXT", None)
    _relies(runtime is not None, "opentelemetry.context._RUNTIME_CONTEXT")
    _relies(
        isinstance(getattr(runtime, "_current_context", None), contextvars.ContextVar),
        "ContextVarsRuntimeContext._current_context (a ContextVar)",
    )
    read = _sdk.current_context_reader()
    _relies(read is not otel_context.get_current, "the runtime context's ContextVar (the fallback was taken)")
    token = otel_context.attach(otel_context.set_value("veil-seam-test", 42))
    try:
        _relies(read() is otel_context.get_current(), "_current_context holding what get_current() returns")
        assert read().get("veil-seam-test") == 42
    finally:
        otel_context.detach(token)
    assert read().get("veil-seam-test") is None


def test_current_context_reader_falls_back_without_a_context_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otel_context, "_RUNTIME_CONTEXT", object())
    assert _sdk.current_context_reader() is otel_context.get_current


# ------------------------------------------------------------------------------------ global providers


@pytest.fixture
def restored_globals() -> Iterator[None]:
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal

    places = [
        (trace, "_TRACER_PROVIDER_SET_ONCE"),
        (trace, "_TRACER_PROVIDER"),
        (metrics_internal, "_METER_PROVIDER_SET_ONCE"),
        (metrics_internal, "_METER_PROVIDER"),
        (logs_internal, "_LOGGER_PROVIDER_SET_ONCE"),
        (logs_internal, "_LOGGER_PROVIDER"),
    ]
    for module, name in places:
        _relies(hasattr(module, name), f"{module.__name__}.{name}")
    saved = [(module, name, getattr(module, name)) for module, name in places]
    try:
        yield
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


@pytest.mark.usefixtures("restored_globals")
def test_install_global_providers_replaces_providers_set_before() -> None:
    from opentelemetry import _logs as logs_api
    from opentelemetry import metrics as metrics_api
    from opentelemetry._logs import _internal as logs_internal
    from opentelemetry.metrics import _internal as metrics_internal
    from opentelemetry.util._once import Once

    for module, name in (
        (trace, "_TRACER_PROVIDER_SET_ONCE"),
        (metrics_internal, "_METER_PROVIDER_SET_ONCE"),
        (logs_internal, "_LOGGER_PROVIDER_SET_ONCE"),
    ):
        _relies(isinstance(getattr(module, name), Once), f"{module.__name__}.{name} (an opentelemetry.util._once.Once)")
    for _ in range(2):  # the second round replaces providers the API already holds
        tracers, meters, loggers = TracerProvider(), MeterProvider(), LoggerProvider()
        _sdk.install_global_providers(tracers, meters, loggers)
        _relies(trace.get_tracer_provider() is tracers, "trace._TRACER_PROVIDER / _TRACER_PROVIDER_SET_ONCE")
        _relies(
            metrics_api.get_meter_provider() is meters, "metrics._internal._METER_PROVIDER / _METER_PROVIDER_SET_ONCE"
        )
        _relies(
            logs_api.get_logger_provider() is loggers, "_logs._internal._LOGGER_PROVIDER / _LOGGER_PROVIDER_SET_ONCE"
        )


def test_resource_updater_updates_every_provider_and_what_it_made() -> None:
    update_to = Resource({"veil.seam": "updated"})
    reader = InMemoryMetricReader()
    tracers = TracerProvider(resource=Resource({"veil.seam": "first"}))
    meters = MeterProvider(metric_readers=[reader], resource=Resource({"veil.seam": "first"}))
    loggers = LoggerProvider(resource=Resource({"veil.seam": "first"}))
    tracer = tracers.get_tracer("seam")
    logger = loggers.get_logger("seam")
    for provider in (tracers, meters, loggers):
        update = _sdk.resource_updater(provider)
        _relies(update is not None, f"{type(provider).__name__}._update_resource")
        assert update is not None
        update(update_to)
    with tracer.start_as_current_span("span") as span:
        _relies(span.resource.attributes["veil.seam"] == "updated", "TracerProvider._update_resource (tracers)")
    meters.get_meter("seam").create_counter("seam.count").add(1)
    data = reader.get_metrics_data()
    assert data is not None
    _relies(data.resource_metrics[0].resource.attributes["veil.seam"] == "updated", "MeterProvider._update_resource")
    _relies(loggers.resource.attributes["veil.seam"] == "updated", "LoggerProvider._update_resource")
    _relies(logger.resource.attributes["veil.seam"] == "updated", "LoggerProvider._update_resource (loggers)")
    assert _sdk.resource_updater(object()) is None


def test_resource_attribute_storage_is_what_attributes_read() -> None:
    resource = Resource({PROCESS_PID: 1, "service.name": "seam"})
    storage = _sdk.resource_attribute_storage(resource)
    _relies(isinstance(storage, dict), "Resource._attributes._dict (the dict behind BoundedAttributes)")
    assert storage is not None
    storage[PROCESS_PID] = os.getpid()
    _relies(resource.attributes[PROCESS_PID] == os.getpid(), "Resource.attributes reading _attributes._dict")
    assert _sdk.resource_attribute_storage(object()) is None  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- trace state


def test_set_trace_state_members_is_what_every_trace_state_method_reads() -> None:
    state = TraceState()
    _relies(isinstance(getattr(state, "_dict", None), dict), "TraceState._dict")
    _sdk.set_trace_state_members(state, {"b": "2", "a": "1"})
    _relies(list(state.items()) == [("b", "2"), ("a", "1")], "TraceState.items() reading _dict")
    _relies(len(state) == 2 and "a" in state and state["b"] == "2", "TraceState's Mapping methods reading _dict")
    _relies(state.to_header() == "b=2,a=1", "TraceState.to_header() reading _dict")
    _relies(state.delete("b").to_header() == "a=1", "TraceState.delete() reading _dict")


# ------------------------------------------------------------------------------------------------ metrics


def test_exemplar_takes_its_five_fields_in_order() -> None:
    exemplar = _sdk.Exemplar({"k": "v"}, 1.5, 10, 2, 3)
    _relies(
        (exemplar.filtered_attributes, exemplar.value, exemplar.time_unix_nano, exemplar.span_id, exemplar.trace_id)
        == ({"k": "v"}, 1.5, 10, 2, 3),
        "opentelemetry.sdk.metrics._internal.exemplar.Exemplar's fields",
    )


class _Preferring(MetricExporter):
    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
        raise NotImplementedError

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


def test_preferences_are_those_an_exporter_was_built_with() -> None:
    temporality = {Histogram: AggregationTemporality.DELTA}
    aggregation = {Histogram: ExplicitBucketHistogramAggregation((1.0, 2.0))}
    exporter = _Preferring(preferred_temporality=temporality, preferred_aggregation=aggregation)
    _relies(_sdk.preferred_temporality(exporter) is temporality, "MetricExporter._preferred_temporality")
    _relies(_sdk.preferred_aggregation(exporter) is aggregation, "MetricExporter._preferred_aggregation")
    assert _sdk.preferred_temporality(_Preferring()) is None
    assert _sdk.preferred_aggregation(_Preferring()) is None
    assert _sdk.preferred_temporality(object()) is None


def test_meter_and_provider_internals() -> None:
    delta = InMemoryMetricReader(preferred_temporality={Histogram: AggregationTemporality.DELTA})
    bounded = InMemoryMetricReader(preferred_aggregation={Histogram: ExplicitBucketHistogramAggregation((1.0, 5.0))})
    provider = MeterProvider(metric_readers=[delta, bounded], resource=Resource({"veil.seam": "meters"}))
    meter = provider.get_meter("seam", "1.0")
    scope = _sdk.meter_scope(meter)
    _relies((scope.name, scope.version) == ("seam", "1.0"), "Meter._instrumentation_scope")
    _relies(_sdk.meter_enabled(meter) is True, "Meter._is_enabled()")
    consumer = _sdk.measurement_consumer(meter)
    _relies(consumer is _sdk.measurement_consumer(provider.get_meter("other")), "Meter._measurement_consumer (shared)")
    consumer.veil_seam_probe = 1  # veil keeps its histogram state on the consumer
    config = _sdk.consumer_config(consumer)
    _relies(config.resource.attributes["veil.seam"] == "meters", "SynchronousMeasurementConsumer._sdk_config.resource")
    _relies(config.views == () or list(config.views) == [], "SdkConfiguration.views")
    _relies(hasattr(config, "exemplar_filter"), "SdkConfiguration.exemplar_filter")
    _relies(_sdk.consumer_readers(consumer) == [delta, bounded], "SynchronousMeasurementConsumer._reader_storages")
    _relies(_sdk.histogram_temporality(delta) is AggregationTemporality.DELTA, "_instrument_class_temporality")
    _relies(_sdk.histogram_temporality(bounded) is AggregationTemporality.CUMULATIVE, "_instrument_class_temporality")
    aggregation = _sdk.histogram_aggregation(bounded)
    _relies(isinstance(aggregation, ExplicitBucketHistogramAggregation), "MetricReader._instrument_class_aggregation")
    assert isinstance(aggregation, ExplicitBucketHistogramAggregation)
    _relies(not _sdk.bucket_aggregation_is_default(aggregation), "ExplicitBucketHistogramAggregation._boundaries")
    _relies(
        _sdk.bucket_aggregation_is_default(ExplicitBucketHistogramAggregation()),
        "ExplicitBucketHistogramAggregation._boundaries/_record_min_max defaults",
    )
    _relies(
        not _sdk.bucket_aggregation_is_default(ExplicitBucketHistogramAggregation(record_min_max=False)),
        "ExplicitBucketHistogramAggregation._record_min_max",
    )
    provider.shutdown()


def test_reader_collect_callback_is_what_collect_calls() -> None:
    reader = InMemoryMetricReader()
    _relies(_sdk.reader_collect(reader) is None, "MetricReader._collect (None before registration)")
    provider = MeterProvider(metric_readers=[reader])
    original = _sdk.reader_collect(reader)
    _relies(callable(original), "MetricReader._collect (set by the MeterProvider)")
    assert original is not None
    calls: list[object] = []

    def wrapped(metric_reader: object, timeout_millis: float = 10_000) -> Any:
        calls.append(metric_reader)
        return original(metric_reader, timeout_millis=timeout_millis)

    _sdk.set_reader_collect(reader, wrapped)
    provider.get_meter("seam").create_counter("seam.count").add(3)
    data = reader.get_metrics_data()
    _relies(calls == [reader], "MetricReader._set_collect_callback (what collect() calls)")
    assert data is not None
    assert data.resource_metrics[0].scope_metrics[0].metrics[0].name == "seam.count"
    provider.shutdown()


def test_prometheus_reader_internals() -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    class Reader(PrometheusMetricReader):
        def _receive_metrics(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> None:
            _sdk.prometheus_receiver(self)(metrics_data, timeout_millis=timeout_millis)

    registry = CollectorRegistry(auto_describe=False)
    reader = Reader(registry=registry)
    collector = _sdk.prometheus_collector(reader)
    _relies(callable(getattr(collector, "collect", None)), "PrometheusMetricReader._collector")
    provider = MeterProvider(metric_readers=[reader], resource=Resource({"service.name": "seam"}))
    provider.get_meter("seam").create_counter("seam_requests").add(2)
    names = {family.name for family in collector.collect()}
    _relies("seam_requests" in names, "PrometheusMetricReader._receive_metrics feeding its _collector")
    _relies(getattr(collector, "_target_info", None) is not None, "_CustomCollector._target_info (cached on a scrape)")
    _sdk.forget_prometheus_target_info(collector)
    _relies(collector._target_info is None, "_CustomCollector._target_info")
    _relies("target" in {family.name for family in collector.collect()}, "_CustomCollector rebuilding target_info")
    _sdk.forget_prometheus_target_info(object())  # no such cache: nothing happens
    provider.shutdown()


# ------------------------------------------------------------------------------------------ OTLP exporters


def test_sdk_internal_export_loggers_are_the_modules_loggers() -> None:
    for name in _sdk.SDK_INTERNAL_EXPORT_LOGGERS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            pytest.fail(f"the installed OpenTelemetry SDK has no module {name} (veil._sdk relies on it)")
        loggers = [value for value in vars(module).values() if isinstance(value, logging.Logger)]
        _relies(any(logger.name == name for logger in loggers), f"{name} logging through getLogger(__name__)")


def test_http_exporter_shutdown_event() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    exporter = OTLPSpanExporter("http://127.0.0.1:9/v1/traces")
    events = _sdk.exporter_shutdown_events(exporter)
    _relies(len(events) == 1, "OTLPSpanExporter (HTTP)._client._shutdown_event")
    assert not events[0].is_set()
    exporter.shutdown()
    _relies(events[0].is_set(), "_OTLPHTTPClient._shutdown_event being set by shutdown()")


def test_shutdown_events_are_threading_events() -> None:
    class Holder:
        def __init__(self) -> None:
            self._shutdown_in_progress = threading.Event()

    holder = Holder()
    assert _sdk.exporter_shutdown_events(holder) == [holder._shutdown_in_progress]


class _Unavailable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"

    def trailing_metadata(self) -> tuple[()]:
        return ()


class _FakeStub:
    def __init__(self, stub: object, fail: bool) -> None:
        self.stub = stub
        self.fail = fail
        self.calls = 0

    def Export(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fail:
            raise _Unavailable()
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        return ExportTraceServiceResponse()


def _finished_span() -> Any:
    provider = TracerProvider()
    span = provider.get_tracer("seam").start_span("seam")
    span.end()
    return span


@pytest.mark.parametrize("fail", [False, True])
def test_grpc_exporter_wrapping_stub(fail: bool) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    connects: list[object] = []
    stubs: list[_FakeStub] = []

    def wrap(stub: object) -> _FakeStub:
        stubs.append(_FakeStub(stub, fail))
        return stubs[-1]

    subclass = _sdk.grpc_exporter_wrapping_stub(OTLPSpanExporter, connects.append, wrap)
    _relies(subclass is not OTLPSpanExporter, "OTLPExporterMixin._initialize_channel_and_stub")
    assert subclass.__name__ == "ReadingOTLPSpanExporter"
    exporter = subclass("127.0.0.1:9", insecure=True, timeout=0.3)
    _relies(connects == [exporter] and len(stubs) == 1, "_initialize_channel_and_stub called in __init__")
    _relies(_sdk.grpc_stub(exporter) is stubs[0], "OTLPExporterMixin._client (the stub)")
    events = _sdk.exporter_shutdown_events(exporter)
    _relies(len(events) == 1, "OTLPExporterMixin._shutdown_in_progress")
    result = exporter.export([_finished_span()])
    _relies(stubs[0].calls == 1, "the gRPC exporter calling _client.Export")
    if fail:
        # UNAVAILABLE: the SDK reconnects through the hook once, then gives up (its backoff exceeds the timeout)
        assert result is SpanExportResult.FAILURE
        _relies(connects == [exporter, exporter], "_initialize_channel_and_stub called again on UNAVAILABLE")
        _relies(_sdk.grpc_stub(exporter) is stubs[1], "the reconnect replacing _client")
    else:
        assert result is SpanExportResult.SUCCESS
    exporter.shutdown()
    _relies(events[0].is_set(), "_shutdown_in_progress being set by shutdown()")


def test_grpc_exporter_wrapping_stub_without_the_hook() -> None:
    class Plain:
        pass

    assert _sdk.grpc_exporter_wrapping_stub(Plain, lambda exporter: None, lambda stub: stub) is Plain
    assert _sdk.grpc_stub(Plain()) is None
    assert _sdk.exporter_shutdown_events(Plain()) == []


# ----------------------------------------------------------------------------- nothing else uses private names

ALLOWED_PRIVATE_MODULES = (
    "opentelemetry.semconv._incubating",
    "opentelemetry._logs",
    "opentelemetry.sdk._logs",
    "opentelemetry.exporter.otlp.proto.grpc._log_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
)
"""Underscored modules allowed everywhere (veil._sdk's docstring says why); their own private parts are not."""


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _private_module(dotted: str) -> bool:
    """Whether an `opentelemetry.*` module path has a private part outside the allowed prefixes."""
    for allowed in ALLOWED_PRIVATE_MODULES:
        if dotted == allowed or dotted.startswith(allowed + "."):
            dotted = dotted[len(allowed) :]
            break
    return any(_private(part) for part in dotted.split("."))


def _defined_private_names(tree: ast.AST, *, skip_class: Any = None, own_attributes_only: bool = False) -> set[str]:
    """Private names a module defines: functions, classes, module- and class-level variables, attributes it stores
    (`holder._x = ...`; only `self._x`/`cls._x` with `own_attributes_only`) and `__slots__` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if skip_class is not None and skip_class(node):
            continue
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            if not own_attributes_only or (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                names.add(node.attr)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(target.id for target in targets if isinstance(target, ast.Name))
            slots = any(isinstance(target, ast.Name) and target.id == "__slots__" for target in targets)
            if slots and node.value is not None:
                names.update(
                    element.value
                    for element in ast.walk(node.value)
                    if isinstance(element, ast.Constant) and isinstance(element.value, str)
                )
    return {name for name in names if _private(name)}


@cache
def _opentelemetry_private_names() -> frozenset[str]:
    """Every private name the installed `opentelemetry.*` packages define (read from their source)."""
    import opentelemetry

    names: set[str] = set()
    for root in opentelemetry.__path__:
        for path in pathlib.Path(root).rglob("*.py"):
            try:
                names |= _defined_private_names(ast.parse(path.read_text(encoding="utf-8")))
            except (SyntaxError, UnicodeDecodeError):
                continue
    return frozenset(names)


def _does_nothing(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether a function's body is only a docstring, `pass` or `...`."""
    return all(
        isinstance(statement, ast.Pass)
        or (isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant))
        for statement in function.body
    )


@cache
def _class_private_names(cls: type) -> tuple[set[str], set[str]]:
    """The private names an OpenTelemetry class defines or stores on self, and those of its methods that are
    hooks for subclasses to override: abstract, or doing nothing (only a docstring, `pass` or `...`)."""
    names = {name for name in vars(cls) if _private(name)}
    hooks = {name for name in names if getattr(vars(cls)[name], "__isabstractmethod__", False)}
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return names, hooks
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
            if _private(node.attr):
                names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _private(node.name) and _does_nothing(node):
            hooks.add(node.name)
    return names, hooks


def _imported(tree: ast.AST) -> dict[str, str]:
    """Local name -> dotted origin of every `import` / `from ... import` in a module."""
    origins: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                origins[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:  # import a.b as c: c is a.b
                    origins[alias.asname] = alias.name
                else:  # import a.b: binds a
                    top = alias.name.split(".")[0]
                    origins[top] = top
    return origins


def _resolve(expression: ast.expr, origins: dict[str, str]) -> object:
    """The object a base-class expression names, when it comes from an importable module."""
    dotted = ast.unparse(expression)
    head, _, rest = dotted.partition(".")
    if head not in origins:
        return None
    path = origins[head] + (f".{rest}" if rest else "")
    module_name, _, attribute = path.rpartition(".")
    while module_name:
        try:
            target: object = importlib.import_module(module_name)
        except ImportError:
            module_name, _, more = module_name.rpartition(".")
            attribute = f"{more}.{attribute}"
            continue
        for part in attribute.split("."):
            target = getattr(target, part, None)
        return target
    return None


def _opentelemetry_bases(node: ast.ClassDef, origins: dict[str, str]) -> list[type]:
    classes: list[type] = []
    for base in node.bases:
        resolved = _resolve(base, origins)
        if isinstance(resolved, type):
            classes.extend(k for k in resolved.__mro__ if k.__module__.startswith("opentelemetry"))
    return classes


def private_opentelemetry_uses(source: str) -> list[str]:
    """Each use of a private OpenTelemetry name in a module's source, as `line: what`.

    - importing an `opentelemetry.*` module or name with a private part (outside ALLOWED_PRIVATE_MODULES);
    - a string naming such a module (a logger name, say);
    - `x._name`, `getattr(x, "_name")` (and setattr/hasattr/delattr) where `_name` is a private name the installed
      OpenTelemetry packages define, and `x` is an imported OpenTelemetry module or class, or `x` is not imported
      and this module does not define `_name` for its own classes (without types, a name both define cannot be
      told apart); `self`/`cls` in veil's own classes are veil's, imported non-OpenTelemetry modules are not ours;
    - in a class derived from an OpenTelemetry class: `self._name`, `super()._name` or a method `_name` where
      the OpenTelemetry class defines `_name`, unless the method overrides a hook (an abstract or do-nothing method:
      the documented way to write an instrumentor, a distro or a metric reader).
    """
    tree = ast.parse(source)
    origins = _imported(tree)
    otel_private = _opentelemetry_private_names()
    found: list[str] = []

    derived: dict[ast.ClassDef, tuple[set[str], set[str]]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            bases = _opentelemetry_bases(node, origins)
            if bases:
                names: set[str] = set()
                abstract: set[str] = set()
                for base in bases:
                    base_names, base_abstract = _class_private_names(base)
                    names |= base_names
                    abstract |= base_abstract
                derived[node] = (names, abstract)
    inside_derived = {id(child) for node in derived for child in ast.walk(node)}
    own = _defined_private_names(tree, skip_class=lambda node: id(node) in inside_derived, own_attributes_only=True)
    for node, (base_names, _hooks) in derived.items():  # what a derived class adds is its own
        own |= _defined_private_names(node, own_attributes_only=True) - base_names

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "opentelemetry":
            for alias in node.names:
                if _private_module(node.module) or _private_module(f"{node.module}.{alias.name}"):
                    report(node, f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "opentelemetry" and _private_module(alias.name):
                    report(node, f"import {alias.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            dotted = text.startswith("opentelemetry.") and all(part.isidentifier() for part in text.split("."))
            if dotted and _private_module(text):
                report(node, repr(text))

    def receiver_is_own(receiver: ast.expr, method_of: ast.ClassDef | None) -> bool:
        return (
            method_of is not None
            and method_of not in derived
            and isinstance(receiver, ast.Name)
            and receiver.id in ("self", "cls")
        )

    def visit(node: ast.AST, method_of: ast.ClassDef | None, cls: ast.ClassDef | None) -> None:
        if isinstance(node, ast.ClassDef):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    if node in derived and _private(child.name):
                        names, abstract = derived[node]
                        if child.name in names and child.name not in abstract:
                            report(child, f"overrides {child.name} of an OpenTelemetry class")
                    visit(child, node, node)
                else:
                    visit(child, None, node)
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for child in ast.iter_child_nodes(node):
                visit(child, method_of, cls)
            return
        name: str | None = None
        receiver: ast.expr | None = None
        if isinstance(node, ast.Attribute) and _private(node.attr):
            name, receiver = node.attr, node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("getattr", "setattr", "hasattr", "delattr")
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _private(node.args[1].value)
        ):
            name, receiver = node.args[1].value, node.args[0]
        if name is not None and receiver is not None:
            in_derived = cls in derived and (
                (isinstance(receiver, ast.Name) and receiver.id in ("self", "cls"))
                or (isinstance(receiver, ast.Call) and ast.unparse(receiver.func) == "super")
            )
            if in_derived:
                assert cls is not None
                if name in derived[cls][0]:
                    report(node, f"{ast.unparse(node)} (a private name of an OpenTelemetry base class)")
            elif not receiver_is_own(receiver, method_of) and name in otel_private:
                origin = origins.get(receiver.id, "") if isinstance(receiver, ast.Name) else ""
                if origin.split(".")[0] == "opentelemetry" or (not origin and name not in own):
                    report(node, f"{ast.unparse(node)} (a private OpenTelemetry name)")
        for child in ast.iter_child_nodes(node):
            visit(child, method_of, cls)

    visit(tree, None, None)
    return found


def test_no_module_but_the_seam_uses_a_private_opentelemetry_name() -> None:
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SEAM:
            continue
        for use in private_opentelemetry_uses(path.read_text(encoding="utf-8")):
            offenders.append(f"{path.relative_to(SRC.parent)}:{use}")
    assert not offenders, "private OpenTelemetry names used outside veil/_sdk.py (route them through it):\n" + (
        "\n".join(offenders)
    )


def test_the_seam_itself_is_what_the_scan_would_flag() -> None:
    # the seam is exempt, not invisible: the scan finds its private uses (so it would find them elsewhere)
    uses = "\n".join(private_opentelemetry_uses(SEAM.read_text(encoding="utf-8")))
    for expected in (
        "_internal.instrument import _Histogram",
        "_SUPPRESS_INSTRUMENTATION_KEY",
        "_set_collect_callback",
    ):
        assert expected in uses


_OFFENDING = """
import opentelemetry.sdk.metrics._internal.export
from opentelemetry.sdk.metrics._internal.instrument import Histogram
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry import context
from opentelemetry.trace.span import TraceState
from opentelemetry.sdk.metrics.export import MetricReader

LOGGERS = ("opentelemetry.sdk._shared_internal",)

def collect(reader):
    return reader._collect, getattr(reader, "_preferred_temporality", None), context._RUNTIME_CONTEXT

class State(TraceState):
    def add(self, key, value):
        return self._dict

class Reader(MetricReader):
    def _receive_metrics(self, data, timeout_millis=0, **kwargs):  # abstract: the documented hook
        return None

    def _set_collect_callback(self, func):
        return super()._set_collect_callback(func)
"""

_CLEAN = """
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_URL
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.sdk.metrics.export import MetricReader

NAME = "opentelemetry.sdk._logs.export"

class Cache:
    def __init__(self):
        self._lock = None
        self._collect = None

    def reset(self, other):
        other._lock = None
        return self._collect, other._collect

class Reader(MetricReader):
    def _receive_metrics(self, data, timeout_millis=0, **kwargs):
        self._mine = data
"""


def test_the_scan_flags_each_kind_of_private_use() -> None:
    found = "\n".join(private_opentelemetry_uses(_OFFENDING))
    for expected in (
        "2: import opentelemetry.sdk.metrics._internal.export",
        "3: from opentelemetry.sdk.metrics._internal.instrument import Histogram",
        "4: from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY",
        "9: 'opentelemetry.sdk._shared_internal'",
        "12: reader._collect",
        "12: getattr(reader, '_preferred_temporality', None)",
        "12: context._RUNTIME_CONTEXT",
        "16: self._dict (a private name of an OpenTelemetry base class)",
        "22: overrides _set_collect_callback",
        "23: super()._set_collect_callback",
    ):
        assert expected in found, f"{expected!r} not in\n{found}"
    assert "_receive_metrics" not in found


def test_the_scan_passes_allowed_modules_and_a_modules_own_names() -> None:
    assert private_opentelemetry_uses(_CLEAN) == []
    assert private_opentelemetry_uses("import threading\nthreading._shutdown\n") == []  # not OpenTelemetry's


def test_scan_reads_code_not_comments() -> None:
    assert private_opentelemetry_uses("# reader._collect, opentelemetry.sdk._shared_internal\nx = 1\n") == []


# ----------------------------------------------------------------------------------------- version range

ROOT = SRC.parent.parent


def _nox_sdk_versions() -> tuple[str, ...]:
    tree = ast.parse((ROOT / "noxfile.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "SDK_VERSIONS" for target in node.targets
        ):
            versions: tuple[str, ...] = ast.literal_eval(node.value)
            return versions
    pytest.fail("noxfile.py defines no SDK_VERSIONS")


def test_nox_sdk_session_runs_the_ends_of_the_allowed_range() -> None:
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    oldest, *_, newest = _nox_sdk_versions()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        if requirement.name not in ("opentelemetry-api", "opentelemetry-sdk") and not requirement.name.startswith(
            "opentelemetry-exporter-otlp"
        ):
            continue
        floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        assert floors == [oldest], f"{requirement}: nox -s sdk tests {oldest} as the oldest"
        assert Version(newest) in requirement.specifier, f"{requirement}: nox -s sdk tests {newest} as the newest"
        assert any(spec.operator == "<" for spec in requirement.specifier), f"{requirement}: no upper bound"


def test_installed_sdk_is_in_the_declared_range() -> None:
    """The suite runs on an SDK pyproject.toml allows (a later patch release of the allowed minor is checked by
    the seam tests above as it is installed; nox -s sdk pins the two ends)."""
    tomllib = pytest.importorskip("tomllib")
    from importlib.metadata import version

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    (declared,) = [
        Requirement(line) for line in project["dependencies"] if Requirement(line).name == "opentelemetry-sdk"
    ]
    installed = version("opentelemetry-sdk")
    assert declared.specifier.contains(installed), f"opentelemetry-sdk {installed} is outside {declared.specifier}"
