"""veil instrumentation for psycopg 3 (>= 3.1): one CLIENT span per `execute` / `executemany`, sync and async.

What is patched: `execute` and `executemany` of `psycopg.Cursor` and `psycopg.AsyncCursor` (client-side and
raw cursors inherit them), `execute` of the server-side cursors, and `Connection.connect` /
`AsyncConnection.connect` (a `connect` span, so that a refused connection or a bad password is recorded).
`Connection.execute` goes through a cursor and is traced once. `copy()` and `stream()` are not traced.

What is recorded: db.system.name `postgresql`, db.namespace (the database name given when connecting),
server.address / server.port, the sanitized db.query.text (a `psycopg.sql.Composable` is rendered first),
db.query.summary (also the span name), db.operation.name and db.collection.name when single,
error.type and db.response.status_code (the SQLSTATE, such as 23505), db.client.operation.duration.
"""

from __future__ import annotations

from typing import Any

from veil.instrumentation._db import (
    DBInstrumentor,
    Endpoint,
    Endpoints,
    cursor_wrapper,
)

__all__ = ["PsycopgInstrumentor"]

_instruments = ("psycopg >= 3.1",)
_endpoints = Endpoints()


def _describe(connection: Any) -> tuple[str, str | None, str | None, int | None, str]:
    info = connection.info
    return "postgresql", info.dbname or None, info.host or None, info.port or None, "postgresql"


def _endpoint_of(cursor: Any) -> Endpoint | None:
    return _endpoints.of(cursor.connection, _describe)


def _endpoint_before_connect(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Endpoint:
    from psycopg.conninfo import conninfo_to_dict

    conninfo = args[0] if args else kwargs.get("conninfo", "")
    params = {key: value for key, value in kwargs.items() if key not in ("autocommit", "prepare_threshold")}
    try:
        found = conninfo_to_dict(conninfo, **{k: v for k, v in params.items() if isinstance(v, (str, int))})
    except Exception:
        found = {}
    port = found.get("port")
    host = str(found.get("host") or "") or None
    return _endpoints.intern(
        "postgresql",
        str(found.get("dbname") or "") or None,
        host,
        int(port) if isinstance(port, (int, str)) and str(port).isdigit() else None,
        "postgresql",
    )


class PsycopgInstrumentor(DBInstrumentor):
    """Traces psycopg 3. Options (read once): tracer_provider, meter_provider, sanitize_statements,
    capture_parameters.
    """

    _library = "psycopg"
    _module = "veil.instrumentation.psycopg"
    _dependencies = _instruments

    def _patches(self) -> list[tuple[Any, str, Any]]:
        import psycopg

        return [
            (psycopg.Cursor, "execute", _execute),
            (psycopg.Cursor, "executemany", _executemany),
            (psycopg.ServerCursor, "execute", _execute),
            (psycopg.AsyncCursor, "execute", _execute_async),
            (psycopg.AsyncCursor, "executemany", _executemany_async),
            (psycopg.AsyncServerCursor, "execute", _execute_async),
            (psycopg.Connection, "connect", _connect),
            (psycopg, "connect", _connect),  # an alias bound when psycopg was imported
            (psycopg.AsyncConnection, "connect", _connect_async),
        ]


_execute = cursor_wrapper(PsycopgInstrumentor, _endpoint_of, many=False)
_executemany = cursor_wrapper(PsycopgInstrumentor, _endpoint_of, many=True, parameters_name="params_seq")
_execute_async = cursor_wrapper(PsycopgInstrumentor, _endpoint_of, many=False, asynchronous=True)
_executemany_async = cursor_wrapper(
    PsycopgInstrumentor, _endpoint_of, many=True, asynchronous=True, parameters_name="params_seq"
)


def _connect(wrapped: Any, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = PsycopgInstrumentor.telemetry
    if telemetry is None:
        return wrapped(*args, **kwargs)
    return telemetry.connect(_endpoint_before_connect(args, kwargs), wrapped, *args, **kwargs)


async def _connect_async(wrapped: Any, owner: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = PsycopgInstrumentor.telemetry
    if telemetry is None:
        return await wrapped(*args, **kwargs)
    return await telemetry.connect_async(_endpoint_before_connect(args, kwargs), wrapped, *args, **kwargs)
