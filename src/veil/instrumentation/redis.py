"""veil instrumentation for redis-py (>= 4.5): one CLIENT span per command, one per pipeline, sync and asyncio.

What is patched: `execute_command` of `redis.Redis` and `redis.asyncio.Redis`, and `execute` of their
pipelines (a transaction or a pipeline is one span, with db.operation.batch.size, however many commands it
holds). Cluster clients are not covered.

What is recorded: db.system.name `redis`, db.namespace (the database index given when connecting),
server.address / server.port (or the socket path), db.operation.name (the command, `PIPELINE SET`,
`MULTI`...; also the span name), db.query.text in the Redis CLI form with the command and key names kept and
every value replaced (`SET user:42 ?`, `HSET user:42 email ? name ?`, `AUTH ?`), error.type and
db.response.status_code (the error prefix, such as WRONGTYPE), db.client.operation.duration. A refused
connection is recorded on the command that needed it.
"""

from __future__ import annotations

from typing import Any

from veil._guard import log_once
from veil.instrumentation._db import (
    Call,
    DBInstrumentor,
    Endpoint,
    Endpoints,
    redis_pipeline_statement,
    redis_statement,
    tracing_enabled,
)

__all__ = ["RedisInstrumentor"]

_instruments = ("redis >= 4.5",)
_endpoints = Endpoints()


def _describe(pool: Any) -> tuple[str, str | None, str | None, int | None, str]:
    options = pool.connection_kwargs
    path = options.get("path")
    address = path or options.get("host") or "localhost"
    port = None if path else options.get("port", 6379)
    return "redis", str(options.get("db", 0)), str(address), port, "redis"


def _endpoint_of(client: Any) -> Endpoint | None:
    return _endpoints.of(client.connection_pool, _describe)


def _command_call(client: Any, args: tuple[Any, ...]) -> Call | None:
    telemetry = RedisInstrumentor.telemetry
    if telemetry is None or not args or not tracing_enabled():
        return None
    try:
        endpoint = _endpoint_of(client)
        if endpoint is None:
            return None
        name = args[0]
        # Commands are cached by their sanitized form: the values never reach a cache key.
        statement = redis_statement(args, telemetry.sanitize)
        shape = telemetry.shape(endpoint, (name, statement.text), lambda: statement)
        return telemetry.start(shape)
    except Exception:
        log_once("db.redis.start", "veil: cannot trace a Redis command", exc_info=True)
        return None


def _pipeline_call(pipeline: Any) -> Call | None:
    telemetry = RedisInstrumentor.telemetry
    if telemetry is None or not tracing_enabled():
        return None
    try:
        stack = pipeline.command_stack
        if not stack:
            return None
        endpoint = _endpoint_of(pipeline)
        if endpoint is None:
            return None
        commands = [tuple(entry[0]) if isinstance(entry, tuple) else tuple(entry.args) for entry in stack]
        transaction = bool(pipeline.transaction or getattr(pipeline, "explicit_transaction", False))
        statement = redis_pipeline_statement(commands, transaction, telemetry.sanitize)
        shape = telemetry.shape(endpoint, ("pipeline", statement.text), lambda: statement, len(commands))
        return telemetry.start(shape)
    except Exception:
        log_once("db.redis.pipeline", "veil: cannot trace a Redis pipeline", exc_info=True)
        return None


def _execute_command(wrapped: Any, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _command_call(client, args)
    if call is None:
        return wrapped(*args, **kwargs)
    return call.run(wrapped, *args, **kwargs)


async def _execute_command_async(wrapped: Any, client: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _command_call(client, args)
    if call is None:
        return await wrapped(*args, **kwargs)
    return await call.run_async(wrapped, *args, **kwargs)


def _execute_pipeline(wrapped: Any, pipeline: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _pipeline_call(pipeline)
    if call is None:
        return wrapped(*args, **kwargs)
    return call.run(wrapped, *args, **kwargs)


async def _execute_pipeline_async(wrapped: Any, pipeline: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    call = _pipeline_call(pipeline)
    if call is None:
        return await wrapped(*args, **kwargs)
    return await call.run_async(wrapped, *args, **kwargs)


class RedisInstrumentor(DBInstrumentor):
    """Traces redis-py. Options (read once): tracer_provider, meter_provider, sanitize_statements."""

    _library = "redis"
    _module = "veil.instrumentation.redis"
    _dependencies = _instruments

    def _patches(self) -> list[tuple[Any, str, Any]]:
        import redis.asyncio.client
        import redis.client

        return [
            (redis.client.Redis, "execute_command", _execute_command),
            (redis.client.Pipeline, "execute", _execute_pipeline),
            (redis.asyncio.client.Redis, "execute_command", _execute_command_async),
            (redis.asyncio.client.Pipeline, "execute", _execute_pipeline_async),
        ]
