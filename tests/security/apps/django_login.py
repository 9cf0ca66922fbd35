"""A small Django site with real logins, served by gunicorn in test_django_e2e.py (`veil run`).

Settings, URLs, views and the WSGI application in one module; the SQLite file comes from LOGIN_DB. At import
the tables are created and one user (alice / correct-horse) exists. Failed logins answer 401.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="test-only-secret-key-for-the-login-site",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    MIDDLEWARE=[
        "django.contrib.sessions.middleware.SessionMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ],
    SESSION_ENGINE="django.contrib.sessions.backends.signed_cookies",
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["LOGIN_DB"]}},
    PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],  # fast: tests log in many times
    USE_TZ=True,
)
django.setup()

from django.contrib.auth import authenticate, login, logout  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpRequest, HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
if not User.objects.filter(username="alice").exists():
    User.objects.create_user("alice", password="correct-horse")


def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST.get("username"), password=request.POST.get("password"))
    if user is None:
        return HttpResponse("no", status=401)
    login(request, user)
    return HttpResponse("welcome")


def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")


def products(request: HttpRequest, product: int) -> HttpResponse:
    return HttpResponse(f"product {product}")


urlpatterns = [
    path("login/", login_view),
    path("logout/", logout_view),
    path("products/<int:product>/", products),
]

application = get_wsgi_application()
