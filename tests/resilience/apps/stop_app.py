"""One app for the graceful-stop tests, served by every server: WSGI (`wsgi`), ASGI (`asgi`), Django (`urlpatterns`
with this module as ROOT_URLCONF) and, run as a script, a plain loop that makes one span a tick.

Each request makes a server span (veil's middleware), a duration metric point and one log record carrying the
process id. With STOP_APP_VEIL=0 veil is never imported: the same server without veil, to compare how it exits.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

WITH_VEIL = os.environ.get("STOP_APP_VEIL", "1") == "1"
_logger = logging.getLogger("stop_app")
_logger.setLevel(logging.INFO)


def _answer() -> bytes:
    _logger.info("served by %d", os.getpid())
    return str(os.getpid()).encode()


def _wsgi(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = _answer()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def _asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = _answer()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(len(body)).encode())]}
    )
    await send({"type": "http.response.body", "body": body})


def _django_view(request: Any) -> Any:
    from django.http import HttpResponse

    return HttpResponse(_answer(), content_type="text/plain")


if WITH_VEIL:
    import veil
    from veil.instrumentation.asgi import VeilASGIMiddleware
    from veil.instrumentation.wsgi import VeilWSGIMiddleware

    if os.environ.get("STOP_APP_CONFIGURE", "1") == "1":  # 0: `veil run` configured the process already
        veil.configure(auto_instrument=False)
        veil.instrument("logging")
    wsgi: Any = VeilWSGIMiddleware(_wsgi)
    asgi: Any = VeilASGIMiddleware(_asgi)
else:
    wsgi, asgi = _wsgi, _asgi

if os.environ.get("DJANGO_SETTINGS_MODULE") == "tests.resilience.apps.stop_django_settings":
    from django.urls import path

    urlpatterns = [path("", _django_view)]

    def django_wsgi() -> Any:
        from django.core.wsgi import get_wsgi_application

        handler = get_wsgi_application()
        return VeilWSGIMiddleware(handler) if WITH_VEIL else handler

    django_wsgi = django_wsgi()  # type: ignore[assignment]  # WSGI_APPLICATION names an application object


def _plain_loop() -> None:
    """A script with no signal handling of its own: a span per tick until it is stopped."""
    from opentelemetry import trace

    tracer = trace.get_tracer("stop_app")
    for _ in range(int(sys.argv[1])):
        with tracer.start_as_current_span("tick", kind=trace.SpanKind.SERVER):
            _answer()
    print("ready", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    _plain_loop()
