"""An ASGI app configured at import; uvicorn --workers starts each worker with spawn, importing it anew."""

from __future__ import annotations

import os
from typing import Any

from opentelemetry import trace

import veil
from veil.instrumentation.asgi import VeilASGIMiddleware

veil.configure(auto_instrument=False)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("test.pid", os.getpid())
    body = str(os.getpid()).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


app = VeilASGIMiddleware(_app)
