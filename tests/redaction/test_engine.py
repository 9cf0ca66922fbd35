"""The engine against a labelled set: positives and hard negatives per category, structure, policies."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.redaction.secrets_factory import VALUE_CATEGORIES, make
from veil.errors import ConfigurationError
from veil.redaction import ERROR_MARKER, Match, RedactionConfig, Redactor

RNG = random.Random(6)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor.default()


# ------------------------------------------------------------------------------------------------ key rules


@pytest.mark.parametrize(
    ("key", "category"),
    [
        ("password", "password"),
        ("db_passwd", "password"),
        ("user.password", "password"),
        ("client_secret", "secret"),
        ("webhookSecret", "secret"),
        ("api_key", "api_key"),
        ("X-API-Key", "api_key"),
        ("apiKey", "api_key"),
        ("access_token", "token"),
        ("refreshToken", "token"),
        ("github_token", "token"),
        ("token", "token"),
        ("private_key", "private_key"),
        ("aws_secret_access_key", "secret"),
        ("authorization", "authorization"),
        ("basic_auth", "authorization"),
        ("session", "session"),
        ("sessionid", "session"),
        ("cookie", "session"),
        ("credentials", "credential"),
        ("ssn", "us_ssn"),
        ("card_number", "payment_card"),
    ],
)
def test_secret_keys_replace_the_whole_value(redactor: Redactor, key: str, category: str) -> None:
    assert redactor.redact(key, "s3cr3t-value-123") == f"[REDACTED:{category}]"


@pytest.mark.parametrize(
    "key",
    [
        "author",
        "oauth_provider",
        "token_count",
        "max_tokens",
        "input_tokens",
        "gen_ai.usage.input_tokens",
        "password_policy",
        "password_strength",
        "secretary",
        "browserSessionId",
        "session.id",
        "user_id",
        "api_key_id",
        "secret_name",
        "next_page_token",
        "token_type",
        "authority",
        "keyboard_layout",
        "cache_key",
        "monkey",
        "authorization_url",
        "http.route",
    ],
)
def test_benign_keys_are_not_touched(redactor: Redactor, key: str) -> None:
    value = "plain value 42"
    assert redactor.redact(key, value) is value


@pytest.mark.parametrize("value", ["", "[REDACTED]", "****", "${DB_PASSWORD}", "{{ secret }}", "%s", "?"])
def test_placeholders_under_secret_keys_are_kept(redactor: Redactor, value: str) -> None:
    assert redactor.redact("password", value) is value


@pytest.mark.parametrize(
    "value", ["@Summer2024", ":Winter_2023x", "<CorrectHorseBattery>", "{{pa55w0rd!", "$123", "NULL", "${hunter2"]
)
def test_password_shaped_like_a_placeholder_is_still_redacted(redactor: Redactor, value: str) -> None:
    """Fail closed: only real masks and closed templates pass under a secret's key."""
    assert redactor.redact("password", value) == "[REDACTED:password]"
    assert value not in redactor.redact(None, f"login password={value} ok")


def test_attributes_named_like_veil_s_own_are_still_redacted(redactor: Redactor) -> None:
    leaked = "password=hunter2xyz ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    redacted = redactor.redact("veil.redaction.keys", leaked)
    assert "hunter2xyz" not in redacted and "ghp_" not in redacted


def test_non_string_values_under_secret_keys(redactor: Redactor) -> None:
    assert redactor.redact("pin_password", 1234) == "[REDACTED:password]"
    assert redactor.redact("password", True) is True
    assert redactor.redact("api_key", ["a-key", "b-key"]) == ["[REDACTED:api_key]", "[REDACTED:api_key]"]
    assert redactor.redact("secret", b"raw-bytes") == b"[REDACTED:secret]"


# ------------------------------------------------------------------------------------------- value detectors


@pytest.mark.parametrize("category", VALUE_CATEGORIES)
def test_each_detector_replaces_only_the_secret(redactor: Redactor, category: str) -> None:
    secret = make(category, RNG)
    text = f"before {secret} after"
    redacted = redactor.redact(None, text)
    assert redacted == f"before [REDACTED:{category}] after"


@pytest.mark.parametrize("category", VALUE_CATEGORIES)
def test_each_detector_finds_secrets_inside_json_and_keeps_it_valid(redactor: Redactor, category: str) -> None:
    secret = make(category, RNG)
    document = json.dumps({"note": f"value {secret}", "nested": {"list": [secret]}})
    redacted = redactor.redact("payload", document)
    assert secret not in redacted
    parsed = json.loads(redacted)
    assert parsed["nested"]["list"] == [f"[REDACTED:{category}]"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcDEF123456789", "Authorization: Bearer [REDACTED:authorization]"),
        (
            "curl -H 'Authorization: Basic dXNlcjpwYXNzd29yZA=='",
            "curl -H 'Authorization: Basic [REDACTED:authorization]'",
        ),
        ("login password=hunter2 user=bob", "login password=[REDACTED:password] user=bob"),
        ('{"password": "a\\"b", "user": "bob"}', '{"password": "[REDACTED:password]", "user": "bob"}'),
        ('{"pin_password": 1234}', '{"pin_password": "[REDACTED:password]"}'),
        ("{'api_key': 'abc123'}", "{'api_key': '[REDACTED:api_key]'}"),
        (
            "Server=db;Database=app;User Id=sa;Password=P@ss;",
            "Server=db;Database=app;User Id=sa;Password=[REDACTED:password];",
        ),
        ("host=db password=pw123 dbname=app", "host=db password=[REDACTED:password] dbname=app"),
        ("dsn postgres://app:pw@db:5432/app", "dsn postgres://REDACTED:REDACTED@db:5432/app"),
        ("jdbc:mysql://db/app?user=a&password=pw", "jdbc:mysql://db/app?user=a&password=REDACTED"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY=[REDACTED:secret]"),
        ("GET /cb?code=1&access_token=abc HTTP/1.1", "GET /cb?code=1&access_token=[REDACTED:token] HTTP/1.1"),
    ],
)
def test_credentials_in_free_text(redactor: Redactor, text: str, expected: str) -> None:
    assert redactor.redact(None, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "trace 4bf92f3577b34da6a3ce929d0e0e4736 span 00f067aa0ba902b7",
        "uuid 550e8400-e29b-41d4-a716-446655440000",
        "sha 3f786850e387550fdab836ed7e6dc881de23001b and sha256:" + "ab" * 32,
        "at 2024-05-06T07:08:09.123Z epoch 1714979289 ms 1714979289123 ns 1714979289123456789",
        "version 1.24.3-rc.1 build 20240506",
        "order 4111111111111112 fails Luhn",  # Luhn fails
        "ts 1700000000000000 id 1541815603606036480",  # not a card brand
        "ssn-like 000-12-3456 666-12-3456 912-12-3456 123-00-4567",
        "iban-like DE89370400440532013001",  # mod-97 fails
        "float 0.4111111111111111",
        "line 415 col 555 of 0132 lines",
        "Basic authentication is required",
        "Bearer tokens expire after an hour",
        "token_count=512 max_tokens=1024 author=bob",
        "password_policy=strict password reset requested",
        "the secretary said the author was at git@github.com:org/repo.git",
        "[REDACTED:email] ****",
        "GET /api/v1/users/{id}/orders?page=2",
        "SELECT id, name FROM users WHERE id = $1",
        "key AKIAEXAMPLE is too short, ghp_short too",
    ],
)
def test_hard_negatives_are_returned_unchanged(redactor: Redactor, text: str) -> None:
    assert redactor.redact(None, text) is text


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "4111-1111-1111-1111", "378282246310005", "5555555555554444", "6011111111111117"],
)
def test_card_numbers_with_separators_and_brands(redactor: Redactor, number: str) -> None:
    assert redactor.redact(None, f"card {number}.") == "card [REDACTED:payment_card]."


def test_card_number_as_integer(redactor: Redactor) -> None:
    assert redactor.redact("amount_paid", 4111111111111111) == "[REDACTED:payment_card]"
    assert redactor.redact("order.id", 4111111111111111) == 4111111111111111  # ids are ids
    assert redactor.redact("count", 1714979289123) == 1714979289123


def test_mixed_card_grouping_is_not_a_card(redactor: Redactor) -> None:
    text = "4111 1111-1111 1111"
    assert redactor.redact(None, text) is text


def test_iban_with_spaces(redactor: Redactor) -> None:
    assert redactor.redact(None, "to DE89 3704 0044 0532 0130 00 now") == "to [REDACTED:iban] now"


def test_marker_never_contains_the_secret(redactor: Redactor) -> None:
    for category in VALUE_CATEGORIES:
        secret = make(category, RNG)
        redacted = redactor.redact(None, secret)
        assert re.fullmatch(r"\[REDACTED:[a-z_0-9]+\]", redacted), redacted


# ----------------------------------------------------------------------------------------- structural keys


def test_url_attributes(redactor: Redactor) -> None:
    assert redactor.redact("url.full", "https://u:p@h/x?sig=1&q=2") == "https://REDACTED:REDACTED@h/x?sig=REDACTED&q=2"
    assert redactor.redact("http.target", "/x?password=1") == "/x?password=REDACTED"
    assert redactor.redact("url.query", "a=1&token=2") == "a=1&token=REDACTED"
    telegram = "12345678:AA" + "b" * 33
    assert redactor.redact("url.full", f"https://api.telegram.org/bot{telegram}/send") == (
        "https://api.telegram.org/bot[REDACTED:telegram_bot_token]/send"
    )
    assert redactor.redact("callback_url", "/cb?sig=abc") == "/cb?sig=REDACTED"


def test_header_attributes(redactor: Redactor) -> None:
    assert redactor.redact("http.request.header.authorization", "Bearer abc") == "Bearer [REDACTED]"
    assert redactor.redact("http.request.header.authorization", ["Bearer abc"]) == ["Bearer [REDACTED]"]
    assert redactor.redact("http.response.header.set-cookie", "s=1; Path=/") == "s=[REDACTED]; Path=/"
    value = "application/json"
    assert redactor.redact("http.request.header.content-type", value) is value


def test_sql_sensitive_policy(redactor: Redactor) -> None:
    statement = "UPDATE users SET password_hash = 'x9$abc', name = 'Bob' WHERE email = 'bob@example.com'"
    assert redactor.redact("db.query.text", statement) == (
        "UPDATE users SET password_hash = '[REDACTED:password]', name = 'Bob' WHERE email = '[REDACTED:email]'"
    )
    insert = "INSERT INTO accounts (id, api_key, note) VALUES (1, 'k-1', 'hi'), (2, 'k-2', 'yo')"
    assert redactor.redact("db.statement", insert) == (
        "INSERT INTO accounts (id, api_key, note) VALUES "
        "(1, '[REDACTED:api_key]', 'hi'), (2, '[REDACTED:api_key]', 'yo')"
    )
    assert redactor.redact("db.statement", "ALTER ROLE app WITH PASSWORD 'pw1'") == (
        "ALTER ROLE app WITH PASSWORD '[REDACTED:password]'"
    )
    parameterized = "SELECT * FROM users WHERE password = %s AND email = $2"
    assert redactor.redact("db.statement", parameterized) is parameterized


def test_sql_all_policy() -> None:
    redactor = Redactor(RedactionConfig(sql="all"))
    statement = "SELECT * FROM t WHERE a = 'x''y' AND b = 42 AND c = '--' -- note 'kept'\nAND d = 1.5"
    assert redactor.redact("db.query.text", statement) == (
        "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? -- note 'kept'\nAND d = ?"
    )


# ------------------------------------------------------------------------------------------------- policies


def test_email_policies() -> None:
    text = "mail bob@example.com"
    assert Redactor(RedactionConfig(email="keep")).redact(None, text) is text
    key = b"k" * 32
    hashed = Redactor(RedactionConfig(email="hash", hash_key=key))
    first = hashed.redact(None, text)
    assert re.fullmatch(r"mail \[REDACTED:email:[0-9a-f]{16}\]", first)
    assert hashed.redact(None, "again bob@example.com").endswith(first[5:])
    assert hashed.redact("password", "pw") == "[REDACTED:password]"  # only e-mails are hashed


def test_hash_mode_correlates_without_revealing() -> None:
    redactor = Redactor(RedactionConfig(mode="hash", hash_key=b"0123456789abcdef0123"))
    one = redactor.redact("password", "hunter2")
    assert one == redactor.redact("password", "hunter2")
    assert one != redactor.redact("password", "hunter3")
    assert "hunter2" not in one
    other_key = Redactor(RedactionConfig(mode="hash", hash_key=b"another-key-0123456789"))
    assert other_key.redact("password", "hunter2") != one


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        (RedactionConfig(mode="hash"), "VEIL_REDACTION_HASH_KEY"),
        (RedactionConfig(mode="hash", hash_key=b"short"), "VEIL_REDACTION_HASH_KEY"),
        (RedactionConfig(email="maybe"), "VEIL_REDACTION_EMAILS"),  # type: ignore[arg-type]
        (RedactionConfig(sql="some"), "VEIL_REDACTION_SQL"),  # type: ignore[arg-type]
    ],
)
def test_configuration_errors_name_the_variable(config: RedactionConfig, variable: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Redactor(config)
    assert variable in str(error.value)


def test_extra_keys_allowed_keys_and_patterns() -> None:
    redactor = Redactor(
        RedactionConfig(
            extra_sensitive_keys=("customer_note",),
            allowed_keys=("app.password_hint_text", "internal.*"),
            extra_patterns=(("ticket", r"TCK-[A-Z0-9]{8}"),),
        )
    )
    assert redactor.redact("customer_note", "likes cats") == "[REDACTED:sensitive_key]"
    assert redactor.redact("order.customer_note", "x") == "[REDACTED:sensitive_key]"
    value = "password=hunter2"
    assert redactor.redact("internal.debug", value) is value
    assert redactor.redact(None, "see TCK-AB12CD34 now") == "see [REDACTED:ticket] now"


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a|aa)*b", r"(\w+)\1", r"(?=a)b", r"a*a*a*b"])
def test_patterns_that_can_backtrack_are_refused(pattern: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Redactor(RedactionConfig(extra_patterns=(("custom", pattern),)))
    assert "VEIL_REDACTION_EXTRA_PATTERNS" in str(error.value)


def test_accepted_user_pattern_does_not_hang_on_adversarial_input() -> None:
    redactor = Redactor(RedactionConfig(extra_patterns=(("custom", r"a*b"),)))
    text = "a" * 60_000
    started = time.monotonic()
    assert redactor.redact(None, text) is not None
    assert time.monotonic() - started < 20  # windowed matching: bounded work per character


# ----------------------------------------------------------------------------------------------- fail-closed


class _Exploding:
    name = "exploding"

    def find(self, text: str) -> Iterator[Match]:
        raise RuntimeError("rule bug")
        yield Match(0, 0, "never")  # pragma: no cover


def test_a_raising_rule_fails_closed() -> None:
    redactor = Redactor(RedactionConfig(extra_detectors=(_Exploding(),)))
    assert redactor.redact("message", "password=hunter2 and more") == ERROR_MARKER
    assert redactor.redact_counted(None, "anything at all")[1] == 1
    assert redactor.findings(None, "anything at all") == ["error"]
    assert redactor.redact("password", "x1") == "[REDACTED:password]"  # key rules still apply first


def test_overlong_values_are_cut_not_passed_through() -> None:
    redactor = Redactor(RedactionConfig(max_scan_length=100))
    redacted = redactor.redact(None, "x" * 100 + "password=hunter2")
    assert redacted == "x" * 100 + "[REDACTED:unscanned]"


# ------------------------------------------------------------------------------------------ property tests

BENIGN = st.one_of(
    st.uuids().map(str),
    # hex ids with at least one letter: an all-digit one may be a Luhn-valid card number, rightly redacted
    st.integers(min_value=0, max_value=2**63 - 1).map(lambda n: f"{n:016x}").filter(lambda text: not text.isdigit()),
    st.sampled_from(["GET", "POST", "/users/{id}", "/api/v2/orders/{order_id}/items", "200", "ok", "checkout"]),
    st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
    st.integers(min_value=0, max_value=10**11 - 1),  # ids shorter than any payment card number (12-19 digits)
    st.from_regex(r"[a-z]{3,10}(\.[a-z]{3,10}){0,3}", fullmatch=True),
    st.from_regex(r"v?\d{1,2}\.\d{1,3}\.\d{1,3}(-rc\.\d)?", fullmatch=True),
    st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
)
BENIGN_KEYS = st.sampled_from(
    ["http.route", "http.request.method", "user_id", "order.id", "max_tokens", "author", "service.name", None]
)


@settings(max_examples=300, deadline=None)
@given(key=BENIGN_KEYS, value=BENIGN)
def test_benign_values_are_returned_unchanged(key: str | None, value: object) -> None:
    assert Redactor.default().redact(key, value) is value


@settings(max_examples=200, deadline=None)
@given(
    category=st.sampled_from(VALUE_CATEGORIES),
    seed=st.integers(0, 2**32),
    before=st.text(alphabet=" ,;:/=({[\"'", max_size=3),
    after=st.text(alphabet=" ,;:/)}]\"'.", max_size=3),
    prefix=st.from_regex(r"([a-z]{1,8} ){0,3}", fullmatch=True),
)
def test_generated_secrets_never_survive(category: str, seed: int, before: str, after: str, prefix: str) -> None:
    secret = make(category, random.Random(seed))
    text = f"{prefix}{before}{secret}{after}"
    redacted = Redactor.default().redact(None, text)
    assert secret not in redacted


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT id FROM users WHERE password = :password AND api_key = @api_key",
        "UPDATE users SET password_hash = ? WHERE id = ?",
        "INSERT INTO users (email, password) VALUES ($1, $2)",
    ],
)
def test_parameterized_sql_is_left_alone(redactor: Redactor, statement: str) -> None:
    assert redactor.redact("db.query.text", statement) is statement


@pytest.mark.parametrize(
    ("key", "url", "expected"),
    [
        ("url.full", "https://u:p@x.com/a?token=abc&x=1", "https://REDACTED:REDACTED@x.com/a?token=REDACTED&x=1"),
        ("url.full", "https://bob@x.com/a", "https://REDACTED@x.com/a"),
        (None, "see https://user:pw@db.internal:5432/a now", "see https://REDACTED:REDACTED@db.internal:5432/a now"),
    ],
)
def test_url_credentials_keep_the_host(key: str | None, url: str, expected: str) -> None:
    assert Redactor.default().redact(key, url) == expected


@pytest.mark.parametrize(
    "text",
    [
        "payment accepted (Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl)",
        "login with password=hunter2 and api_key=AKIAIOSFODNN7EXAMPLE",
        "GET https://user:pw@shop.example/cart?token=abc123&page=2",
        "card 4111 1111 1111 1111, contact bob@example.com",
    ],
)
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    redactor = Redactor.default()
    once = redactor.redact(None, text)
    assert once != text
    assert redactor.redact(None, once) == once
    assert redactor.findings(None, once) == []


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("password=Tr0ub4dor&3xyz", "3xyz"),
        ("x password=Sup3r(S3cret)! y", "S3cret"),
        ("password=hunter2;moresecret", "moresecret"),
        ("password=x{y}zSecret done", "zSecret"),
    ],
)
def test_unquoted_passwords_with_punctuation_are_removed_whole(redactor: Redactor, text: str, secret: str) -> None:
    assert secret not in redactor.redact(None, text)


def test_the_next_key_after_a_secret_is_kept(redactor: Redactor) -> None:
    assert redactor.redact(None, "a?password=abc&user=bob") == "a?password=[REDACTED:password]&user=bob"
    assert redactor.redact(None, "password=abc, user=bob") == "password=[REDACTED:password], user=bob"
