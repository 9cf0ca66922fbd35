"""A WSGI app configured at import: under gunicorn --preload that is in the master, before the fork."""

from __future__ import annotations

import json
import os
from typing import Any

from opentelemetry import trace

import veil
from veil.instrumentation.wsgi import VeilWSGIMiddleware

telemetry = veil.configure(auto_instrument=False)


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("test.pid", os.getpid())
    if environ["PATH_INFO"] == "/health":
        body = json.dumps({"pid": os.getpid(), **telemetry.health().as_dict()}).encode()
    else:
        body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


app = VeilWSGIMiddleware(_app)
