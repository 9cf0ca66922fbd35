"""The client core's per-request shortcuts: cached shapes and origins, the clean-URL cache, all fail-closed."""

from __future__ import annotations

from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_REQUEST_METHOD_ORIGINAL,
    HTTP_RESPONSE_STATUS_CODE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.url_attributes import URL_FULL
from opentelemetry.semconv.metrics.http_metrics import HTTP_CLIENT_REQUEST_DURATION

from tests.instrumentation._clients import Providers
from veil.instrumentation._http import ClientTelemetry, HTTPConfig, client_telemetry
from veil.instrumentation._http.client_request import OUTCOME_LIMIT
from veil.instrumentation._http.semconv import CACHE_LIMIT

SECRET_URL = "https://alice:hunter2@api.example.com:8443/v1/items?page=2&X-Amz-Signature=abc123&sig=s3cr3t"
REDACTED_URL = "https://REDACTED:REDACTED@api.example.com:8443/v1/items?page=2&X-Amz-Signature=REDACTED&sig=REDACTED"


def _telemetry(providers: Providers) -> ClientTelemetry:
    return client_telemetry("requests", "tests.client_core", providers.providers)


def _span_attributes(
    providers: Providers, telemetry: ClientTelemetry, method: str, url: str, **known: object
) -> dict[str, object]:
    providers.exporter.clear()
    call = telemetry.start(method, url, native=None, **known)  # type: ignore[arg-type]
    assert call is not None
    call.finish()
    (span,) = providers.finished()
    return dict(span.attributes or {})


def test_secrets_are_redacted_every_time_even_after_the_same_url_without_them(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    clean = "https://api.example.com:8443/v1/items?page=2"
    for _ in range(3):
        assert _span_attributes(providers, telemetry, "GET", clean)[URL_FULL] == clean
        assert _span_attributes(providers, telemetry, "GET", SECRET_URL)[URL_FULL] == REDACTED_URL
    # what the shortcuts remember holds no secret: no userinfo, no signed URL
    remembered = " ".join([*telemetry._clean_urls, *telemetry._origins])
    assert "hunter2" not in remembered
    assert "abc123" not in remembered
    assert "s3cr3t" not in remembered


def test_userinfo_alone_or_signature_alone_is_redacted_on_repeat(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    cases = {
        "http://bob:pw@internal.example/x": "http://REDACTED:REDACTED@internal.example/x",
        "http://token@internal.example/x": "http://REDACTED@internal.example/x",
        "https://bucket.example/o?X-Goog-Signature=zz&a=": "https://bucket.example/o?X-Goog-Signature=REDACTED&a=",
    }
    for _ in range(2):
        for url, expected in cases.items():
            assert _span_attributes(providers, telemetry, "GET", url)[URL_FULL] == expected


def test_origin_is_parsed_for_each_authority_and_never_cached_with_userinfo(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    first = _span_attributes(providers, telemetry, "GET", "http://a.example:8080/x")
    second = _span_attributes(providers, telemetry, "GET", "https://b.example/y")
    with_user = _span_attributes(providers, telemetry, "GET", "https://u:p@c.example:9443/z")
    assert (first[SERVER_ADDRESS], first[SERVER_PORT]) == ("a.example", 8080)
    assert (second[SERVER_ADDRESS], second[SERVER_PORT]) == ("b.example", 443)
    assert (with_user[SERVER_ADDRESS], with_user[SERVER_PORT]) == ("c.example", 9443)
    assert not any("@" in prefix for prefix in telemetry._origins)
    # the same authority again still gives its own values
    assert _span_attributes(providers, telemetry, "GET", "http://a.example:8080/other")[SERVER_PORT] == 8080


def test_cached_shapes_keep_method_and_server_per_request(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    purge = _span_attributes(
        providers, telemetry, "PURGE", "http://h.example/", scheme="http", server_address="h.example", server_port=80
    )
    get = _span_attributes(
        providers, telemetry, "GET", "http://h.example/", scheme="http", server_address="h.example", server_port=80
    )
    other_host = _span_attributes(
        providers, telemetry, "GET", "http://i.example:81/", scheme="http", server_address="i.example", server_port=81
    )
    assert purge[HTTP_REQUEST_METHOD] == "_OTHER"
    assert purge[HTTP_REQUEST_METHOD_ORIGINAL] == "PURGE"
    assert get[HTTP_REQUEST_METHOD] == "GET"
    assert HTTP_REQUEST_METHOD_ORIGINAL not in get  # the cached base set is copied, never mutated
    assert (other_host[SERVER_ADDRESS], other_host[SERVER_PORT]) == ("i.example", 81)
    names = [span.name for span in providers.finished()]
    assert names == ["GET"]  # last request only (cleared before each)


def test_caches_are_bounded(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    for index in range(CACHE_LIMIT * 2 + 7):
        call = telemetry.start("GET", f"http://host-{index}.example/item/{index}", native=None)
        assert call is not None
        call.finish()
    assert 0 < len(telemetry._shapes) <= CACHE_LIMIT
    assert 0 < len(telemetry._origins) <= CACHE_LIMIT
    assert 0 < len(telemetry._clean_urls) <= CACHE_LIMIT


def test_metric_attribute_sets_are_bounded_per_shape(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    for status in range(200, 200 + OUTCOME_LIMIT * 2 + 3):
        call = telemetry.start("GET", "http://h.example/x", native=None)
        assert call is not None
        call.set_response(status)
        call.finish()
    (shape,) = telemetry._shapes.values()
    assert 0 < len(shape.outcomes) <= OUTCOME_LIMIT
    points = providers.points(HTTP_CLIENT_REQUEST_DURATION)
    recorded = {point.attributes[HTTP_RESPONSE_STATUS_CODE] for point in points}
    assert recorded == set(range(200, 200 + OUTCOME_LIMIT * 2 + 3))  # every outcome still recorded right


def test_huge_urls_are_redacted_and_not_remembered(providers: Providers) -> None:
    telemetry = _telemetry(providers)
    huge_clean = "https://big.example/" + "a" * 5000
    huge_signed = huge_clean + "?Signature=top&keep=1"
    assert _span_attributes(providers, telemetry, "GET", huge_clean)[URL_FULL] == huge_clean
    assert (
        _span_attributes(providers, telemetry, "GET", huge_signed)[URL_FULL]
        == huge_clean + "?Signature=REDACTED&keep=1"
    )
    assert huge_clean not in telemetry._clean_urls


def test_redaction_disabled_keeps_the_url(providers: Providers) -> None:
    config = HTTPConfig(
        dup=False,
        excluded=None,
        request_headers=None,
        response_headers=None,
        sensitive_query_parameters=None,
        request_hook=None,
        response_hook=None,
    )
    telemetry = ClientTelemetry("tests.client_core", config, providers.tracer_provider, providers.meter_provider)
    assert _span_attributes(providers, telemetry, "GET", SECRET_URL)[URL_FULL] == SECRET_URL
    assert not telemetry._clean_urls
