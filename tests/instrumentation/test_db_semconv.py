"""Database conventions without a server: summaries and span names from statements, batches, endpoints."""

from __future__ import annotations

import pytest

from veil.instrumentation._db.semconv import Endpoint, shape_of, sql_statement, summarize_sql


@pytest.mark.parametrize(
    ("statement", "summary", "operation", "collection"),
    [
        ("SELECT * FROM orders WHERE id = ?", "SELECT orders", "SELECT", "orders"),
        ("select o.id from orders o join users u on u.id = o.user_id", "SELECT orders users", "SELECT", None),
        ("INSERT INTO shipping (id) SELECT id FROM orders", "INSERT shipping SELECT orders", None, None),
        ("UPDATE public.users SET name = ? WHERE id = ?", "UPDATE public.users", "UPDATE", "public.users"),
        ("DELETE FROM sessions", "DELETE sessions", "DELETE", "sessions"),
        ("CREATE TABLE IF NOT EXISTS t (id int)", "CREATE TABLE t", "CREATE TABLE", "t"),
        ("WITH recent AS (SELECT * FROM orders) SELECT * FROM recent", "SELECT orders SELECT recent", None, None),
        ("BEGIN", "BEGIN", "BEGIN", None),
        ("hunter2 is not a statement", "", None, None),
        ("SELEC 1", "", None, None),
    ],
)
def test_summaries_name_operations_and_tables_only(
    statement: str, summary: str, operation: str | None, collection: str | None
) -> None:
    assert summarize_sql(statement) == (summary, operation, collection)


def test_a_statement_without_a_summary_is_named_after_the_system() -> None:
    endpoint = Endpoint("postgresql", "shop", "db.internal", 5432)
    shape = shape_of(endpoint, sql_statement("hunter2 secret words", "postgresql", True), None, dup=False)
    assert shape.name == "postgresql"
    assert "hunter2" not in shape.name


def test_batches_are_prefixed_and_sized() -> None:
    endpoint = Endpoint("sqlite", None, None, None)
    shape = shape_of(endpoint, sql_statement("INSERT INTO t VALUES (?)", "sqlite", True), 3, dup=False)
    assert shape.name == "BATCH INSERT t"
    assert shape.attributes["db.operation.batch.size"] == 3
    assert "db.operation.batch.size" not in shape.metric_attributes
    single = shape_of(endpoint, sql_statement("INSERT INTO t VALUES (?)", "sqlite", True), 1, dup=False)
    assert single.name == "INSERT t"
