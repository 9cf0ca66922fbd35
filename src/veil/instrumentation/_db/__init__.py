"""Everything database that veil's instrumentations share (sqlite3, psycopg, psycopg2, PyMySQL, SQLAlchemy,
Redis).

- `semconv`: statement shapes (sanitized text, db.query.summary, operation, collection, span name), endpoint
  attributes, pre-stable names in dup mode, error.type / db.response.status_code;
- `telemetry`: `DBTelemetry` (tracer, db.client.operation.duration, options) and `Call` (one operation); the
  step-aside rule (`inside_database_call`);
- `dbapi`: tracing a DB-API execute / executemany, statement text, endpoints per connection;
- `instrumentor`: `DBInstrumentor`, the base of the per-library instrumentors.

The sanitizer itself is `veil.redaction.statements`, shared with the export-side redaction of statements
recorded by other instrumentations.
"""

from veil.instrumentation._db.dbapi import (
    Endpoints,
    cursor_wrapper,
    traced_execute,
    traced_execute_async,
    traced_subclass,
)
from veil.instrumentation._db.instrumentor import DBInstrumentor
from veil.instrumentation._db.semconv import Endpoint, error_of, redis_pipeline_statement, redis_statement
from veil.instrumentation._db.telemetry import Call, DBTelemetry, inside_database_call, tracing_enabled

__all__ = [
    "Call",
    "DBInstrumentor",
    "DBTelemetry",
    "Endpoint",
    "Endpoints",
    "cursor_wrapper",
    "error_of",
    "inside_database_call",
    "redis_pipeline_statement",
    "redis_statement",
    "traced_execute",
    "traced_execute_async",
    "traced_subclass",
    "tracing_enabled",
]
