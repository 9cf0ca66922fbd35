"""A minimal Django project (settings, views, URLconf) for the Django instrumentation tests.

Importing this module configures Django once per process; gunicorn/uvicorn serve `wsgi_application` /
`asgi_application` from `django_wsgi` / `django_asgi`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="veil-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="tests.instrumentation.apps.django_project",
        MIDDLEWARE=["django.middleware.common.CommonMiddleware"],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.urls import include, path, re_path

view_threads: dict[str, int] = {}


def item(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(f"item {pk}")


def boom(request: HttpRequest) -> HttpResponse:
    raise ValueError("django kaput")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def generate() -> Iterator[bytes]:
        yield b"data: 1\n\n"
        time.sleep(0.05)
        yield b"data: 2\n\n"

    return StreamingHttpResponse(generate(), content_type="text/event-stream")


async def async_view(request: HttpRequest) -> HttpResponse:
    view_threads["async_view"] = threading.get_ident()
    await asyncio.sleep(0)
    return HttpResponse("async ok")


def archive(request: HttpRequest, year: str) -> HttpResponse:
    return HttpResponse(year)


nested = [path("items/<int:pk>/", item)]

urlpatterns = [
    path("api/v1/", include(nested)),
    path("boom/", boom),
    path("stream/", stream),
    path("async/", async_view),
    re_path(r"^archive/(?P<year>[0-9]{4})/$", archive),
]
