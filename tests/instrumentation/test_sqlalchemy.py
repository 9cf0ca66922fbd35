"""SQLAlchemyInstrumentor: one span per statement with the driver layer stepping aside, engines made before
instrument(), PostgreSQL attributes and errors, the asyncio engine under concurrency, ORM N+1, and pool waits.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from tests.fixtures.databases import Server
from tests.instrumentation._databases import (
    DBRecording,
    assert_children_of,
    assert_failed_once,
    attributes,
    traced_fixture,
)
from veil.instrumentation.psycopg import PsycopgInstrumentor
from veil.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from veil.instrumentation.sqlite3 import SQLite3Instrumentor

traced = traced_fixture(SQLAlchemyInstrumentor, SQLite3Instrumentor, PsycopgInstrumentor)


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(unique=True)


def url(server: Server, driver: str = "psycopg") -> str:
    return f"postgresql+{driver}://{server.user}:{server.password}@{server.host}:{server.port}/{server.database}"


@pytest.fixture
def postgres(postgres_server: Server, traced: DBRecording) -> Iterator[sa.Engine]:
    engine = sa.create_engine(url(postgres_server))
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Product(id=1, sku="lamp-1"), Product(id=2, sku="desk-2")])
        session.commit()
    traced.exporter.clear()
    yield engine
    engine.dispose()


def scopes(traced: DBRecording) -> list[str]:
    return [span.instrumentation_scope.name for span in traced.client_spans() if span.instrumentation_scope]


def test_one_span_per_statement_the_driver_steps_aside(traced: DBRecording) -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as connection:  # the dialect's own first-connect queries are not ours
        traced.exporter.clear()
        with traced.request() as request:
            connection.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)"))
            connection.execute(sa.text("INSERT INTO t VALUES (1, 'secret-name')"))
            connection.execute(
                sa.text("INSERT INTO t VALUES (:id, :name)"), [{"id": 2, "name": "a"}, {"id": 3, "name": "b"}]
            )
    assert scopes(traced) == ["veil.instrumentation.sqlalchemy"] * 3
    create, insert, batch = traced.client_spans()
    assert_children_of([create, insert, batch], request)
    assert attributes(insert) == {
        "db.system.name": "sqlite",
        "db.operation.name": "INSERT",
        "db.collection.name": "t",
        "db.query.summary": "INSERT t",
        "db.query.text": "INSERT INTO t VALUES (?)",
    }
    assert batch.name == "BATCH INSERT t"
    assert attributes(batch)["db.operation.batch.size"] == 2


def test_engines_made_before_instrument_are_traced() -> None:
    engine = sa.create_engine("sqlite://")
    from tests.instrumentation._databases import tracing

    with tracing(SQLAlchemyInstrumentor) as recording, engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    assert [span.name for span in recording.client_spans()] == ["SELECT"]


def test_postgres_attributes_and_orm_n_plus_one(
    traced: DBRecording, postgres: sa.Engine, postgres_server: Server
) -> None:
    with traced.request() as request, Session(postgres) as session:
        ids = session.scalars(sa.select(Product.id)).all()
        for product_id in ids:  # one query per row: N+1
            session.get(Product, product_id)
    spans = [span for span in traced.client_spans() if span.name == "SELECT products"]
    assert len(spans) == 1 + len(ids) == 3
    assert_children_of(spans, request)
    assert "veil.instrumentation.psycopg" not in scopes(traced)  # the driver layer stepped aside
    attrs = attributes(spans[1])
    assert attrs["db.system.name"] == "postgresql"
    assert attrs["db.namespace"] == "veil"
    assert (attrs["server.address"], attrs["server.port"]) == ("127.0.0.1", postgres_server.port)
    assert attrs["db.query.text"] == (
        "SELECT products.id, products.sku FROM products WHERE products.id = %(pk_1)s::INTEGER"
    )


def test_errors_carry_the_driver_sqlstate_and_the_application_gets_sqlalchemys_exception(
    traced: DBRecording, postgres: sa.Engine
) -> None:
    with Session(postgres) as session:
        session.add(Product(id=9, sku="lamp-1"))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()
    span = assert_failed_once(traced, "23505", "23505")
    assert "lamp-1" not in str(attributes(span))
    assert "veil.instrumentation.psycopg" not in scopes(traced)  # no duplicate error span from the driver


async def test_async_engine_under_concurrent_requests_does_not_bleed(
    traced: DBRecording, postgres: sa.Engine, postgres_server: Server
) -> None:
    engine = create_async_engine(url(postgres_server), pool_size=3)

    async def one_request(index: int) -> tuple[int, Any]:
        with traced.request(f"GET /products/{index}") as request:
            async with engine.connect() as connection:
                for _ in range(2):
                    await connection.execute(sa.text("SELECT pg_sleep(0.01), :i"), {"i": index})
        return index, request

    try:
        requests = dict(await asyncio.gather(*(one_request(index) for index in range(6))))
    finally:
        await engine.dispose()
    queries = [span for span in traced.client_spans() if "pg_sleep" in attributes(span).get("db.query.text", "")]
    assert len(queries) == 12  # the dialect's own first-connect queries aside
    assert {span.instrumentation_scope.name for span in queries if span.instrumentation_scope} == {
        "veil.instrumentation.sqlalchemy"
    }
    counts: dict[int, int] = {}
    for span in queries:
        assert span.parent is not None
        counts[span.parent.span_id] = counts.get(span.parent.span_id, 0) + 1
    assert counts == {request.context.span_id: 2 for request in requests.values()}


def test_a_pool_wait_above_the_threshold_is_a_short_span(traced: DBRecording, postgres_server: Server) -> None:
    engine = sa.create_engine(url(postgres_server), pool_size=1, max_overflow=0, pool_timeout=10)
    engine.connect().close()  # the pool's one connection exists: what follows is waiting, not connecting
    traced.exporter.clear()
    held = threading.Event()

    def hold() -> None:
        with engine.connect():
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(5)
    with traced.request() as request, engine.connect() as connection:
        connection.execute(sa.text("SELECT 1"))
    holder.join()
    engine.dispose()
    (wait,) = [span for span in traced.finished() if span.name == "pool wait"]
    assert_children_of([wait], request)
    assert wait.end_time is not None and wait.start_time is not None
    assert wait.end_time - wait.start_time >= 0.1e9
    assert attributes(wait)["db.client.connection.pool.name"] == f"127.0.0.1:{postgres_server.port}/veil"
    (query,) = [span for span in traced.client_spans() if span.name == "SELECT"]
    assert query.start_time is not None and query.start_time >= wait.end_time  # the wait is not in the query


def test_a_step_aside_flag_left_set_does_not_stop_sqlalchemys_spans(traced: DBRecording) -> None:
    from veil.instrumentation._db.telemetry import _INSIDE

    engine = sa.create_engine("sqlite://")
    token = _INSIDE.set(True)  # as if a statement's end event had never come
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    finally:
        _INSIDE.reset(token)
    assert [span.name for span in traced.client_spans() if span.name == "SELECT"] == ["SELECT"]
