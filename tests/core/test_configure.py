"""veil.configure() end to end: real exporters to the real OTLP receiver, resource, idempotence, errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from opentelemetry import metrics, propagate, trace
from opentelemetry._logs import LogRecord, get_logger_provider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, StatusCode

import veil
from tests.fixtures.otlp import OTLPReceiver
from tests.fixtures.zipkin import ZipkinReceiver
from veil.errors import ConfigurationError

ROOT = Path(__file__).resolve().parents[2]
Configure = Callable[..., veil.Telemetry]


def _endpoint(receiver: OTLPReceiver, protocol: str) -> str:
    return receiver.grpc_endpoint if protocol == "grpc" else receiver.http_endpoint


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_traces_metrics_and_logs_reach_the_receiver(
    configure_veil: Configure, otlp_receiver: OTLPReceiver, protocol: str
) -> None:
    handle = configure_veil(
        service_name="checkout",
        service_version="2.1.0",
        environment="staging",
        otlp_endpoint=_endpoint(otlp_receiver, protocol),
        otlp_protocol=protocol,
        otlp_compression="gzip",
        resource_attributes={"team": "payments"},
    )
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("GET /orders/{id}", kind=SpanKind.SERVER) as parent:
        parent.set_attribute("http.response.status_code", 200)
        parent.set_attribute("flags", (True, False))
        with tracer.start_as_current_span("lookup") as child:
            child.add_event("cache-miss", {"attempt": 2})
            child.set_status(StatusCode.ERROR, "not found")
            get_logger_provider().get_logger("tests").emit(LogRecord(body="looked up", severity_text="INFO"))
    metrics.get_meter("tests").create_counter("orders", unit="{order}").add(3, {"route": "/orders"})
    assert handle.force_flush(5000)

    spans = {span.name: span for span in otlp_receiver.wait_for_spans(2, timeout=10)}
    server, child = spans["GET /orders/{id}"], spans["lookup"]
    assert server.kind == "SERVER" and child.kind == "INTERNAL"
    assert child.parent_span_id == server.span_id and child.trace_id == server.trace_id
    assert server.parent_span_id == ""
    assert server.attributes == {"http.response.status_code": 200, "flags": (True, False)}
    assert child.status_code == "ERROR" and child.status_message == "not found"
    assert [(event.name, event.attributes) for event in child.events] == [("cache-miss", {"attempt": 2})]
    expected_transport = "grpc" if protocol == "grpc" else "http"
    assert {span.transport for span in spans.values()} == {expected_transport}
    resource = server.resource
    assert resource["service.name"] == "checkout"
    assert resource["service.version"] == "2.1.0"
    assert resource["deployment.environment.name"] == "staging"
    assert resource["team"] == "payments"
    assert resource["telemetry.distro.name"] == "veil"
    assert resource["telemetry.distro.version"] == veil.__version__
    assert resource["process.pid"] == os.getpid()
    assert "host.name" in resource and "process.runtime.version" in resource

    (log,) = otlp_receiver.wait_for_logs(1, timeout=10)
    assert log.body == "looked up"
    assert (log.trace_id, log.span_id) == (child.trace_id, child.span_id)
    metric = otlp_receiver.wait_for_metric("orders", timeout=10)
    assert metric.kind == "sum" and metric.unit == "{order}"
    assert [(point.attributes, point.value) for point in metric.points] == [({"route": "/orders"}, 3)]


def test_per_signal_endpoint_and_headers(configure_veil: Configure, otlp_receiver: OTLPReceiver) -> None:
    configure_veil(
        traces_exporter="otlp",
        otlp_traces_endpoint=otlp_receiver.http_url("traces"),
        otlp_headers={"x-api-key": "k1"},
        otlp_traces_headers={"x-team": "t"},
    )
    with trace.get_tracer("tests").start_as_current_span("one"):
        pass
    veil.telemetry.installed().force_flush(5000)  # type: ignore[union-attr]
    otlp_receiver.wait_for_spans(1)
    (request,) = otlp_receiver.requests("traces")
    # The per-signal headers replace the general ones (as the OTLP exporter specification says): a key
    # meant for one backend never travels to another.
    assert request.header("x-team") == "t"
    assert request.header("x-api-key") is None


def test_second_call_returns_the_same_handle_and_force_replaces_it(
    configure_veil: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    first = configure_veil(traces_exporter="none")
    with caplog.at_level(logging.WARNING, logger="veil"):
        again = veil.configure(traces_exporter="none")
    assert again is first
    assert "already called" in caplog.text
    replaced = configure_veil(service_name="other", traces_exporter="none")
    assert replaced is not first
    assert trace.get_tracer_provider() is replaced.tracer_provider


def test_invalid_configuration_installs_nothing(configure_veil: Configure) -> None:
    good = configure_veil(traces_exporter="none", propagators="b3")
    provider_before = trace.get_tracer_provider()
    with pytest.raises(ConfigurationError, match="OTEL_TRACES_SAMPLER_ARG"):
        veil.configure(force=True, traces_sampler="traceidratio", traces_sampler_arg=7)
    assert trace.get_tracer_provider() is provider_before
    assert veil.telemetry.installed() is good
    assert propagate.get_global_textmap() is good.propagator


def test_sdk_disabled_installs_nothing(configure_veil: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    handle = configure_veil()
    assert not handle.enabled
    assert not isinstance(trace.get_tracer_provider(), TracerProvider) or (
        trace.get_tracer_provider() is not handle.tracer_provider
    )


def test_ratio_sampler_zero_records_nothing(configure_veil: Configure, otlp_receiver: OTLPReceiver) -> None:
    configure_veil(
        traces_exporter="otlp",
        otlp_endpoint=otlp_receiver.http_endpoint,
        traces_sampler="traceidratio",
        traces_sampler_arg=0.0,
    )
    with trace.get_tracer("tests").start_as_current_span("dropped") as span:
        assert not span.is_recording()


def test_configured_propagators_are_global(configure_veil: Configure) -> None:
    configure_veil(traces_exporter="none", propagators="tracecontext,b3multi")
    assert {"traceparent", "x-b3-traceid"} <= set(propagate.get_global_textmap().fields)


def test_console_exporter_is_the_development_default(
    configure_veil: Configure, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in list(os.environ):
        if variable.startswith("OTEL_EXPORTER_OTLP") or variable.endswith("_EXPORTER"):
            monkeypatch.delenv(variable)
    handle = configure_veil(service_name="dev")
    with trace.get_tracer("tests").start_as_current_span("hello-console"):
        pass
    handle.force_flush(2000)
    assert "hello-console" in capsys.readouterr().err


def _run_python(code: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_spans_are_flushed_at_exit_and_forked_children_export_their_own(otlp_receiver: OTLPReceiver) -> None:
    code = """
        import os, veil
        from opentelemetry import trace
        veil.configure(auto_instrument=False)
        tracer = trace.get_tracer("fork-test")
        with tracer.start_as_current_span("parent-before-fork"):
            pass
        pid = os.fork()
        if pid == 0:
            with tracer.start_as_current_span("in-child") as span:
                span.set_attribute("pid", os.getpid())
            veil.telemetry.installed().force_flush(5000)
            os._exit(0)
        os.waitpid(pid, 0)
        with tracer.start_as_current_span("parent-after-fork"):
            pass
        # no explicit flush: the at-exit hook must export what is queued
    """
    env = {
        "OTEL_SERVICE_NAME": "forking",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.grpc_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_BSP_SCHEDULE_DELAY": "60000",
    }
    result = _run_python(code, env)
    assert result.returncode == 0, result.stderr
    spans = otlp_receiver.wait_for_spans(3, timeout=10)
    names = sorted(span.name for span in spans)
    assert names == ["in-child", "parent-after-fork", "parent-before-fork"], names
    child = next(span for span in spans if span.name == "in-child")
    parent = next(span for span in spans if span.name == "parent-after-fork")
    assert child.resource["process.pid"] == child.attributes["pid"]
    assert parent.resource["process.pid"] != child.resource["process.pid"]


def test_exit_is_bounded_when_the_collector_is_unreachable() -> None:
    code = """
        import time, veil
        from opentelemetry import trace
        veil.configure(auto_instrument=False)
        for index in range(50):
            with trace.get_tracer("t").start_as_current_span(f"s{index}"):
                pass
        start = time.monotonic()
    """
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9",
        "OTEL_TRACES_EXPORTER": "otlp",
        "VEIL_SHUTDOWN_TIMEOUT": "1500",
    }
    result = _run_python(code, env, timeout=30)
    assert result.returncode == 0, result.stderr
    # The SDK exporter alone retries for tens of seconds; a refused connection now fails the exit flush at once
    # (tests/resilience/test_dead_collector_exit.py), well inside the bound, and the loss is reported.
    assert "shutdown did not finish" not in result.stderr, result.stderr
    assert "spans: 50 failed after retries" in result.stderr, result.stderr


def test_zipkin_exporter_by_name(configure_veil: Configure, zipkin_receiver: ZipkinReceiver) -> None:
    handle = configure_veil(service_name="Zipkin-Svc", traces_exporter="zipkin", zipkin_endpoint=zipkin_receiver.url)
    with trace.get_tracer("tests").start_as_current_span("to-zipkin", kind=SpanKind.CLIENT):
        pass
    handle.force_flush(5000)
    zipkin_receiver.wait_for_requests(1, timeout=10)
    (span,) = zipkin_receiver.spans()
    assert span["name"] == "to-zipkin" and span["kind"] == "CLIENT"
    assert span["localEndpoint"]["serviceName"] == "zipkin-svc"


def test_jaeger_exporter_is_otlp_to_the_configured_endpoint(
    configure_veil: Configure, otlp_receiver: OTLPReceiver
) -> None:
    handle = configure_veil(traces_exporter="jaeger", otlp_endpoint=otlp_receiver.grpc_endpoint, otlp_protocol="grpc")
    with trace.get_tracer("tests").start_as_current_span("to-jaeger"):
        pass
    handle.force_flush(5000)
    (span,) = otlp_receiver.wait_for_spans(1, timeout=10)
    assert span.name == "to-jaeger" and span.transport == "grpc"


def test_an_unknown_propagator_in_the_environment_is_a_configuration_error_not_an_import_crash() -> None:
    code = """
        import veil
        try:
            veil.configure()
        except veil.ConfigurationError as error:
            print("clear error:", error)
    """
    result = _run_python(code, {"OTEL_PROPAGATORS": "tracecontext,w3c"})
    assert result.returncode == 0, result.stderr
    assert "clear error: OTEL_PROPAGATORS='tracecontext,w3c' is invalid (unknown name 'w3c')" in result.stdout


def test_a_forked_child_keeps_configure_arguments_over_the_environment(otlp_receiver: OTLPReceiver) -> None:
    code = f"""
        import os, veil
        from opentelemetry import trace
        veil.configure(service_name="from-argument", auto_instrument=False, traces_exporter="otlp",
                       otlp_endpoint={otlp_receiver.http_endpoint!r})
        pid = os.fork()
        if pid == 0:
            with trace.get_tracer("t").start_as_current_span("child"):
                pass
            veil.telemetry.installed().force_flush(5000)
            os._exit(0)
        os.waitpid(pid, 0)
    """
    result = _run_python(code, {"OTEL_SERVICE_NAME": "from-environment"})
    assert result.returncode == 0, result.stderr
    (span,) = otlp_receiver.wait_for_spans(1, timeout=10)
    assert span.resource["service.name"] == "from-argument"


def test_value_length_limit_applies_after_redaction(configure_veil: Configure, otlp_receiver: OTLPReceiver) -> None:
    handle = configure_veil(
        traces_exporter="otlp", otlp_endpoint=otlp_receiver.http_endpoint, attribute_value_length_limit=40
    )
    with trace.get_tracer("tests").start_as_current_span("upload") as span:
        span.set_attribute("note", "upload failed for token ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8 retrying")
        span.set_attribute("long", "x" * 100)
    handle.force_flush(5000)
    (received,) = otlp_receiver.wait_for_spans(1, timeout=10)
    assert "ghp_" not in received.attributes["note"]
    assert received.attributes["note"].startswith("upload failed for token [REDACTED:")
    assert len(received.attributes["note"]) == 40
    assert received.attributes["long"] == "x" * 40
