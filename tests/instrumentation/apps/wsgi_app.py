"""A plain WSGI application served by gunicorn in the real-server test (configured with veil.configure())."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import veil
from veil.instrumentation.wsgi import VeilWSGIMiddleware

veil.configure(auto_instrument=False)


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"hello "
    yield b"world"


application = VeilWSGIMiddleware(_app)
