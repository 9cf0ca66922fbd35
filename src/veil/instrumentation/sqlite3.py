"""veil instrumentation for sqlite3 (the standard library): one CLIENT span per `execute` / `executemany`.

What is patched: `sqlite3.connect` (and `sqlite3.dbapi2.connect`). Connections opened after `instrument()`
are made with a traced subclass of the requested `factory` (real `sqlite3.Connection` objects, so isinstance
checks and C-level APIs keep working); their cursors are a traced subclass of the requested cursor factory.
`Connection.execute` / `executemany` go through a traced cursor. `executescript` is not traced (a script is
many statements). Connections opened before `instrument()` are not traced.

What is recorded: db.system.name `sqlite`, db.namespace (the database file's name, or `:memory:`), the
sanitized db.query.text, db.query.summary (also the span name: `SELECT users`), db.operation.name and
db.collection.name when the statement has a single one, error.type and db.response.status_code (the SQLite
error name, such as SQLITE_CONSTRAINT_UNIQUE), and db.client.operation.duration. Under SQLAlchemy (when it is
instrumented) the SQLAlchemy span is the one recorded and this layer steps aside.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from veil.instrumentation._db import DBInstrumentor, DBTelemetry, Endpoint, Endpoints, traced_execute, traced_subclass

__all__ = ["SQLite3Instrumentor"]

_instruments = ()  # the standard library: always there
_FACTORY_POSITION = 5  # connect(database, timeout, detect_types, isolation_level, check_same_thread, factory, ...)

_endpoints = Endpoints()
_traced_connections: dict[type, type] = {}
_traced_cursors: dict[type, type] = {}


def _namespace(database: object) -> str:
    text = os.fsdecode(database) if isinstance(database, (str, bytes, os.PathLike)) else str(database)
    if text.startswith("file:"):
        text = text[5:].split("?", 1)[0]
    return text if text in ("", ":memory:") else os.path.basename(text)


def _endpoint_of(cursor: Any) -> Endpoint | None:
    connection = cursor.connection
    return getattr(connection, "_veil_endpoint", None) or _endpoints.intern("sqlite", None, None, None, "sqlite")


def _traced_cursor(base: type) -> type:
    return traced_subclass(_traced_cursors, base, _define_cursor)


def _define_cursor(base: type) -> type:
    class TracedCursor(base):  # type: ignore[misc]
        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            return traced_execute(
                SQLite3Instrumentor.telemetry,
                lambda: _endpoint_of(self),
                super().execute,
                sql,
                parameters,
                False,
                (sql, parameters),
                {},
            )

        def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
            return traced_execute(
                SQLite3Instrumentor.telemetry,
                lambda: _endpoint_of(self),
                super().executemany,
                sql,
                seq_of_parameters,
                True,
                (sql, seq_of_parameters),
                {},
            )

    return TracedCursor


def _traced_connection(base: type) -> type:
    return traced_subclass(_traced_connections, base, _define_connection)


def _define_connection(base: type) -> type:
    import sqlite3

    class TracedConnection(base):  # type: ignore[misc]
        def cursor(self, factory: Any = None) -> Any:
            return super().cursor(_traced_cursor(factory or sqlite3.Cursor))

        def execute(self, sql: Any, parameters: Any = (), /) -> Any:
            return self.cursor().execute(sql, parameters)

        def executemany(self, sql: Any, seq_of_parameters: Any, /) -> Any:
            return self.cursor().executemany(sql, seq_of_parameters)

    return TracedConnection


def _connect(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import sqlite3

    if SQLite3Instrumentor.telemetry is None:
        return wrapped(*args, **kwargs)
    try:
        if len(args) > _FACTORY_POSITION:
            args = (*args[:_FACTORY_POSITION], _traced_connection(args[_FACTORY_POSITION]), *args[6:])
        else:
            kwargs["factory"] = _traced_connection(kwargs.get("factory") or sqlite3.Connection)
        database = args[0] if args else kwargs.get("database", "")
        endpoint = _endpoints.intern("sqlite", _namespace(database), None, None, "sqlite")
    except Exception:
        return wrapped(*args, **kwargs)
    connection = wrapped(*args, **kwargs)
    with contextlib.suppress(Exception):  # a factory with __slots__: an endpoint without namespace is used
        connection._veil_endpoint = endpoint
    return connection


class SQLite3Instrumentor(DBInstrumentor):
    """Traces sqlite3. Options (read once): tracer_provider, meter_provider, sanitize_statements,
    capture_parameters.
    """

    _library = "sqlite3"
    _module = "veil.instrumentation.sqlite3"
    _dependencies = _instruments

    def _patch(self, telemetry: DBTelemetry, options: dict[str, Any]) -> None:
        import sqlite3
        import sqlite3.dbapi2

        wrapt.wrap_function_wrapper(sqlite3, "connect", _connect)
        if not isinstance(sqlite3.dbapi2.connect, wrapt.ObjectProxy):
            wrapt.wrap_function_wrapper(sqlite3.dbapi2, "connect", _connect)

    def _unpatch(self) -> None:
        import sqlite3
        import sqlite3.dbapi2

        unwrap(sqlite3, "connect")
        if isinstance(sqlite3.dbapi2.connect, wrapt.ObjectProxy):
            unwrap(sqlite3.dbapi2, "connect")
