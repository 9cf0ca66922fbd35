"""veil instrumentation for PyMySQL (>= 1.0): one CLIENT span per `execute` / `executemany`.

What is patched: `pymysql.cursors.Cursor.execute` and `executemany` (every PyMySQL cursor class inherits them)
and `pymysql.connections.Connection.__init__`, which connects (a `connect` span: refused connections and
rejected passwords are recorded). `executemany` is one span (db.operation.batch.size); the `execute` calls it
makes underneath step aside.

What is recorded: db.system.name `mysql` or `mariadb` (from the server's version string), db.namespace (the
database given when connecting), server.address / server.port, the sanitized db.query.text (the statement
as written, before PyMySQL interpolates the parameters), db.query.summary (also the span name),
db.operation.name and db.collection.name when single, error.type and db.response.status_code (the server's
error number, such as 1062), db.client.operation.duration.
"""

from __future__ import annotations

from typing import Any

from veil.instrumentation._db import DBInstrumentor, Endpoint, Endpoints, cursor_wrapper

__all__ = ["PyMySQLInstrumentor"]

_instruments = ("pymysql >= 1.0",)
_endpoints = Endpoints()


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace") or None
    return str(value) if value else None


def _system(connection: Any) -> str:
    version = getattr(connection, "server_version", None) or ""
    return "mariadb" if "mariadb" in str(version).lower() else "mysql"


def _describe(connection: Any) -> tuple[str, str | None, str | None, int | None, str]:
    address = getattr(connection, "unix_socket", None) or connection.host
    return _system(connection), _text(connection.db), _text(address), connection.port, "mysql"


def _endpoint_of(cursor: Any) -> Endpoint | None:
    return _endpoints.of(cursor.connection, _describe)


def _init(wrapped: Any, connection: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    telemetry = PyMySQLInstrumentor.telemetry
    if telemetry is None or args or kwargs.get("defer_connect"):
        return wrapped(*args, **kwargs)  # positional arguments are deprecated by PyMySQL: not traced
    database = kwargs.get("database") or kwargs.get("db")
    address = kwargs.get("unix_socket") or kwargs.get("host") or "localhost"
    endpoint = _endpoints.intern("mysql", _text(database), _text(address), kwargs.get("port") or 3306, "mysql")
    return telemetry.connect(endpoint, wrapped, *args, **kwargs)


class PyMySQLInstrumentor(DBInstrumentor):
    """Traces PyMySQL. Options (read once): tracer_provider, meter_provider, sanitize_statements,
    capture_parameters.
    """

    _library = "pymysql"
    _module = "veil.instrumentation.pymysql"
    _dependencies = _instruments

    def _patches(self) -> list[tuple[Any, str, Any]]:
        import pymysql.connections
        import pymysql.cursors

        return [
            (pymysql.cursors.Cursor, "execute", _execute),
            (pymysql.cursors.Cursor, "executemany", _executemany),
            (pymysql.connections.Connection, "__init__", _init),
        ]


_execute = cursor_wrapper(PyMySQLInstrumentor, _endpoint_of, many=False, parameters_name="args")
_executemany = cursor_wrapper(PyMySQLInstrumentor, _endpoint_of, many=True, parameters_name="args")
