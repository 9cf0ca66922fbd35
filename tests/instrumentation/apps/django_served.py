"""Django served by gunicorn (WSGI) or uvicorn (ASGI), configured with veil before the handler is built."""

from __future__ import annotations

import veil
from tests.instrumentation.apps import django_project  # noqa: F401 - configures Django

veil.configure(auto_instrument=False)
veil.instrument("django")

from django.core.asgi import get_asgi_application  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

wsgi_application = get_wsgi_application()
asgi_application = get_asgi_application()
