"""veil instrumentation for SQLAlchemy (>= 1.4): one CLIENT span per statement execution, sync and asyncio.

What is listened to: the `before_cursor_execute`, `after_cursor_execute` and `handle_error` events of every
`Engine` (registered on the class, so engines made before `instrument()` are covered, and `AsyncEngine`
through the engine it wraps). While SQLAlchemy executes a statement, the DB-API instrumentation underneath
(sqlite3, psycopg, psycopg2, PyMySQL) steps aside: one span per statement, not two.

Pool waits: `Engine.raw_connection` (a connection checkout from the pool, which `Engine.connect()` and every
`Session` use) is timed; a checkout that takes longer than `pool_wait_threshold` (seconds, default 0.005) is
recorded as a short INTERNAL span `pool wait` (db.client.connection.pool.name, db.system.name) next to the
query spans, so a saturated pool shows as waiting rather than as slow queries. Faster checkouts leave no trace.

What is recorded: db.system.name (from the dialect: postgresql, mysql, mariadb, sqlite, microsoft.sql_server,
oracle.db, else other_sql), db.namespace (the URL's database), server.address / server.port (the URL's),
the sanitized db.query.text (the SQL SQLAlchemy sent), db.query.summary (also the span name),
db.operation.name and db.collection.name when single, error.type and db.response.status_code of the driver's
error (not SQLAlchemy's wrapper), db.client.operation.duration.
"""

from __future__ import annotations

import os
import time
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap
from opentelemetry.semconv._incubating.attributes.db_attributes import DB_CLIENT_CONNECTION_POOL_NAME
from opentelemetry.trace import SpanKind

from veil._guard import log_once
from veil.instrumentation._db import DBInstrumentor, DBTelemetry, Endpoint, Endpoints, tracing_enabled
from veil.instrumentation._db.dbapi import start_call
from veil.instrumentation._db.telemetry import suppressed

__all__ = ["SQLAlchemyInstrumentor"]

_instruments = ("sqlalchemy >= 1.4",)
_endpoints = Endpoints()
_CALL: Final = "_veil_call"
_SYSTEMS: Final = {
    "postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mariadb",
    "sqlite": "sqlite",
    "mssql": "microsoft.sql_server",
    "oracle": "oracle.db",
}
_DIALECTS: Final = {"postgresql": "postgresql", "mysql": "mysql", "mariadb": "mysql", "sqlite": "sqlite"}
_DEFAULT_POOL_WAIT_THRESHOLD: Final = 0.005
_pool_wait_threshold = _DEFAULT_POOL_WAIT_THRESHOLD


def _describe(engine: Any) -> tuple[str, str | None, str | None, int | None, str]:
    name = engine.dialect.name
    if name == "mysql" and getattr(engine.dialect, "is_mariadb", False):
        name = "mariadb"
    url = engine.url
    database = url.database
    if name == "sqlite" and database:
        database = os.path.basename(database)
    return _SYSTEMS.get(name, "other_sql"), database or None, url.host or None, url.port, _DIALECTS.get(name, "")


def _endpoint_of(connection: Any) -> Endpoint | None:
    return _endpoints.of(connection.engine, _describe)


def _before(  # noqa: PLR0917 - the event's signature
    connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    telemetry = SQLAlchemyInstrumentor.telemetry
    # Only suppression is checked, not the step-aside flag: nothing sits above SQLAlchemy, and a flag left
    # set by a statement whose end event never came must not stop SQLAlchemy's own spans.
    if telemetry is None or context is None or suppressed():
        return
    endpoint = _endpoint_of(connection)
    if endpoint is None:
        return
    call = start_call(telemetry, endpoint, statement, parameters, executemany)
    if call is not None:
        setattr(context, _CALL, (call, call.enter()))


def _finish(context: Any, error: BaseException | None) -> None:
    entry = getattr(context, _CALL, None) if context is not None else None
    if entry is None:
        return
    setattr(context, _CALL, None)
    call, token = entry
    call.leave(token)
    call.end(error)


def _after(  # noqa: PLR0917 - the event's signature
    connection: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    _finish(context, None)


def _error(exception_context: Any) -> None:
    try:
        error = exception_context.original_exception or exception_context.sqlalchemy_exception
        _finish(exception_context.execution_context, error)
    except Exception:
        log_once("db.sqlalchemy.error", "veil: cannot record a SQLAlchemy error", exc_info=True)


def _raw_connection(wrapped: Any, engine: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = SQLAlchemyInstrumentor.telemetry
    if telemetry is None or not tracing_enabled():
        return wrapped(*args, **kwargs)
    started = time.time_ns()
    try:
        return wrapped(*args, **kwargs)
    finally:
        ended = time.time_ns()
        if ended - started >= _pool_wait_threshold * 1e9:
            _record_pool_wait(telemetry, engine, started, ended)


def _record_pool_wait(telemetry: DBTelemetry, engine: Any, started: int, ended: int) -> None:
    try:
        endpoint = _endpoints.of(engine, _describe)
        if endpoint is None:
            return
        url = engine.url
        pool_name = f"{url.host or ''}:{url.port or ''}/{url.database or ''}"
        attributes = {**endpoint.attributes, DB_CLIENT_CONNECTION_POOL_NAME: pool_name}
        span = telemetry.tracer.start_span(
            "pool wait", kind=SpanKind.INTERNAL, attributes=attributes, start_time=started
        )
        span.end(end_time=ended)
    except Exception:
        log_once("db.sqlalchemy.pool", "veil: cannot record a pool wait", exc_info=True)


_EVENTS: Final = (("before_cursor_execute", _before), ("after_cursor_execute", _after), ("handle_error", _error))


class SQLAlchemyInstrumentor(DBInstrumentor):
    """Traces SQLAlchemy. Options (read once): tracer_provider, meter_provider, sanitize_statements,
    capture_parameters, pool_wait_threshold (seconds).
    """

    _library = "sqlalchemy"
    _module = "veil.instrumentation.sqlalchemy"
    _dependencies = _instruments
    _extra_options = ("pool_wait_threshold",)

    def _patch(self, telemetry: DBTelemetry, options: dict[str, Any]) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        global _pool_wait_threshold
        threshold = options.get("pool_wait_threshold")
        _pool_wait_threshold = _DEFAULT_POOL_WAIT_THRESHOLD if threshold is None else float(threshold)
        for name, listener in _EVENTS:
            event.listen(Engine, name, listener)
        wrapt.wrap_function_wrapper(Engine, "raw_connection", _raw_connection)

    def _unpatch(self) -> None:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        for name, listener in _EVENTS:
            if event.contains(Engine, name, listener):
                event.remove(Engine, name, listener)
        unwrap(Engine, "raw_connection")
