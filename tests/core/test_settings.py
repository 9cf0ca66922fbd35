"""Settings: precedence, parsing, and one clear error per class of mistake."""

from __future__ import annotations

import pytest

from veil.errors import ConfigurationError
from veil.settings import Settings, library_excluded_urls, options


def test_defaults_without_environment() -> None:
    settings = Settings.load(environ={})
    assert settings.propagators == ("tracecontext", "baggage")
    assert settings.traces_sampler == "parentbased_always_on"
    assert settings.exporters("traces") == ("console",)
    assert settings.exporters("metrics") == ()
    assert settings.exporters("logs") == ()
    assert settings.redaction_enabled is True
    assert settings.semconv_http_mode == "stable"


def test_an_otlp_endpoint_makes_otlp_the_default_for_every_signal() -> None:
    settings = Settings.load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert [settings.exporters(s) for s in ("traces", "metrics", "logs")] == [("otlp",)] * 3
    only_traces = Settings.load(environ={"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert only_traces.exporters("traces") == ("otlp",)
    assert only_traces.exporters("metrics") == ()


def test_keyword_arguments_win_over_environment_which_wins_over_defaults() -> None:
    env = {"OTEL_SERVICE_NAME": "from-env", "OTEL_TRACES_EXPORTER": "zipkin", "OTEL_BSP_MAX_QUEUE_SIZE": "4096"}
    settings = Settings.load(environ=env, service_name="from-kwarg")
    assert settings.service_name == "from-kwarg"
    assert settings.traces_exporter == ("zipkin",)
    assert settings.bsp_max_queue_size == 4096


def test_parsing_of_lists_headers_and_booleans() -> None:
    env = {
        "OTEL_TRACES_EXPORTER": " OTLP , console,otlp ",
        "OTEL_EXPORTER_OTLP_HEADERS": "api-key=s%20ecret,x-team=payments",
        "OTEL_RESOURCE_ATTRIBUTES": "service.namespace=shop,team=a%2Cb",
        "OTEL_SDK_DISABLED": "TRUE",
        "OTEL_SEMCONV_STABILITY_OPT_IN": "database,http/dup",
        "OTEL_TRACES_EXPORTER_IGNORED": "x",
    }
    settings = Settings.load(environ=env)
    assert settings.traces_exporter == ("otlp", "console")
    assert settings.otlp_headers == {"api-key": "s ecret", "x-team": "payments"}
    assert settings.resource_attributes == {"service.namespace": "shop", "team": "a,b"}
    assert settings.sdk_disabled is True
    assert settings.semconv_http_mode == "dup"


def test_empty_variables_count_as_unset() -> None:
    assert Settings.load(environ={"OTEL_TRACES_SAMPLER": " "}).traces_sampler == "parentbased_always_on"


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("OTEL_TRACES_EXPORTER", "jaegerr", "console, jaeger, none, otlp, zipkin"),
        ("OTEL_METRICS_EXPORTER", "zipkin", "console, jaeger, none, otlp"),
        ("OTEL_LOGS_EXPORTER", "otlp,none", "console, jaeger, none, otlp"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "localhost:4317", "http:// or https://"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://host/x", "http:// or https://"),
        ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", "http://host:99999/api", "port number"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "grpc, http/protobuf"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "brotli", "gzip, none"),
        ("OTEL_PROPAGATORS", "tracecontext,xray", "b3, b3multi, baggage, jaeger, none, tracecontext"),
        ("OTEL_TRACES_SAMPLER", "sometimes", "always_off, always_on"),
        ("OTEL_TRACES_SAMPLER_ARG", "1.5", "from 0.0 to 1.0"),
        ("OTEL_TRACES_SAMPLER_ARG", "half", "from 0.0 to 1.0"),
        ("OTEL_SDK_DISABLED", "maybe", "true, false"),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "-1", "an integer >= 1"),
        ("OTEL_BSP_SCHEDULE_DELAY", "soon", "an integer >= 1"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "0", "an integer >= 1"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd", "gzip, none"),
        ("OTEL_ATTRIBUTE_COUNT_LIMIT", "1e3", "an integer >= 0"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "an integer >= 1"),
    ],
)
def test_bad_values_name_the_variable_and_the_accepted_values(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ={variable: value})
    message = str(raised.value)
    assert message.startswith(f"{variable}=")
    assert accepted in message
    assert raised.value.variable == variable


def test_batch_size_larger_than_queue_is_rejected() -> None:
    with pytest.raises(ConfigurationError, match="OTEL_BSP_MAX_EXPORT_BATCH_SIZE"):
        Settings.load(environ={"OTEL_BSP_MAX_QUEUE_SIZE": "10", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "20"})


def test_malformed_headers_never_echo_the_value() -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ={"OTEL_EXPORTER_OTLP_HEADERS": "authorization Bearer sk-live-123"})
    assert "sk-live-123" not in str(raised.value)
    assert "OTEL_EXPORTER_OTLP_HEADERS" in str(raised.value)


def test_bad_keyword_arguments_name_the_keyword() -> None:
    with pytest.raises(
        ConfigurationError, match=r"traces_exporter \(OTEL_TRACES_EXPORTER\)=.*unknown name 'carrier-pigeon'"
    ):
        Settings.load(environ={}, traces_exporter=["otlp", "carrier-pigeon"])
    with pytest.raises(ConfigurationError, match="unknown keyword argument"):
        Settings.load(environ={}, servce_name="typo")


def test_library_excluded_urls() -> None:
    assert library_excluded_urls("flask", {}) is None
    assert library_excluded_urls("aiohttp-client", {"OTEL_PYTHON_AIOHTTP_CLIENT_EXCLUDED_URLS": "a, b"}) == (
        "a",
        "b",
    )


def test_every_option_is_documented() -> None:
    for item in options():
        assert item.doc.endswith("."), item.name
        assert item.env is None or item.env.startswith(("OTEL_", "VEIL_")), item.name


def test_credentials_never_appear_in_the_repr() -> None:
    settings = Settings.load(
        environ={"OTEL_EXPORTER_OTLP_HEADERS": "api-key=sk-topsecret", "VEIL_REDACTION_HASH_KEY": "hmac-key-123"}
    )
    assert settings.otlp_headers == {"api-key": "sk-topsecret"}
    assert "sk-topsecret" not in repr(settings)
    assert "hmac-key-123" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "overrides", "secret"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://user:S3cr3tP4ss@collector:99999"}, {}, "S3cr3tP4ss"),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318/v1?api_key=S3cr3tK"}, {}, "S3cr3tK"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "api-key:sk_live_S3cr3tValue"}, {}, "sk_live"),
        ({"OTEL_EXPORTER_OTLP_HEADERS": "x-a=b%0D%0AX-Evil: 1"}, {}, "X-Evil"),
        ({}, {"otlp_header": {"authorization": "Bearer S3cr3tTok"}}, "S3cr3tTok"),
        ({}, {"redaction_hash_key": b"\x01binary-S3cr3t"}, "S3cr3t"),
    ],
)
def test_errors_never_repeat_a_credential(environ: dict[str, str], overrides: dict[str, object], secret: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.load(environ=environ, **overrides)
    assert secret not in str(raised.value)


def test_header_names_are_lower_cased_for_grpc_metadata() -> None:
    settings = Settings.load(environ={"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Basic%20abc,X-Team=a"})
    assert settings.otlp_headers == {"authorization": "Basic abc", "x-team": "a"}


def test_endpoints_are_hidden_from_the_repr() -> None:
    settings = Settings.load(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:S3cr3tP4ss@collector:4318"})
    assert "S3cr3tP4ss" not in repr(settings)


def test_per_signal_values_replace_the_general_ones() -> None:
    settings = Settings.load(
        environ={
            "OTEL_EXPORTER_OTLP_HEADERS": "x-vendor-a-key=AAAA",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "x-vendor-b-key=BBBB",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "9000",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2000",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION": "gzip",
        }
    )
    assert settings.otlp_signal_headers("traces") == {"x-vendor-b-key": "BBBB"}
    assert settings.otlp_signal_headers("logs") == {"x-vendor-a-key": "AAAA"}
    assert (settings.otlp_signal_timeout_millis("traces"), settings.otlp_signal_timeout_millis("logs")) == (2000, 9000)
    assert (settings.otlp_signal_compression("metrics"), settings.otlp_signal_compression("traces")) == ("gzip", None)


def test_an_empty_keyword_argument_leaves_the_environment_in_charge() -> None:
    settings = Settings.load(environ={"OTEL_SERVICE_NAME": "from-env"}, service_name="")
    assert settings.service_name == "from-env"
