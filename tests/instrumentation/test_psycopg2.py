"""Psycopg2Instrumentor against a real PostgreSQL: real psycopg2 objects (extras keep working), attributes,
errors, N+1, execute_values, and the planted-literal property through the OTLP receiver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import pytest
from hypothesis import HealthCheck, given, settings

import veil
from tests.fixtures.databases import Server
from tests.fixtures.otlp import OTLPReceiver
from tests.instrumentation._databases import (
    DBRecording,
    assert_children_of,
    assert_failed_once,
    assert_never_exported,
    attributes,
    traced_fixture,
    veil_over_otlp,
)
from tests.instrumentation._recording import free_port
from tests.redaction.sql_literals import planted_statements
from veil.instrumentation.psycopg2 import Psycopg2Instrumentor

traced = traced_fixture(Psycopg2Instrumentor)


def dsn(server: Server, port: int | None = None) -> str:
    return (
        f"host={server.host} port={port or server.port} user={server.user} password={server.password} "
        f"dbname={server.database} connect_timeout=3"
    )


@pytest.fixture
def connection(postgres_server: Server, traced: DBRecording) -> Iterator[Any]:
    connection = psycopg2.connect(dsn(postgres_server))
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS items")
        cursor.execute("CREATE TABLE items (id integer PRIMARY KEY, name text UNIQUE, data jsonb)")
        cursor.execute("INSERT INTO items VALUES (1, 'lamp', '{}'), (2, 'desk', '{}')")
    traced.exporter.clear()
    yield connection
    connection.close()


def test_connections_and_cursors_stay_real_psycopg2_objects(traced: DBRecording, connection: Any) -> None:
    assert isinstance(connection, psycopg2.extensions.connection)
    psycopg2.extras.register_default_jsonb(connection)  # a C-level type check on the connection
    with connection.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cursor:
        assert isinstance(cursor, psycopg2.extras.RealDictCursor)
        cursor.execute("SELECT id, name FROM items WHERE id = %s", (2,))
        assert cursor.fetchone() == {"id": 2, "name": "desk"}
    span = traced.only("SELECT items")
    assert attributes(span)["db.query.text"] == "SELECT id, name FROM items WHERE id = %s"


def test_attributes_and_parentage(traced: DBRecording, connection: Any, postgres_server: Server) -> None:
    with traced.request() as request, connection.cursor() as cursor:
        cursor.execute("DELETE FROM items WHERE name = 'desk'")
    span = traced.only()
    assert_children_of([span], request)
    assert attributes(span) == {
        "db.system.name": "postgresql",
        "db.namespace": "veil",
        "server.address": "127.0.0.1",
        "server.port": postgres_server.port,
        "db.operation.name": "DELETE",
        "db.collection.name": "items",
        "db.query.summary": "DELETE items",
        "db.query.text": "DELETE FROM items WHERE name = ?",
    }


@pytest.mark.parametrize(
    ("statement", "error", "code"),
    [
        ("SELEC 1", psycopg2.errors.SyntaxError, "42601"),
        ("INSERT INTO items (id, name) VALUES (9, 'lamp')", psycopg2.errors.UniqueViolation, "23505"),
    ],
)
def test_errors_are_recorded_once(
    traced: DBRecording, connection: Any, statement: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error), connection.cursor() as cursor:
        cursor.execute(statement)
    assert_failed_once(traced, code, code)


def test_a_refused_connection_is_recorded_once(traced: DBRecording, postgres_server: Server) -> None:
    with pytest.raises(psycopg2.OperationalError):
        psycopg2.connect(dsn(postgres_server, free_port()))
    assert_failed_once(traced, "psycopg2.OperationalError")


def test_n_plus_one_and_execute_values(traced: DBRecording, connection: Any) -> None:
    with traced.request() as request, connection.cursor() as cursor:
        for item_id in (1, 2, 1):
            cursor.execute("SELECT name FROM items WHERE id = %s", (item_id,))
        psycopg2.extras.execute_values(cursor, "INSERT INTO items (id, name) VALUES %s", [(5, "chair"), (6, "shelf")])
    *selects, insert = traced.client_spans()
    assert len(selects) == 3
    assert_children_of([*selects, insert], request)
    assert attributes(insert)["db.query.text"] == "INSERT INTO items (id, name) VALUES (?)"  # values inlined


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planted=planted_statements(("postgresql",)))
def test_planted_literals_never_reach_the_receiver(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    postgres_server: Server,
    planted: tuple[str, str, list[str]],
) -> None:
    _, statement, secrets = planted
    with veil_over_otlp(configure_veil, otlp_receiver, "psycopg2") as handle:
        connection = psycopg2.connect(dsn(postgres_server))
        connection.autocommit = True
        with contextlib.suppress(psycopg2.Error), connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()
        assert assert_never_exported(handle, otlp_receiver, secrets) == 2
