"""Database semantic conventions: the statement shape (sanitized text, summary, operation, collection, span
name), the attributes of an endpoint (system, namespace, server), the pre-stable twins in dup mode, and
`error.type` / `db.response.status_code` from a driver's exception.

Everything here is computed once per statement text or endpoint and cached (bounded); a query's hot path only
looks the shape up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from opentelemetry.semconv._incubating.attributes.db_attributes import (
    DB_NAME,
    DB_OPERATION,
    DB_SQL_TABLE,
    DB_STATEMENT,
    DB_SYSTEM,
)
from opentelemetry.semconv._incubating.attributes.net_attributes import NET_PEER_NAME, NET_PEER_PORT
from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_NAMESPACE,
    DB_OPERATION_BATCH_SIZE,
    DB_OPERATION_NAME,
    DB_QUERY_SUMMARY,
    DB_QUERY_TEXT,
    DB_RESPONSE_STATUS_CODE,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.util.types import AttributeValue

from veil._cache import remember
from veil.instrumentation._http.semconv import error_type_of
from veil.redaction.statements import sanitize_redis, sanitize_sql

Attributes = dict[str, AttributeValue]

SUMMARY_MAX_LENGTH: Final = 255
"""The longest db.query.summary (and span name) recorded, as the conventions recommend."""

# stable name -> pre-stable name, for dup mode (OTEL_SEMCONV_STABILITY_OPT_IN=database/dup)
_OLD_NAMES: Final = {
    DB_SYSTEM_NAME: DB_SYSTEM,
    DB_NAMESPACE: DB_NAME,
    DB_QUERY_TEXT: DB_STATEMENT,
    DB_OPERATION_NAME: DB_OPERATION,
    DB_COLLECTION_NAME: DB_SQL_TABLE,
    SERVER_ADDRESS: NET_PEER_NAME,
    SERVER_PORT: NET_PEER_PORT,
}
_BATCH_MINIMUM: Final = 2


def with_old_names(attributes: Attributes) -> Attributes:
    """`attributes` plus their pre-stable names (dup mode)."""
    extra = {_OLD_NAMES[key]: value for key, value in attributes.items() if key in _OLD_NAMES}
    return {**attributes, **extra}


# ------------------------------------------------------------------------------------------ statements

_SUMMARY_TOKEN = re.compile(r"[A-Za-z_][\w$]*(?:\.(?:[A-Za-z_][\w$]*|\"[^\"]*\"|`[^`]*`))*|\"[^\"]*\"|`[^`]*`|[(;]")
_OPERATIONS: Final = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT"})
_DDL: Final = frozenset({"CREATE", "DROP", "ALTER", "TRUNCATE"})
_DDL_OBJECTS: Final = frozenset({"TABLE", "INDEX", "VIEW", "SEQUENCE", "SCHEMA", "DATABASE", "TRIGGER", "FUNCTION"})
_TARGET_BEFORE: Final = frozenset({"FROM", "JOIN", "INTO", "UPDATE", "TABLE"})
_SKIPPED: Final = frozenset({"ONLY", "IF", "NOT", "EXISTS", "LATERAL", "TEMPORARY", "TEMP", "UNIQUE", "OR"})
_FIRST_KEYWORDS: Final = frozenset(
    str.split(
        "BEGIN START COMMIT ROLLBACK END ABORT SAVEPOINT RELEASE SET SHOW RESET DISCARD PRAGMA EXPLAIN DESCRIBE "
        "CALL EXEC EXECUTE PREPARE DEALLOCATE DECLARE FETCH CLOSE GRANT REVOKE USE LOCK UNLOCK COPY VACUUM "
        "ANALYZE REINDEX CLUSTER COMMENT REFRESH ATTACH DETACH LISTEN NOTIFY VALUES DO LOAD OPTIMIZE FLUSH RENAME"
    )
)
_KEYWORDS: Final = _OPERATIONS | _DDL | _TARGET_BEFORE | _SKIPPED | {"SET", "WHERE", "VALUES", "AS", "ON", "USING"}


def summarize_sql(sanitized: str) -> tuple[str, str | None, str | None]:
    """(db.query.summary, single operation or None, single collection or None) of a sanitized statement.

    The summary lists the operations and the tables they name, in order (`SELECT orders users`,
    `INSERT shipping SELECT orders`); statements that are none of those keep their first keyword (`BEGIN`).
    """
    tokens = _SUMMARY_TOKEN.findall(sanitized)
    parts: list[str] = []
    operations: list[str] = []
    targets: list[str] = []
    index = 0
    count = len(tokens)
    while index < count:
        token = tokens[index]
        upper = token.upper()
        if index == 0 and upper in _DDL:
            operation = upper
            if index + 1 < count and tokens[index + 1].upper() in _DDL_OBJECTS:
                index += 1
                operation = f"{upper} {tokens[index].upper()}"
                target = _target_after(tokens, index)
                parts.append(operation)
                operations.append(operation)
                if target is not None:
                    parts.append(target)
                    targets.append(target)
                break
            parts.append(operation)
            operations.append(operation)
        elif upper in _OPERATIONS:
            parts.append(upper)
            operations.append(upper)
            if upper == "UPDATE":
                target = _target_after(tokens, index)
                if target is not None:
                    parts.append(target)
                    targets.append(target)
        elif upper in _TARGET_BEFORE and upper != "UPDATE":
            target = _target_after(tokens, index)
            if target is not None:
                parts.append(target)
                targets.append(target)
        elif index == 0 and upper in _FIRST_KEYWORDS:
            # Only known keywords: a statement that is not SQL never puts its first word in a span name.
            parts.append(upper)
            operations.append(upper)
        index += 1
    summary = " ".join(parts)[:SUMMARY_MAX_LENGTH]
    operation = operations[0] if len(operations) == 1 else None
    collection = targets[0] if len(set(targets)) == 1 and len(operations) == 1 else None
    return summary, operation, collection


def _target_after(tokens: list[str], index: int) -> str | None:
    """The table named after the keyword at `index` (past IF NOT EXISTS, ONLY...), or None."""
    for token in tokens[index + 1 : index + 6]:
        upper = token.upper()
        if upper in _SKIPPED:
            continue
        if token in "(;" or upper in _KEYWORDS:
            return None
        return token
    return None


@dataclass(frozen=True)
class Statement:
    """What a statement's text contributes to a span: query text, summary, operation, collection."""

    text: str
    summary: str
    operation: str | None
    collection: str | None
    names_its_batch: bool = False
    """The operation already says it is a batch (Redis `PIPELINE SET`): no `BATCH` prefix is added."""


_statements: dict[tuple[str, str, bool], Statement] = {}
_summaries: dict[str, tuple[str, str | None, str | None]] = {}
_STATEMENT_CACHE_MAX_KEY: Final = 4096


def sql_statement(text: str, dialect: str, sanitize: bool) -> Statement:
    """The Statement of SQL `text` (sanitized unless `sanitize` is False; the summary always is). Cached."""
    key = (text, dialect, sanitize)
    found = _statements.get(key)
    if found is not None:
        return found
    sanitized = sanitize_sql(text, dialect)
    summarized = _summaries.get(sanitized)  # statements differing only in their literals share one summary
    if summarized is None:
        summarized = remember(_summaries, sanitized, summarize_sql(sanitized), 2048)
    statement = Statement(sanitized if sanitize else text, *summarized)
    if len(text) <= _STATEMENT_CACHE_MAX_KEY:
        remember(_statements, key, statement, 2048)
    return statement


def redis_statement(args: tuple[object, ...], sanitize: bool) -> Statement:
    """The Statement of one Redis command (`args` as given to execute_command)."""
    text = sanitize_redis(args) if sanitize else " ".join(_redis_text(arg) for arg in args)
    operation = _redis_text(args[0]).upper() if args else "REDIS"
    return Statement(text, operation, operation, None)


def redis_pipeline_statement(commands: list[tuple[object, ...]], transaction: bool, sanitize: bool) -> Statement:
    """The Statement of a pipeline: `PIPELINE SET` when every command is a SET, else `PIPELINE` (or MULTI)."""
    prefix = "MULTI" if transaction else "PIPELINE"
    names = {_redis_text(args[0]).upper() for args in commands if args}
    operation = f"{prefix} {names.pop()}" if len(names) == 1 else prefix
    texts = [redis_statement(args, sanitize).text for args in commands]
    text = texts[0] if len(set(texts)) == 1 else "; ".join(texts)
    return Statement(text[:32768], operation, operation, None, names_its_batch=True)


def _redis_text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------- endpoints


class Endpoint:
    """One database as seen by the client (system, namespace, server), with its per-statement caches."""

    __slots__ = ("attributes", "dialect", "shapes", "system")

    def __init__(
        self, system: str, namespace: str | None, address: str | None, port: int | None, dialect: str = ""
    ) -> None:
        self.system = system
        self.dialect = dialect or system
        attributes: Attributes = {DB_SYSTEM_NAME: system}
        if namespace:
            attributes[DB_NAMESPACE] = namespace
        if address:
            attributes[SERVER_ADDRESS] = address
            if port is not None:
                attributes[SERVER_PORT] = port
        self.attributes = attributes
        self.shapes: dict[object, Shape] = {}


@dataclass(frozen=True)
class Shape:
    """Span name, span start attributes and metric attributes of one statement on one endpoint."""

    name: str
    attributes: Attributes
    metric_attributes: Attributes


def shape_of(endpoint: Endpoint, statement: Statement, batch_size: int | None, dup: bool) -> Shape:
    """The Shape of `statement` on `endpoint`; a batch (executemany of 2 or more) is prefixed `BATCH`."""
    summary, operation = statement.summary, statement.operation
    batched = batch_size is not None and batch_size >= _BATCH_MINIMUM
    if batched and not statement.names_its_batch:
        summary = f"BATCH {summary}" if summary else "BATCH"
        operation = f"BATCH {operation}" if operation else None
    name = summary or endpoint.system
    metric: Attributes = dict(endpoint.attributes)
    if operation:
        metric[DB_OPERATION_NAME] = operation
    if statement.collection:
        metric[DB_COLLECTION_NAME] = statement.collection
    if summary:
        metric[DB_QUERY_SUMMARY] = summary
    attributes = dict(metric)
    if statement.text:
        attributes[DB_QUERY_TEXT] = statement.text
    if batched:
        attributes[DB_OPERATION_BATCH_SIZE] = batch_size
    if dup:
        attributes = with_old_names(attributes)
    return Shape(name, attributes, metric)


# ---------------------------------------------------------------------------------------------- errors


def error_of(exception: BaseException) -> tuple[str, str | None]:
    """(error.type, db.response.status_code or None) of a driver exception (the wrapped original first).

    The status code is the SQLSTATE (psycopg, psycopg2), the server error number (PyMySQL), the SQLite error
    name, or the Redis error prefix; error.type is that code when there is one, else the exception's class.
    """
    original = getattr(exception, "orig", None)  # SQLAlchemy's DBAPIError wraps the driver's exception
    if isinstance(original, BaseException):
        exception = original
    code = _status_code(exception)
    return (code if code else error_type_of(exception)), code


def _status_code(exception: BaseException) -> str | None:
    module = type(exception).__module__
    if module.startswith("pymysql") and exception.args and isinstance(exception.args[0], int):
        return str(exception.args[0])  # MySQL and MariaDB: the server's error number, not the SQLSTATE
    for attribute in ("sqlstate", "pgcode", "sqlite_errorname"):
        value = getattr(exception, attribute, None)
        if isinstance(value, str) and value:
            return value
    if module.startswith("redis") and type(exception).__name__ == "ResponseError" and exception.args:
        prefix = str(exception.args[0]).split(" ", 1)[0]
        if prefix.isupper() and prefix.isalpha():
            return prefix
    return None


def error_attributes(exception: BaseException) -> Attributes:
    """error.type and, when the driver gave one, db.response.status_code."""
    error_type, code = error_of(exception)
    attributes: Attributes = {ERROR_TYPE: error_type}
    if code:
        attributes[DB_RESPONSE_STATUS_CODE] = code
    return attributes
