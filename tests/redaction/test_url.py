from __future__ import annotations

import pytest

from veil.redaction.url import (
    DEFAULT_SENSITIVE_QUERY_PARAMETERS,
    SENSITIVE_HEADERS,
    is_sensitive_header,
    redact_header_value,
    redact_query,
    redact_url,
)

PARAMS = DEFAULT_SENSITIVE_QUERY_PARAMETERS


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@example.com/a", "https://REDACTED:REDACTED@example.com/a"),
        ("https://tokenonly@example.com/", "https://REDACTED@example.com/"),
        ("//user:pw@example.com/", "//REDACTED:REDACTED@example.com/"),
        ("https://h/p?color=blue&sig=abc", "https://h/p?color=blue&sig=REDACTED"),
        (
            "https://h/p?X-Amz-Signature=1&X-Amz-Credential=2&a=3",
            "https://h/p?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&a=3",
        ),
        ("/login?Access-Token=abc&page=2", "/login?Access-Token=REDACTED&page=2"),
        ("/cb#access_token=abc&token_type=bearer", "/cb#access_token=REDACTED&token_type=bearer"),
        ("/x?user%5Bpassword%5D=pw&keep", "/x?user%5Bpassword%5D=REDACTED&keep"),
        ("/x?user[password]=pw", "/x?user[password]=REDACTED"),
        ("https://a:b@h/p?token=t#frag", "https://REDACTED:REDACTED@h/p?token=REDACTED#frag"),
    ],
)
def test_redact_url_replaces_credentials_and_keeps_every_other_byte(url: str, expected: str) -> None:
    assert redact_url(url, PARAMS) == expected


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/users/42?page=2&limit=50",
        "https://h/p?token=",  # blank parameters are kept as they are
        "https://h/p?token",
        "https://h/a@b/c",  # an @ in the path is not userinfo
        "mailto:someone@example.com",
        "/search?q=password+reset",
        "https://REDACTED:REDACTED@h/",
        "https://h/p?sig=REDACTED",
    ],
)
def test_redact_url_returns_the_same_object_when_nothing_is_sensitive(url: str) -> None:
    assert redact_url(url, PARAMS) is url


def test_user_parameters_are_honoured_and_case_insensitive() -> None:
    params = frozenset({"Ticket"})
    assert redact_url("/x?ticket=1&TICKET=2&sig=3", params) == "/x?ticket=REDACTED&TICKET=REDACTED&sig=3"


def test_redact_query_with_and_without_question_mark() -> None:
    assert redact_query("a=1&password=x", PARAMS) == "a=1&password=REDACTED"
    query = "a=1&b=2"
    assert redact_query(query, PARAMS) is query


def test_semconv_parameters_are_in_the_default_list() -> None:
    for name in (
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
    ):
        assert name in PARAMS


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("Authorization", "Bearer abc.def.ghi", "Bearer [REDACTED]"),
        ("authorization", "Basic dXNlcjpwYXNz", "Basic [REDACTED]"),
        ("Proxy-Authorization", "opaque-credential", "[REDACTED]"),
        ("cookie", "sessionid=abc; theme=dark", "sessionid=[REDACTED]; theme=[REDACTED]"),
        ("set-cookie", "sid=abc; Path=/; HttpOnly", "sid=[REDACTED]; Path=/; HttpOnly"),
        ("x-api-key", "k-123", "[REDACTED]"),
        ("x-myapp-secret", "abc", "[REDACTED]"),
        ("X-Service-Token", "abc", "[REDACTED]"),
    ],
)
def test_sensitive_headers_keep_their_shape(name: str, value: str, expected: str) -> None:
    assert redact_header_value(name, value) == expected


@pytest.mark.parametrize(
    "name", ["content-type", "user-agent", "traceparent", "www-authenticate", "x-request-id", "x-token-count", "accept"]
)
def test_benign_headers_are_untouched(name: str) -> None:
    value = "some value 123"
    assert not is_sensitive_header(name)
    assert redact_header_value(name, value) is value


def test_sensitive_header_list_is_lowercase() -> None:
    assert all(name == name.lower() for name in SENSITIVE_HEADERS)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/cb?code=SplxlOBe&state=af0i", "/cb?code=REDACTED&state=af0i"),
        ("/token?code_verifier=dBjftJeZ4CVP&grant_type=authorization_code", None),
        ("/verify?otp=482913&next=/home", "/verify?otp=REDACTED&next=/home"),
        ("/reset?reset_token=abc123&lang=en", "/reset?reset_token=REDACTED&lang=en"),
        ("/2fa?mfa_code=123456", "/2fa?mfa_code=REDACTED"),
        ("/password/reset?key=k9x8&login=bob", "/password/reset?key=REDACTED&login=bob"),
        ("/search?key=blue&page=2", "/search?key=blue&page=2"),
        ("/checkout?promo_code=SPRING&zip_code=90210&code_challenge=E9Mel", "same"),
        ("/cb?code=***&state=x", "same"),
        ("https://app:***@db/x", "same"),
    ],
)
def test_one_time_credentials_at_the_source(url: str, expected: str | None) -> None:
    redacted = redact_url(url, DEFAULT_SENSITIVE_QUERY_PARAMETERS)
    if expected == "same":
        assert redacted is url
    elif expected is None:
        assert "dBjftJeZ4CVP" not in redacted and "grant_type=authorization_code" in redacted
    else:
        assert redacted == expected
