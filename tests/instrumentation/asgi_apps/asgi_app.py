"""A raw ASGI application behind VeilASGIMiddleware, served by uvicorn (configured with veil.configure())."""

from __future__ import annotations

from typing import Any

import veil
from veil.instrumentation.asgi import VeilASGIMiddleware

veil.configure(auto_instrument=False)


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"hello ", "more_body": True})
    await send({"type": "http.response.body", "body": b"world"})


app = VeilASGIMiddleware(_app)
