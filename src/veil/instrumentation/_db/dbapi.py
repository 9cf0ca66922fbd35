"""What the DB-API drivers share: tracing one `execute` / `executemany` call (sync or async), the statement
text of whatever the application passed (str, bytes, a driver's composed SQL), endpoints per connection.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

from veil._cache import remember
from veil._guard import log_once
from veil.instrumentation._db.semconv import Endpoint, Statement, sql_statement
from veil.instrumentation._db.telemetry import Call, DBTelemetry, tracing_enabled

_T = TypeVar("_T")


def statement_text(statement: object, connection: object = None) -> str:
    """The text of a statement: str as is, bytes decoded, psycopg's `sql.Composable` rendered."""
    if isinstance(statement, str):
        return statement
    if isinstance(statement, (bytes, bytearray, memoryview)):
        return bytes(statement).decode("utf-8", "replace")
    as_string = getattr(statement, "as_string", None)
    if as_string is not None:
        try:
            return str(as_string(connection))
        except Exception:
            return ""
    return ""


def batch_size(parameters: object) -> int | None:
    """How many parameter sets an executemany got, when it can be told without consuming an iterator."""
    try:
        return len(parameters)  # type: ignore[arg-type]
    except TypeError:
        return None


def start_call(  # noqa: PLR0917 - positional on purpose: called once per query
    telemetry: DBTelemetry,
    endpoint: Endpoint,
    statement: object,
    parameters: object,
    many: bool,
    connection: object = None,
) -> Call | None:
    """The Call of one execute / executemany, or None when tracing is off here or cannot be done."""
    try:
        if not many and statement.__class__ is str:  # the common case: a statement seen before
            shape = endpoint.shapes.get(statement)
            if shape is not None:
                return telemetry.start(shape, parameters)
        key = statement if isinstance(statement, (str, bytes)) else statement_text(statement, connection)
        size = batch_size(parameters) if many else None

        def build() -> Statement:
            return sql_statement(statement_text(key), endpoint.dialect, telemetry.sanitize)

        shape = telemetry.shape(endpoint, key, build, size)
        return telemetry.start(shape, None if many else parameters)
    except Exception:
        log_once(f"db.{telemetry.library}.start", "veil: cannot trace a %s query", telemetry.library, exc_info=True)
        return None


def traced_execute(  # noqa: PLR0917 - positional on purpose: called once per query
    telemetry: DBTelemetry | None,
    endpoint: Callable[[], Endpoint | None],
    function: Callable[..., _T],
    statement: object,
    parameters: object,
    many: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    connection: object = None,
) -> _T:
    """Call `function(*args, **kwargs)` (the driver's execute) inside a Call when tracing applies."""
    if telemetry is None or not tracing_enabled():
        return function(*args, **kwargs)
    where = endpoint()
    call = start_call(telemetry, where, statement, parameters, many, connection) if where is not None else None
    if call is None:
        return function(*args, **kwargs)
    return call.run(function, *args, **kwargs)


async def traced_execute_async(  # noqa: PLR0917 - as traced_execute
    telemetry: DBTelemetry | None,
    endpoint: Callable[[], Endpoint | None],
    function: Callable[..., Awaitable[_T]],
    statement: object,
    parameters: object,
    many: bool,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    connection: object = None,
) -> _T:
    """`traced_execute` for a coroutine function."""
    if telemetry is None or not tracing_enabled():
        return await function(*args, **kwargs)
    where = endpoint()
    call = start_call(telemetry, where, statement, parameters, many, connection) if where is not None else None
    if call is None:
        return await function(*args, **kwargs)
    return await call.run_async(function, *args, **kwargs)


class _HasTelemetry(Protocol):
    telemetry: DBTelemetry | None


def cursor_wrapper(
    owner: type[_HasTelemetry],
    endpoint_of: Callable[[Any], Endpoint | None],
    *,
    many: bool,
    asynchronous: bool = False,
    parameters_name: str = "params",
) -> Callable[[Any, Any, tuple[Any, ...], dict[str, Any]], Any]:
    """A wrapt wrapper for a cursor's `execute(query, parameters)` / `executemany(query, sequence)` method.

    `owner.telemetry` is read per call (None once uninstrumented); `endpoint_of(cursor)` names the database.
    """

    def arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[object, object]:
        return (args[0] if args else kwargs.get("query")), (args[1] if len(args) > 1 else kwargs.get(parameters_name))

    def sync(wrapped: Any, cursor: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        statement, parameters = arguments(args, kwargs)
        return traced_execute(
            owner.telemetry,
            lambda: endpoint_of(cursor),
            wrapped,
            statement,
            parameters,
            many,
            args,
            kwargs,
            getattr(cursor, "connection", None),
        )

    async def coroutine(wrapped: Any, cursor: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        statement, parameters = arguments(args, kwargs)
        return await traced_execute_async(
            owner.telemetry,
            lambda: endpoint_of(cursor),
            wrapped,
            statement,
            parameters,
            many,
            args,
            kwargs,
            getattr(cursor, "connection", None),
        )

    return coroutine if asynchronous else sync


class Endpoints:
    """Endpoints per connection object (weakly held) and interned by value, so equal ones share caches."""

    def __init__(self) -> None:
        self._by_connection: weakref.WeakKeyDictionary[Any, Endpoint] = weakref.WeakKeyDictionary()
        self._by_value: dict[tuple[Any, ...], Endpoint] = {}

    def of(
        self, connection: Any, describe: Callable[[Any], tuple[str, str | None, str | None, int | None, str]]
    ) -> Endpoint | None:
        """The Endpoint of `connection`; `describe(connection)` gives (system, namespace, address, port,
        dialect) the first time.
        """
        try:
            found = self._by_connection.get(connection)
            if found is None:
                found = self.intern(*describe(connection))
                self._by_connection[connection] = found
            return found
        except Exception:
            log_once("db.endpoint", "veil: cannot describe a database connection", exc_info=True)
            return None

    def intern(
        self, system: str, namespace: str | None, address: str | None, port: int | None, dialect: str
    ) -> Endpoint:
        key = (system, namespace, address, port, dialect)
        found = self._by_value.get(key)
        if found is None:
            found = remember(self._by_value, key, Endpoint(system, namespace, address, port, dialect), 256)
        return found


def traced_subclass(cache: dict[type, type], base: type, define: Callable[[type], type]) -> type:
    """The traced subclass of a driver class `base` that `define(base)` makes: made once per base, named like
    `base` (so reprs and error messages read as the driver's own), and `base` itself when it is already one."""
    traced = cache.get(base)
    if traced is not None:
        return traced
    if getattr(base, "_veil_traced", False):
        return base
    traced = define(base)
    traced._veil_traced = True  # type: ignore[attr-defined]
    traced.__name__ = traced.__qualname__ = base.__name__
    traced.__module__ = base.__module__
    cache[base] = traced
    return traced
