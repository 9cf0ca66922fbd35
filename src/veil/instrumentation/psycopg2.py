"""veil instrumentation for psycopg2 (>= 2.8): one CLIENT span per `execute` / `executemany`.

What is patched: `psycopg2.connect`. psycopg2's connection and cursor are C types whose methods cannot be
wrapped, so connections opened after `instrument()` are made with a traced subclass of the requested
`connection_factory`, whose `cursor()` hands out a traced subclass of the requested `cursor_factory`
(`RealDictCursor` and the other extras included). They stay real psycopg2 objects, so
`psycopg2.extras.register_*` and `isinstance` checks keep working. The connect call is a `connect` span.
Connections opened before `instrument()` are not traced.

What is recorded: db.system.name `postgresql`, db.namespace (the database name given when connecting),
server.address / server.port, the sanitized db.query.text, db.query.summary (also the span name),
db.operation.name and db.collection.name when single, error.type and db.response.status_code (the SQLSTATE),
db.client.operation.duration. `psycopg2.extras.execute_values` / `execute_batch` send statements with the
values already inlined: they are sanitized like any literal.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from veil.instrumentation._db import DBInstrumentor, Endpoint, Endpoints, traced_execute, traced_subclass

__all__ = ["Psycopg2Instrumentor"]

_instruments = ("psycopg2 >= 2.8",)
_instruments_binary = ("psycopg2-binary >= 2.8",)  # the same module, from the binary wheel
_endpoints = Endpoints()
_traced_cursors: dict[type, type] = {}
_traced_connections: dict[type, type] = {}


def _describe(connection: Any) -> tuple[str, str | None, str | None, int | None, str]:
    info = connection.info
    return "postgresql", info.dbname or None, info.host or None, info.port or None, "postgresql"


def _endpoint_of(cursor: Any) -> Endpoint | None:
    return _endpoints.of(cursor.connection, _describe)


def _endpoint_before_connect(dsn: Any, kwargs: dict[str, Any]) -> Endpoint:
    from psycopg2.extensions import parse_dsn

    try:
        found = {**(parse_dsn(dsn) if dsn else {}), **{k: v for k, v in kwargs.items() if k != "cursor_factory"}}
    except Exception:
        found = {}
    port = found.get("port")
    return _endpoints.intern(
        "postgresql",
        str(found.get("dbname") or found.get("database") or "") or None,
        str(found.get("host") or "") or None,
        int(port) if port is not None and str(port).isdigit() else None,
        "postgresql",
    )


def _traced_cursor(base: type) -> type:
    return traced_subclass(_traced_cursors, base, _define_cursor)


def _define_cursor(base: type) -> type:
    class TracedCursor(base):  # type: ignore[misc]
        def execute(self, query: Any, vars: Any = None) -> Any:
            return traced_execute(
                Psycopg2Instrumentor.telemetry,
                lambda: _endpoint_of(self),
                super().execute,
                query,
                vars,
                False,
                (query, vars),
                {},
                self.connection,
            )

        def executemany(self, query: Any, vars_list: Any) -> Any:
            return traced_execute(
                Psycopg2Instrumentor.telemetry,
                lambda: _endpoint_of(self),
                super().executemany,
                query,
                vars_list,
                True,
                (query, vars_list),
                {},
                self.connection,
            )

    return TracedCursor


def _traced_connection(base: type) -> type:
    return traced_subclass(_traced_connections, base, _define_connection)


def _define_connection(base: type) -> type:
    from psycopg2.extensions import cursor as plain_cursor

    class TracedConnection(base):  # type: ignore[misc]
        def cursor(self, *args: Any, **kwargs: Any) -> Any:
            factory = kwargs.get("cursor_factory") or self.cursor_factory or plain_cursor
            kwargs["cursor_factory"] = _traced_cursor(factory)
            return super().cursor(*args, **kwargs)

    return TracedConnection


def _connect(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = Psycopg2Instrumentor.telemetry
    if telemetry is None:
        return wrapped(*args, **kwargs)
    from psycopg2.extensions import connection as plain_connection

    try:
        dsn = args[0] if args else kwargs.get("dsn")
        factory = args[1] if len(args) > 1 else kwargs.pop("connection_factory", None)
        kwargs["connection_factory"] = _traced_connection(factory or plain_connection)
        args = args[:1]
        endpoint = _endpoint_before_connect(dsn, kwargs)
    except Exception:
        return wrapped(*args, **kwargs)
    return telemetry.connect(endpoint, wrapped, *args, **kwargs)


class Psycopg2Instrumentor(DBInstrumentor):
    """Traces psycopg2. Options (read once): tracer_provider, meter_provider, sanitize_statements,
    capture_parameters.
    """

    _library = "psycopg2"
    _module = "veil.instrumentation.psycopg2"
    _dependencies = _instruments

    def instrumentation_dependencies(self) -> Collection[str]:
        """psycopg2 or psycopg2-binary, whichever distribution is installed."""
        from importlib.metadata import PackageNotFoundError, version

        try:
            version("psycopg2")
        except PackageNotFoundError:
            try:
                version("psycopg2-binary")
            except PackageNotFoundError:
                return _instruments
            return _instruments_binary
        return _instruments

    def _patches(self) -> list[tuple[Any, str, Any]]:
        import psycopg2

        return [(psycopg2, "connect", _connect)]
