"""The providers veil.configure() hands down: the LoggerProvider stdlib records are exported through by default."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from unittest import mock

import pytest
from opentelemetry.sdk._logs import LoggerProvider

import veil
from veil import telemetry
from veil.instrumentation import providers


@pytest.fixture
def forget() -> Iterator[None]:
    yield
    providers.set_log_export_provider(None)


def test_the_recorded_provider_is_the_default_only_while_it_is_the_global_one(forget: None) -> None:
    mine, other = LoggerProvider(), LoggerProvider()
    providers.set_log_export_provider(mine)
    with mock.patch.object(providers, "get_logger_provider", return_value=mine):
        assert providers.log_export_provider() is mine
    with mock.patch.object(providers, "get_logger_provider", return_value=other):
        assert providers.log_export_provider() is None  # replaced after configure(): left alone
    providers.set_log_export_provider(None)
    with mock.patch.object(providers, "get_logger_provider", return_value=mine):
        assert providers.log_export_provider() is None


def test_configure_records_its_provider_only_with_a_logs_exporter(
    configure_veil: Callable[..., veil.Telemetry],
) -> None:
    exporting = configure_veil(traces_exporter="none", logs_exporter="console", redaction_log_output=False)
    assert exporting.logger_provider is not None
    assert providers.log_export_provider() is exporting.logger_provider
    configure_veil(traces_exporter="none", logs_exporter="none", redaction_log_output=False)
    assert providers._log_export[0] is None
    configure_veil(traces_exporter="none", logs_exporter="console", redaction_log_output=False)
    telemetry.reset_for_tests()
    assert providers._log_export[0] is None
