"""The exporter registry: the names Settings accepts, what each name builds, how it is named and described."""

from __future__ import annotations

import pytest
from opentelemetry.sdk._logs.export import LogRecordExporter
from opentelemetry.sdk.metrics.export import MetricExporter
from opentelemetry.sdk.trace.export import SpanExporter

from veil import _exporters, settings
from veil._exporters import EXPORTER_NAMES, LOGS, METRICS, SIGNALS, TRACES, Exporter, PullReader
from veil.errors import ConfigurationError
from veil.settings import Settings

_VARIABLES = {"traces": "OTEL_TRACES_EXPORTER", "metrics": "OTEL_METRICS_EXPORTER", "logs": "OTEL_LOGS_EXPORTER"}


def test_settings_accept_the_registered_names_and_none_in_documentation_order() -> None:
    assert EXPORTER_NAMES == {
        "traces": ("otlp", "jaeger", "zipkin", "console", "none"),
        "metrics": ("otlp", "jaeger", "prometheus", "console", "none"),
        "logs": ("otlp", "jaeger", "console", "none"),
    }
    assert settings.TRACES_EXPORTERS is EXPORTER_NAMES["traces"]
    assert settings.METRICS_EXPORTERS is EXPORTER_NAMES["metrics"]
    assert settings.LOGS_EXPORTERS is EXPORTER_NAMES["logs"]
    for signal, registry in zip(SIGNALS, (TRACES, METRICS, LOGS), strict=True):
        for name in registry:
            loaded = Settings.load(environ={_VARIABLES[signal]: name})
            assert loaded.exporters(signal) == (name,)


@pytest.mark.parametrize(
    ("variable", "value", "closest"),
    [
        ("OTEL_METRICS_EXPORTER", "prometeus", "prometheus"),
        ("OTEL_TRACES_EXPORTER", "otlp,zipkn", "zipkin"),
        ("OTEL_LOGS_EXPORTER", "consol", "console"),
    ],
)
def test_a_name_the_registry_lacks_is_refused_with_the_closest_registered_one(
    variable: str, value: str, closest: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(environ={variable: value})
    assert caught.value.variable == variable
    assert caught.value.closest == closest
    assert str(caught.value).endswith(f"did you mean {closest!r}?")


def test_a_zipkin_name_for_logs_is_refused() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown name 'zipkin'"):
        Settings.load(environ={"OTEL_LOGS_EXPORTER": "zipkin"})


def test_every_pushed_exporter_builds_the_kind_of_its_signal() -> None:
    configured = Settings.load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    kinds: dict[str, type] = {"traces": SpanExporter, "metrics": MetricExporter, "logs": LogRecordExporter}
    for signal, registry in zip(SIGNALS, (TRACES, METRICS, LOGS), strict=True):
        for name, entry in registry.items():
            if isinstance(entry, PullReader):
                continue
            built = entry.build(configured)
            try:
                assert isinstance(built, kinds[signal]), (signal, name, built)
            finally:
                built.shutdown()


def test_prometheus_is_the_one_pull_reader() -> None:
    pulled = [name for name, entry in METRICS.items() if isinstance(entry, PullReader)]
    assert pulled == ["prometheus"]
    assert all(isinstance(entry, Exporter) for registry in (TRACES, LOGS) for entry in registry.values())


def test_only_console_spans_skip_the_batch() -> None:
    unbatched = [
        (signal, name)
        for signal, registry in zip(SIGNALS, (TRACES, METRICS, LOGS), strict=True)
        for name, entry in registry.items()
        if isinstance(entry, Exporter) and not entry.batched
    ]
    assert unbatched == [("traces", "console")]


def test_describe_names_each_exporter_and_where_it_sends_with_credentials_masked() -> None:
    configured = Settings.load(
        environ={
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://user:secret@collector:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=hunter2",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc",
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT": "http://zipkin:9411/api/v2/spans?token=abc",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "9464",
            "VEIL_PROMETHEUS_WORKER_PORTS": "4",
        }
    )
    describe = _exporters.describe
    assert describe(configured, "traces", "otlp") == (
        "otlp (http/protobuf) -> http://****@collector:4318/v1/traces, headers: api-key=****"
    )
    assert describe(configured, "metrics", "jaeger") == (
        "jaeger (grpc) -> http://****@collector:4318, headers: api-key=****"
    )
    assert describe(configured, "traces", "zipkin") == "zipkin (v2 JSON) -> http://zipkin:9411/api/v2/spans?token=****"
    assert describe(configured, "metrics", "prometheus") == (
        "prometheus (scrape endpoint) <- http://localhost:9464-9467/metrics"
    )
    assert describe(configured, "logs", "console") == "console"


def test_component_types_follow_the_semantic_conventions_or_name_veils_own() -> None:
    configured = Settings.load(environ={"OTEL_EXPORTER_OTLP_LOGS_PROTOCOL": "grpc"})
    component_type = _exporters.component_type
    assert component_type(configured, "traces", "otlp") == "otlp_http_span_exporter"
    assert component_type(configured, "metrics", "jaeger") == "otlp_http_metric_exporter"
    assert component_type(configured, "logs", "otlp") == "otlp_grpc_log_exporter"
    assert component_type(configured, "traces", "zipkin") == "zipkin_http_span_exporter"
    assert component_type(configured, "traces", "console") == "veil_console_traces_exporter"
    assert component_type(configured, "metrics", "console") == "veil_console_metrics_exporter"
