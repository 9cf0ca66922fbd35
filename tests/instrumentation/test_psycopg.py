"""PsycopgInstrumentor against a real PostgreSQL: attributes, connect spans, errors, async concurrency without
bleed, N+1, composed SQL, and the planted-literal property through the OTLP receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from psycopg import sql

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
from veil.instrumentation.psycopg import PsycopgInstrumentor

traced = traced_fixture(PsycopgInstrumentor)


def options(server: Server, **overrides: Any) -> dict[str, Any]:
    values = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "dbname": server.database,
    }
    return {**values, **overrides}


@pytest.fixture
def connection(postgres_server: Server, traced: DBRecording) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(**options(postgres_server), autocommit=True) as connection:
        connection.execute("DROP TABLE IF EXISTS orders")
        connection.execute("CREATE TABLE orders (id integer PRIMARY KEY, email text UNIQUE, total numeric)")
        connection.execute("INSERT INTO orders VALUES (1, 'alice@example.com', 10), (2, 'bob@example.com', 20)")
        traced.exporter.clear()
        yield connection


def test_queries_are_children_of_the_request_with_server_attributes(
    traced: DBRecording, connection: psycopg.Connection[Any], postgres_server: Server
) -> None:
    with traced.request() as request:
        row = connection.execute("SELECT email FROM orders WHERE id = %s", (1,)).fetchone()
        with connection.cursor() as cursor:
            cursor.execute("UPDATE orders SET total = total + 1 WHERE email = 'bob@example.com'")
    assert row == ("alice@example.com",)
    select, update = traced.client_spans()
    assert_children_of([select, update], request)
    assert select.name == "SELECT orders"
    assert attributes(select) == {
        "db.system.name": "postgresql",
        "db.namespace": "veil",
        "server.address": "127.0.0.1",
        "server.port": postgres_server.port,
        "db.operation.name": "SELECT",
        "db.collection.name": "orders",
        "db.query.summary": "SELECT orders",
        "db.query.text": "SELECT email FROM orders WHERE id = %s",
    }
    assert update.name == "UPDATE orders"
    assert attributes(update)["db.query.text"] == "UPDATE orders SET total = total + ? WHERE email = ?"


def test_connect_is_a_span_and_a_refused_connection_is_recorded_once(
    traced: DBRecording, postgres_server: Server
) -> None:
    psycopg.connect(**options(postgres_server)).close()
    connect = traced.only("connect")
    assert attributes(connect)["server.port"] == postgres_server.port
    traced.exporter.clear()
    port = free_port()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(**options(postgres_server, port=port, connect_timeout=3))
    span = assert_failed_once(traced, "psycopg.OperationalError")
    assert attributes(span)["server.port"] == port


@pytest.mark.parametrize(
    ("statement", "error", "code"),
    [
        ("SELEC 1", psycopg.errors.SyntaxError, "42601"),
        ("INSERT INTO orders VALUES (3, 'alice@example.com', 1)", psycopg.errors.UniqueViolation, "23505"),
    ],
)
def test_errors_carry_the_sqlstate_and_reach_the_application_untouched(
    traced: DBRecording, connection: psycopg.Connection[Any], statement: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error) as raised:
        connection.execute(statement)
    assert raised.value.sqlstate == code  # type: ignore[attr-defined]
    span = assert_failed_once(traced, code, code)
    assert "alice@example.com" not in str(attributes(span))


def test_n_plus_one_is_n_spans_under_one_request(traced: DBRecording, connection: psycopg.Connection[Any]) -> None:
    with traced.request() as request:
        for order_id in (1, 2, 1, 2):
            connection.execute("SELECT total FROM orders WHERE id = %s", (order_id,)).fetchone()
    spans = traced.client_spans()
    assert [span.name for span in spans] == ["SELECT orders"] * 4
    assert_children_of(spans, request)


def test_composed_sql_and_executemany(traced: DBRecording, connection: psycopg.Connection[Any]) -> None:
    query = sql.SQL("SELECT {} FROM {} WHERE id = {}").format(
        sql.Identifier("email"), sql.Identifier("orders"), sql.Literal(1)
    )
    connection.execute(query)
    with connection.cursor() as cursor:
        cursor.executemany("INSERT INTO orders (id, email) VALUES (%s, %s)", [(10, "x"), (11, "y")])
    select, batch = traced.client_spans()
    assert attributes(select)["db.query.text"] == 'SELECT "email" FROM "orders" WHERE id = ?'
    assert batch.name == "BATCH INSERT orders"
    assert attributes(batch)["db.operation.batch.size"] == 2


async def test_async_queries_under_concurrent_requests_do_not_bleed(
    traced: DBRecording, connection: psycopg.Connection[Any], postgres_server: Server
) -> None:
    async def one_request(index: int) -> tuple[int, Any]:
        with traced.request(f"GET /orders/{index}") as request:
            async with await psycopg.AsyncConnection.connect(**options(postgres_server)) as conn:
                for _ in range(3):
                    await conn.execute("SELECT pg_sleep(0.01), %s::int", (index,))
                    await asyncio.sleep(0)
        return index, request

    requests = dict(await asyncio.gather(*(one_request(index) for index in range(6))))
    queries = [span for span in traced.client_spans() if span.name == "SELECT"]
    assert len(queries) == 18
    by_parent: dict[int, int] = {}
    for span in queries:
        assert span.parent is not None
        by_parent[span.parent.span_id] = by_parent.get(span.parent.span_id, 0) + 1
    assert by_parent == {request.context.span_id: 3 for request in requests.values()}
    connects = [span for span in traced.client_spans() if span.name == "connect"]
    assert {span.parent.span_id for span in connects if span.parent} == set(by_parent)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planted=planted_statements(("postgresql",)))
def test_planted_literals_never_reach_the_receiver(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    postgres_server: Server,
    planted: tuple[str, str, list[str]],
) -> None:
    _, statement, secrets = planted
    with veil_over_otlp(configure_veil, otlp_receiver, "psycopg") as handle:
        # unknown tables fail: the failure is recorded too
        with psycopg.connect(**options(postgres_server), autocommit=True) as conn, contextlib.suppress(psycopg.Error):
            conn.execute(statement)
        assert assert_never_exported(handle, otlp_receiver, secrets) == 2  # connect and the statement
