"""The prometheus exporter in process: the scrape output parsed with prometheus_client's text parser,
semconv buckets and names, target_info, redaction on the pull path, ports for several workers, fork,
reconfiguration, and the error when the extra is missing."""

from __future__ import annotations

import logging
import multiprocessing
import os
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

import veil
from tests.monitoring.shop_app import make_app
from veil.errors import ConfigurationError
from veil.export import prometheus
from veil.export.prometheus import scrape_endpoints
from veil.instrumentation._http import DURATION_BUCKETS

Configure = Callable[..., veil.Telemetry]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200
        return str(response.read().decode())


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def only_endpoint() -> str:
    endpoints = scrape_endpoints()
    assert len(endpoints) == 1, endpoints
    return endpoints[0]


def call(port: int, method: str, path: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, data=b"")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


@pytest.fixture
def served_app() -> Iterator[int]:
    """The shop app served on 127.0.0.1 in this process (instrument veil first)."""
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()


def configure_prometheus(configure_veil: Configure, **kwargs: Any) -> veil.Telemetry:
    kwargs.setdefault("service_name", "checkout")
    kwargs.setdefault("prometheus_host", "127.0.0.1")
    kwargs.setdefault("prometheus_port", 0)
    return configure_veil(traces_exporter="none", metrics_exporter="prometheus", **kwargs)


def test_scrape_output_has_semconv_http_histograms_with_route_labels(
    configure_veil: Configure, served_app: int
) -> None:
    configure_prometheus(configure_veil)
    veil.instrument("flask")
    assert call(served_app, "GET", "/orders/42") == 200
    assert call(served_app, "POST", "/payments/pay-secret-7") == 503
    assert call(served_app, "GET", "/crash") == 500

    # The server records a request when it closes the response body, which can happen just after the client
    # has read the response: scrape until all three requests are in (bounded).
    deadline = time.monotonic() + 10
    text = scrape(only_endpoint())
    while text.count("http_server_request_duration_seconds_count{") < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
        text = scrape(only_endpoint())
    parsed = families(text)

    duration = parsed["http_server_request_duration_seconds"]
    assert duration.type == "histogram"
    assert duration.unit == "seconds" or duration.name.endswith("_seconds")
    sample_names = {sample.name for sample in duration.samples}
    assert sample_names == {
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_sum",
    }
    routes = {
        (sample.labels["http_route"], sample.labels["http_response_status_code"])
        for sample in duration.samples
        if sample.name.endswith("_count")
    }
    assert routes == {("/orders/<int:order_id>", "200"), ("/payments/<payment_id>", "503"), ("/crash", "500")}
    for sample in duration.samples:
        assert sample.labels["service_name"] == "checkout"
        assert sample.labels["otel_scope_name"] == "veil.instrumentation.flask"
    bounds = sorted(
        {float(sample.labels["le"]) for sample in duration.samples if sample.name.endswith("_bucket")} - {float("inf")}
    )
    assert bounds == list(DURATION_BUCKETS)
    # Raw paths (and what they carry) are never a label value.
    assert "/orders/42" not in text and "pay-secret-7" not in text

    assert "http_server_active_requests" in parsed
    target = parsed["target_info"]  # an info metric, which the 0.0.4 text format writes as a gauge
    assert target.type == "gauge"
    (info,) = target.samples
    assert info.value == 1.0
    assert info.labels["service_name"] == "checkout"
    assert info.labels["telemetry_sdk_language"] == "python"
    assert "process_runtime_version" in info.labels


def test_runtime_metrics_are_served_and_can_be_turned_off(configure_veil: Configure) -> None:
    configure_prometheus(configure_veil)
    parsed = families(scrape(only_endpoint()))
    for name in (
        "process_cpu_time_seconds",
        "process_memory_usage_bytes",
        "process_thread_count",
        "process_unix_file_descriptor_count",
        "process_uptime_seconds",
        "cpython_gc_collections",
        "veil_cpython_gc_pause_time_seconds",
    ):
        assert name in parsed, sorted(parsed)
    cpu_modes = {sample.labels["cpu_mode"] for sample in parsed["process_cpu_time_seconds"].samples}
    assert cpu_modes == {"user", "system"}
    generations = {sample.labels["cpython_gc_generation"] for sample in parsed["cpython_gc_collections"].samples}
    assert generations == {"0", "1", "2"}
    for sample in parsed["cpython_gc_collections"].samples:
        assert sample.labels["process_runtime_version"].count(".") == 2

    configure_prometheus(configure_veil, runtime_metrics=False)
    parsed = families(scrape(only_endpoint()))
    assert not [name for name in parsed if name.startswith(("process_", "cpython_", "veil_cpython_"))]


@pytest.mark.parametrize("redaction_enabled", [True, False])
def test_attributes_are_redacted_on_the_pull_path(configure_veil: Configure, redaction_enabled: bool) -> None:
    configure_prometheus(configure_veil, redaction_enabled=redaction_enabled)
    counter = metrics.get_meter("shop.custom").create_counter("shop.signups")
    counter.add(1, {"user.email": "alice@example.com", "api_key": "sk_live_0123456789abcdefghijklmn"})

    text = scrape(only_endpoint())
    (sample,) = families(text)["shop_signups"].samples
    if redaction_enabled:
        assert "alice@example.com" not in text and "sk_live_0123456789abcdefghijklmn" not in text
        assert sample.labels["user_email"].startswith("[REDACTED")
        assert sample.labels["api_key"].startswith("[REDACTED")
    else:  # the same path without redaction shows what the wrapper removed
        assert sample.labels["user_email"] == "alice@example.com"


def _listening_with_free_next_port() -> socket.socket:
    """A listening socket on 127.0.0.1 whose port + 1 is free (a sibling worker holding the first port)."""
    for _ in range(50):
        sibling = socket.socket()
        sibling.bind(("127.0.0.1", 0))
        sibling.listen()
        port = sibling.getsockname()[1]
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", port + 1))
            return sibling
        except OSError:
            sibling.close()
    pytest.fail("no port with a free successor found")


def test_a_taken_port_moves_to_the_next_worker_port(configure_veil: Configure) -> None:
    with _listening_with_free_next_port() as sibling:
        taken = sibling.getsockname()[1]
        configure_prometheus(configure_veil, prometheus_port=taken, prometheus_worker_ports=2)
        endpoints = scrape_endpoints()
        assert endpoints == [f"http://127.0.0.1:{taken + 1}/metrics"]
        assert "target_info" in scrape(endpoints[0])


def test_every_port_taken_logs_once_and_never_raises(
    configure_veil: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as sibling:
        sibling.bind(("127.0.0.1", 0))
        sibling.listen()
        taken = sibling.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="veil"):
            telemetry = configure_prometheus(configure_veil, prometheus_port=taken)
        assert scrape_endpoints() == []
        assert telemetry.enabled
        messages = [record.getMessage() for record in caplog.records if "prometheus" in record.getMessage()]
        assert len(messages) == 1
        assert f"127.0.0.1:{taken}" in messages[0] and "VEIL_PROMETHEUS_WORKER_PORTS" in messages[0]


def test_reconfiguring_keeps_the_port_and_serves_the_new_pipeline(configure_veil: Configure) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure_prometheus(configure_veil, prometheus_port=port, service_name="first")
    assert 'service_name="first"' in scrape(f"http://127.0.0.1:{port}/metrics")
    configure_prometheus(configure_veil, prometheus_port=port, service_name="second")
    text = scrape(f"http://127.0.0.1:{port}/metrics")
    assert 'service_name="second"' in text and 'service_name="first"' not in text
    veil.telemetry.reset_for_tests()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def _child_scrape(queue: Any) -> None:
    import os

    endpoints = scrape_endpoints()
    metrics.get_meter("child").create_counter("child.work").add(3)
    queue.put((os.getpid(), endpoints, scrape(endpoints[0]) if endpoints else ""))


def test_a_forked_worker_serves_its_own_metrics_on_the_next_port(configure_veil: Configure) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    configure_prometheus(configure_veil, prometheus_port=port, prometheus_worker_ports=3)
    parent_endpoint = only_endpoint()
    assert f'process_pid="{os.getpid()}"' in scrape(parent_endpoint)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_scrape, args=(queue,))
    child.start()
    pid, endpoints, text = queue.get(timeout=30)
    child.join(30)
    assert child.exitcode == 0
    assert endpoints and endpoints[0] != parent_endpoint
    assert endpoints[0] in {f"http://127.0.0.1:{port + 1}/metrics", f"http://127.0.0.1:{port + 2}/metrics"}
    assert "child_work_total" in text
    assert "target_info" in text and pid != os.getpid()
    # The parent still serves on its port, without the child's data.
    assert "child_work_total" not in scrape(parent_endpoint)


def test_missing_extra_is_a_configuration_error(configure_veil: Configure, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prometheus, "_IMPORT_ERROR", ImportError("No module named 'prometheus_client'"))
    with pytest.raises(ConfigurationError) as raised:
        configure_prometheus(configure_veil)
    assert raised.value.variable == "OTEL_METRICS_EXPORTER"
    assert "veil[prometheus]" in str(raised.value)
    assert scrape_endpoints() == []


def test_prometheus_settings_follow_the_specification(monkeypatch: pytest.MonkeyPatch) -> None:
    from veil.settings import Settings

    defaults = Settings.load(environ={})
    assert (defaults.prometheus_host, defaults.prometheus_port) == ("localhost", 9464)
    assert defaults.runtime_metrics is True
    loaded = Settings.load(
        environ={
            "OTEL_METRICS_EXPORTER": "prometheus,otlp",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "0.0.0.0",
            "OTEL_EXPORTER_PROMETHEUS_PORT": "9500",
            "VEIL_PROMETHEUS_WORKER_PORTS": "4",
            "VEIL_RUNTIME_METRICS": "false",
        }
    )
    assert loaded.exporters("metrics") == ("prometheus", "otlp")
    assert (loaded.prometheus_host, loaded.prometheus_port, loaded.prometheus_worker_ports) == ("0.0.0.0", 9500, 4)
    assert loaded.runtime_metrics is False
    with pytest.raises(ConfigurationError, match="OTEL_EXPORTER_PROMETHEUS_PORT"):
        Settings.load(environ={"OTEL_EXPORTER_PROMETHEUS_PORT": "70000"})
