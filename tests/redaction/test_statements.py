"""The statement sanitizer: SQL literals and Redis values never survive, names and placeholders do; it never
raises, stays bounded on huge input, and the export-side hook applies it to spans of any instrumentation.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.redaction.sql_literals import DIALECTS, planted_statements
from veil.redaction import REDACTION_COUNT_ATTRIBUTE, RedactionConfig, Redactor
from veil.redaction.export import RedactingSpanExporter
from veil.redaction.statements import (
    ERROR_TEXT,
    MAX_LENGTH,
    allow_raw_text,
    sanitize_redis,
    sanitize_sql,
    sanitized_count,
)


@pytest.mark.parametrize(
    ("dialect", "statement", "expected"),
    [
        (
            "sqlite",
            "insert into users values (1, 'alice@example.com', 'hunter2-secret')",
            "insert into users values (?)",
        ),
        (
            "postgresql",
            "SELECT * FROM t WHERE a IN (1, 2, 3) AND b = 'x''y'",
            "SELECT * FROM t WHERE a IN (?) AND b = ?",
        ),
        ("postgresql", "SELECT E'it\\'s secret' a, $tag$ body $x$ $tag$ b, $$two$$ c", "SELECT ? a, ? b, ? c"),
        ("postgresql", "SELECT 1 /* a /* nested 'quote */ still comment */ AS n", "SELECT ? AS n"),
        (
            "postgresql",
            'SELECT "Weird ""Name""" FROM "Users" WHERE id = $1',
            'SELECT "Weird ""Name""" FROM "Users" WHERE id = $1',
        ),
        (
            "mysql",
            "SELECT `col` FROM `t` WHERE x = \"secret\" # comment 'q'\n AND y = 0x1F",
            "SELECT `col` FROM `t` WHERE x = ? AND y = ?",
        ),
        ("mysql", "SELECT 'it\\'s a secret' AS a, 'next' AS b", "SELECT ? AS a, ? AS b"),
        (
            "sqlite",
            "SELECT X'ABCDEF' a, 1.5e10 b, .25 c, -7 d FROM t -- trailing 'x'",
            "SELECT ? a, ? b, ? c, -? d FROM t",
        ),
        (
            "sqlite",
            "SELECT 1, 'two', 3 FROM t WHERE (a, b) IN ((1, 2), (3, 4))",
            "SELECT ? FROM t WHERE (a, b) IN ((?))",
        ),
        ("postgresql", "INSERT INTO t (a, b) VALUES (1, 'a'), (2, 'b'), (3, 'c')", "INSERT INTO t (a, b) VALUES (?)"),
        ("postgresql", "SELECT ARRAY[1, 2, 3], t1.c2 FROM t1", "SELECT ARRAY[?], t1.c2 FROM t1"),
        ("sqlite", "SELECT a FROM t WHERE b = ? AND c = :name AND d = %s AND e = %(e)s", None),
        ("", "SELECT 'unterminated secret FROM t", "SELECT ?"),
        ("", "SELECT 1 /* never closed 'secret'", "SELECT ?"),
        ("postgresql", "SELECT $q$ never closed secret", "SELECT ?"),
        ("mysql", "  SELECT\n\t a ,\n b   FROM t  ", "SELECT a , b FROM t"),
    ],
)
def test_literals_and_comments_go_names_and_placeholders_stay(
    dialect: str, statement: str, expected: str | None
) -> None:
    assert sanitize_sql(statement, dialect) == (statement if expected is None else expected)


def test_backslashes_follow_the_dialect() -> None:
    # Standard strings (PostgreSQL, SQLite) do not escape with a backslash; MySQL's and E-strings do.
    assert sanitize_sql("SELECT 'a\\' x, 'b' y", "postgresql") == "SELECT ? x, ? y"
    assert sanitize_sql("SELECT 'a\\', secret' x, 'b' y", "mysql") == "SELECT ? x, ? y"
    # Double quotes are identifiers in PostgreSQL and SQLite, strings in MySQL and when the dialect is unknown.
    assert sanitize_sql('SELECT "x" FROM t', "sqlite") == 'SELECT "x" FROM t'
    assert sanitize_sql('SELECT "x" FROM t', "mariadb") == "SELECT ? FROM t"
    assert sanitize_sql('SELECT "x" FROM t', "some-other-db") == "SELECT ? FROM t"


def test_counts_what_it_removed_and_caches() -> None:
    statement = "SELECT * FROM users WHERE email = 'bob@example.com' -- who\n AND age > 42"
    text, removed = sanitized_count(statement, "postgresql")
    assert text == "SELECT * FROM users WHERE email = ? AND age > ?"
    assert removed == 3  # two literals and a comment
    assert sanitized_count(statement, "postgresql") is sanitized_count(statement, "postgresql")
    assert sanitized_count(text, "postgresql") == (text, 0)  # sanitized text is a fixed point


def test_huge_statements_are_cut_and_stay_bounded() -> None:
    statement = "SELECT " + ", ".join(f"'secret-{index}'" for index in range(300_000))
    started = time.perf_counter()
    text = sanitize_sql(statement, "postgresql")
    assert time.perf_counter() - started < 5  # generous: linear scan of MAX_LENGTH characters
    assert text.endswith(" ...")
    assert "secret" not in text
    assert len(text) <= MAX_LENGTH + 4


def test_an_unterminated_quote_at_the_cut_swallows_the_rest() -> None:
    statement = "SELECT " + "x, " * (MAX_LENGTH // 3) + "'secret that runs past the cut " + "y" * 100 + "'"
    assert "secret" not in sanitize_sql(statement, "sqlite")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_on_any_text(text: str) -> None:
    for dialect in DIALECTS:
        result = sanitize_sql(text, dialect)
        assert isinstance(result, str)
        assert "\x00" not in result


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted_statements())
def test_planted_literals_never_survive(planted: tuple[str, str, list[str]]) -> None:
    dialect, statement, secrets = planted
    text = sanitize_sql(statement, dialect)
    for secret in secrets:
        assert secret not in text, (dialect, statement, text)


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ((b"SET", b"user:42", b"alice-secret"), "SET user:42 ?"),
        (("SET", "session:9", "token-value", "EX", 60), "SET session:9 ? ? ?"),
        (("AUTH", "hunter2"), "AUTH ?"),
        (("AUTH", "admin", "hunter2"), "AUTH ?"),
        (("HSET", "user:42", "email", "a@b.example", "name", "Alice"), "HSET user:42 email ? name ?"),
        (("MSET", "a", "1", "b", "2"), "MSET a ? b ?"),
        (("GET", "user:42"), "GET user:42"),
        (("MGET", "k1", "k2"), "MGET k1 k2"),
        (("PING",), "PING"),
        (("CONFIG", "SET", "requirepass", "hunter2"), "CONFIG ?"),
        (("EVAL", "return redis.call('get', 'x')", 0), "EVAL ?"),
        ((), ""),
    ],
)
def test_redis_keeps_command_and_key_names_only(command: tuple[object, ...], expected: str) -> None:
    assert sanitize_redis(command) == expected


def test_redis_never_raises() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert sanitize_redis((Broken(), "x")) == ERROR_TEXT


# ------------------------------------------------------------------------------------- export-side hook


def _exported(attributes: dict[str, object], scope: str, config: RedactionConfig | None = None) -> dict[str, object]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(RedactingSpanExporter(exporter, Redactor(config))))
    provider.get_tracer(scope).start_span("INSERT", attributes=attributes).end()  # type: ignore[arg-type]
    (span,) = exporter.get_finished_spans()
    provider.shutdown()
    return dict(span.attributes or {})


def test_statements_of_other_instrumentations_are_sanitized_at_export() -> None:
    # The case: contrib's sqlite3 records the old db.statement; nothing marks the password as one.
    statement = "insert into users values (1, 'alice@example.com', 'hunter2-secret')"
    exported = _exported(
        {"db.system": "sqlite", "db.statement": statement, "db.query.text": statement},
        "opentelemetry.instrumentation.sqlite3",
    )
    assert exported["db.statement"] == exported["db.query.text"] == "insert into users values (?)"
    assert exported[REDACTION_COUNT_ATTRIBUTE] >= 2


def test_redis_statements_are_sanitized_as_commands_at_export() -> None:
    exported = _exported({"db.system": "redis", "db.statement": "SET user:42 alice-secret"}, "some.redis.lib")
    assert exported["db.statement"] == "SET user:42 ?"


def test_a_library_opted_out_keeps_its_raw_text_but_others_do_not() -> None:
    statement = "select * from t where name = 'visible-in-dev'"
    allow_raw_text("tests.raw-scope")
    assert _exported({"db.query.text": statement}, "tests.raw-scope")["db.query.text"] == statement
    assert (
        _exported({"db.query.text": statement}, "tests.other-scope")["db.query.text"]
        == "select * from t where name = ?"
    )


def test_redaction_sql_off_turns_the_export_side_sanitizer_off() -> None:
    statement = "select * from t where name = 'dev'"
    exported = _exported({"db.query.text": statement}, "tests.other-scope", RedactionConfig(sql="off"))
    assert exported["db.query.text"] == statement


def test_a_statement_that_is_not_text_is_never_exported() -> None:
    exported = _exported({"db.statement": ("select 'a'", "b")}, "tests.other-scope")
    assert exported["db.statement"] == ERROR_TEXT
