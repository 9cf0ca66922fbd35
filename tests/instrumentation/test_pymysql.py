"""PyMySQLInstrumentor against a real MariaDB (a password login): attributes, connect spans, errors, one span per
executemany, N+1, and the planted-literal property through the OTLP receiver.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pymysql
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
from veil.instrumentation.pymysql import PyMySQLInstrumentor

traced = traced_fixture(PyMySQLInstrumentor)


def connect(server: Server, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "host": server.host,
        "port": server.port,
        "user": server.user,
        "password": server.password,
        "database": server.database,
        "autocommit": True,
        "connect_timeout": 3,
    }
    return pymysql.connect(**{**values, **overrides})


@pytest.fixture
def connection(mariadb_server: Server, traced: DBRecording) -> Iterator[Any]:
    connection = connect(mariadb_server)
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE IF EXISTS accounts")
        cursor.execute("CREATE TABLE accounts (id INT PRIMARY KEY, login VARCHAR(64) UNIQUE, secret VARCHAR(64))")
        cursor.execute("INSERT INTO accounts VALUES (1, 'alice', 'a-secret'), (2, 'bob', 'b-secret')")
    traced.exporter.clear()
    yield connection
    connection.close()


def test_attributes_and_parentage(traced: DBRecording, connection: Any, mariadb_server: Server) -> None:
    with traced.request() as request, connection.cursor() as cursor:
        cursor.execute("SELECT login FROM accounts WHERE secret = %s", ("a-secret",))
        assert cursor.fetchone() == ("alice",)
    span = traced.only()
    assert_children_of([span], request)
    assert span.name == "SELECT accounts"
    assert attributes(span) == {
        "db.system.name": "mariadb",
        "db.namespace": "veil",
        "server.address": "127.0.0.1",
        "server.port": mariadb_server.port,
        "db.operation.name": "SELECT",
        "db.collection.name": "accounts",
        "db.query.summary": "SELECT accounts",
        "db.query.text": "SELECT login FROM accounts WHERE secret = %s",  # as written, before interpolation
    }


def test_connect_span_and_a_refused_connection(traced: DBRecording, mariadb_server: Server) -> None:
    connect(mariadb_server).close()
    assert attributes(traced.only("connect"))["server.port"] == mariadb_server.port
    traced.exporter.clear()
    with pytest.raises(pymysql.err.OperationalError) as raised:
        connect(mariadb_server, port=free_port())
    assert raised.value.args[0] == 2003
    assert_failed_once(traced, "2003", "2003")


def test_a_wrong_password_is_recorded_on_the_connect_span(traced: DBRecording, mariadb_server: Server) -> None:
    with pytest.raises(pymysql.err.OperationalError):
        connect(mariadb_server, password="wrong-password")
    span = assert_failed_once(traced, "1045", "1045")
    assert "wrong-password" not in str(attributes(span))


@pytest.mark.parametrize(
    ("statement", "error", "code"),
    [
        ("SELEC 1", pymysql.err.ProgrammingError, "1064"),
        ("INSERT INTO accounts VALUES (3, 'alice', 'x')", pymysql.err.IntegrityError, "1062"),
    ],
)
def test_errors_are_recorded_once(
    traced: DBRecording, connection: Any, statement: str, error: type[Exception], code: str
) -> None:
    with pytest.raises(error), connection.cursor() as cursor:
        cursor.execute(statement)
    assert_failed_once(traced, code, code)


def test_executemany_is_one_span_and_n_plus_one_is_n(traced: DBRecording, connection: Any) -> None:
    with traced.request() as request, connection.cursor() as cursor:
        cursor.executemany("INSERT INTO accounts VALUES (%s, %s, %s)", [(5, "c", "s1"), (6, "d", "s2")])
        for account_id in (1, 2, 5, 6):
            cursor.execute("SELECT login FROM accounts WHERE id = %s", (account_id,))
    batch, *selects = traced.client_spans()
    assert batch.name == "BATCH INSERT accounts"
    assert attributes(batch)["db.operation.batch.size"] == 2
    assert len(selects) == 4
    assert_children_of([batch, *selects], request)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(planted=planted_statements(("mysql",)))
def test_planted_literals_never_reach_the_receiver(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    mariadb_server: Server,
    planted: tuple[str, str, list[str]],
) -> None:
    _, statement, secrets = planted
    with veil_over_otlp(configure_veil, otlp_receiver, "pymysql") as handle:
        connection = connect(mariadb_server)
        with contextlib.suppress(pymysql.MySQLError), connection.cursor() as cursor:
            cursor.execute(statement)
        connection.close()
        assert assert_never_exported(handle, otlp_receiver, secrets) == 2
