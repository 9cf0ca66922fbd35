"""Django settings for the graceful-stop test: the stop app's one view behind veil's WSGI middleware."""

SECRET_KEY = "stop-test"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.resilience.apps.stop_app"
WSGI_APPLICATION = "tests.resilience.apps.stop_app.django_wsgi"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict[str, object] = {}
USE_TZ = True
