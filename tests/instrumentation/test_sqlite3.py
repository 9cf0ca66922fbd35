"""SQLite3Instrumentor: spans, attributes, errors, N+1 under a real Flask request, the planted-literal property
through the OTLP receiver, the raw-text opt-out, dup mode, and contrib's sqlite3 instrumentation under veil.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from opentelemetry.trace import StatusCode

import veil
from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation._databases import (
    DBRecording,
    assert_children_of,
    assert_failed_once,
    assert_never_exported,
    attributes,
    duration_points,
    traced_fixture,
    tracing,
    veil_over_otlp,
)
from tests.redaction.sql_literals import planted_statements
from veil.instrumentation.flask import FlaskInstrumentor
from veil.instrumentation.sqlite3 import SQLite3Instrumentor

traced = traced_fixture(SQLite3Instrumentor)


def users(path: str = ":memory:") -> sqlite3.Connection:
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT UNIQUE, password TEXT)")
    return connection


def test_queries_under_a_request_are_its_children_with_stable_attributes(traced: DBRecording) -> None:
    connection = users()
    with traced.request() as request:
        connection.execute("INSERT INTO users VALUES (1, 'alice@example.com', 'hunter2-secret')")
        cursor = connection.cursor()
        cursor.execute("SELECT email FROM users WHERE id = ?", (1,))
        assert cursor.fetchall() == [("alice@example.com",)]
    create, insert, select = traced.client_spans()
    assert_children_of([insert, select], request)
    assert create.parent is None
    assert insert.name == "INSERT users"
    assert attributes(insert) == {
        "db.system.name": "sqlite",
        "db.namespace": ":memory:",
        "db.operation.name": "INSERT",
        "db.collection.name": "users",
        "db.query.summary": "INSERT users",
        "db.query.text": "INSERT INTO users VALUES (?)",
    }
    assert select.name == "SELECT users"
    assert attributes(select)["db.query.text"] == "SELECT email FROM users WHERE id = ?"
    assert select.status.status_code is StatusCode.UNSET
    (point,) = [p for p in duration_points(traced) if p.attributes.get("db.operation.name") == "SELECT"]
    assert point.count == 1
    assert dict(point.attributes) == {
        "db.system.name": "sqlite",
        "db.namespace": ":memory:",
        "db.operation.name": "SELECT",
        "db.collection.name": "users",
        "db.query.summary": "SELECT users",
    }


def test_connection_is_a_real_sqlite3_connection_and_context_managers_work(traced: DBRecording, tmp_path) -> None:
    path = str(tmp_path / "shop.db")
    with users(path) as connection:
        assert isinstance(connection, sqlite3.Connection)
        assert type(connection).__name__ == "Connection"
        connection.execute("SELECT 1")
    connection.close()
    assert {attributes(span)["db.namespace"] for span in traced.client_spans()} == {"shop.db"}


def test_executemany_is_one_batch_span(traced: DBRecording) -> None:
    connection = users()
    connection.executemany("INSERT INTO users (email) VALUES (?)", [("a",), ("b",), ("c",)])
    span = traced.only("BATCH INSERT users")
    assert attributes(span)["db.operation.batch.size"] == 3
    assert attributes(span)["db.operation.name"] == "BATCH INSERT"
    rows = iter([("d",), ("e",)])
    connection.executemany("INSERT INTO users (email) VALUES (?)", rows)  # an iterator is not consumed by veil
    assert connection.execute("SELECT count(*) FROM users").fetchone() == (5,)


@pytest.mark.parametrize(
    ("statement", "error", "error_type"),
    [
        ("SELEC * FROM users", sqlite3.OperationalError, "SQLITE_ERROR"),
        (
            "INSERT INTO users VALUES (1, 'dup@example.com', 'x')",
            sqlite3.IntegrityError,
            "SQLITE_CONSTRAINT_PRIMARYKEY",
        ),
    ],
)
def test_errors_are_recorded_once_and_the_application_gets_its_exception(
    traced: DBRecording, statement: str, error: type[Exception], error_type: str
) -> None:
    connection = users()
    connection.execute("INSERT INTO users VALUES (1, 'dup@example.com', 'x')")
    with pytest.raises(error) as raised:
        connection.execute(statement)
    assert type(raised.value) is error
    span = assert_failed_once(traced, error_type, error_type)
    assert "dup@example.com" not in str(attributes(span))


def test_a_database_that_cannot_be_opened_raises_as_without_veil(traced: DBRecording, tmp_path) -> None:
    with pytest.raises(sqlite3.OperationalError, match="unable to open database file"):
        sqlite3.connect(str(tmp_path / "missing-dir" / "x.db"))
    assert traced.client_spans() == []  # no query ran: nothing to record


def test_n_plus_one_queries_are_n_spans_under_one_flask_request(traced: DBRecording) -> None:
    connection = users()
    connection.executemany("INSERT INTO users (email) VALUES (?)", [(f"user{i}@example.com",) for i in range(5)])
    app = Flask(__name__)

    @app.route("/users")
    def list_users() -> str:
        ids = [row[0] for row in connection.execute("SELECT id FROM users").fetchall()]
        for user_id in ids:  # one query per user: the N+1 pattern
            connection.execute("SELECT email FROM users WHERE id = ?", (user_id,)).fetchone()
        return str(len(ids))

    FlaskInstrumentor.instrument_app(app, **traced.providers)
    assert app.test_client().get("/users").data == b"5"
    (server,) = [span for span in traced.finished() if span.name == "GET /users"]
    per_user = [span for span in traced.client_spans() if attributes(span)["db.query.text"].endswith("id = ?")]
    assert len(per_user) == 5
    assert_children_of(per_user, server)


def test_raw_statements_opt_out() -> None:
    with tracing(SQLite3Instrumentor, sanitize_statements=False) as providers:
        connection = users()
        connection.execute("INSERT INTO users VALUES (7, 'dev@example.com', 'dev')")
        span = providers.only("INSERT users")
        assert attributes(span)["db.query.text"] == "INSERT INTO users VALUES (7, 'dev@example.com', 'dev')"


def test_dup_mode_adds_the_old_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "database/dup")
    with tracing(SQLite3Instrumentor) as providers:
        users().execute("SELECT * FROM users WHERE id = 5")
        span = providers.only("SELECT users")
        old = attributes(span)
        assert old["db.system"] == "sqlite"
        assert old["db.statement"] == old["db.query.text"] == "SELECT * FROM users WHERE id = ?"
        assert old["db.name"] == ":memory:"
        assert old["db.sql.table"] == "users"


def test_uninstrument_leaves_existing_connections_untraced(traced: DBRecording) -> None:
    connection = users()
    SQLite3Instrumentor().uninstrument()
    connection.execute("SELECT 1")
    sqlite3.connect(":memory:").execute("SELECT 1")
    assert [span.name for span in traced.client_spans()] == ["CREATE TABLE users"]
    SQLite3Instrumentor().instrument(**traced.providers)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planted=planted_statements(("sqlite",)))
def test_planted_literals_never_reach_the_receiver(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver, planted: tuple[str, str, list[str]]
) -> None:
    _, statement, secrets = planted
    with veil_over_otlp(configure_veil, otlp_receiver, "sqlite3") as handle:
        connection = sqlite3.connect(":memory:")
        connection.execute("CREATE TABLE users (id, name, email, note)")
        with contextlib.suppress(sqlite3.Error):  # a failing statement is recorded too
            connection.execute(statement)
        assert assert_never_exported(handle, otlp_receiver, secrets) == 2


def test_contrib_sqlite3_under_veil_gets_sanitized_text(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    """The contrib sqlite3 instrumentation is dbapi's `wrap_connect` on `sqlite3.connect` (that package is pinned
    to older SDKs, so its dbapi core, which follows the SDK, stands in for it)."""
    from opentelemetry.instrumentation import dbapi

    handle = configure_veil(
        service_name="contrib",
        traces_exporter="otlp",
        metrics_exporter="none",
        logs_exporter="none",
        otlp_protocol="http/protobuf",
        otlp_endpoint=otlp_receiver.http_endpoint,
    )
    dbapi.wrap_connect("opentelemetry.instrumentation.sqlite3", sqlite3, "connect", "sqlite")
    try:
        cursor = sqlite3.connect(":memory:").cursor()  # contrib traces cursors, not Connection.execute
        cursor.execute("CREATE TABLE users (id, email, password)")
        cursor.execute("insert into users values (1, 'alice@example.com', 'hunter2-secret')")
    finally:
        dbapi.unwrap_connect(sqlite3, "connect")
    assert handle.force_flush()
    (span,) = [span for span in otlp_receiver.spans() if span.name.upper().startswith("INSERT")]
    assert span.scope_name.startswith("opentelemetry.instrumentation")
    text = span.attributes.get("db.statement") or span.attributes.get("db.query.text")
    assert text == "insert into users values (?)"
    assert "hunter2" not in str(span.attributes)
