"""Django (4.2 and later), served over WSGI or ASGI: one SERVER span per request named `{method} {route}`.

`DjangoInstrumentor().instrument()` makes sure `veil.instrumentation.django.VeilMiddleware` is in
`settings.MIDDLEWARE` when Django builds its middleware chain (first by default; `middleware_position=` or
OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION choose another index). If you list `VeilMiddleware` yourself, that
placement is kept and no second one is added; the middleware also works on its own, without instrument().

The middleware is both sync and async capable, so under ASGI it runs on the event loop (no thread hop) and
Django over ASGI is traced without installing anything else.

Recorded: the stable HTTP server attributes, http.route from the resolver match (the full pattern through
nested includes, e.g. `/api/users/<int:pk>/`), status, captured headers with sensitive values redacted, the
query redacted at the source, and the HTTP server metrics. Uncaught view exceptions (those Django turns into a
500 response) are recorded once on the span; a view stopped by a veil security rule in block mode answers 403.
The span ends when Django closes the response, i.e. after a streaming body has been sent.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor
from opentelemetry.instrumentation.utils import unwrap

from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.instrumentation._http import (
    SERVER_OPTION_NAMES,
    ServerRequest,
    ServerTelemetry,
    checked_options,
    current_server_request,
    fail_guarded,
    finish_guarded,
    server_telemetry,
)
from veil.security.blocking import FORBIDDEN_BODY
from veil.security.findings import Blocked

__all__ = ["DjangoInstrumentor", "VeilMiddleware"]

_instruments = ("django >= 4.2",)
_INSTRUMENTING_MODULE = "veil.instrumentation.django"
MIDDLEWARE_PATH = "veil.instrumentation.django.VeilMiddleware"
POSITION_VARIABLE = "OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION"
_REQUEST_ATTRIBUTE = "_veil_server_request"


class _State:
    """Module state set at instrument time (never per request)."""

    telemetry: ServerTelemetry | None = None
    position: int = 0
    inserted = False


def _telemetry(**options: Any) -> ServerTelemetry:
    checked_options("DjangoInstrumentor", options, SERVER_OPTION_NAMES)
    return server_telemetry("django", _INSTRUMENTING_MODULE, options)


def _route_of(request: Any) -> str | None:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return None
    route = getattr(match, "route", None)
    if route is None:
        return None
    route = str(route)
    if route.startswith("^"):
        route = route[1:]
    return route if route.startswith("/") else f"/{route}"


def _start(telemetry: ServerTelemetry, request: Any) -> ServerRequest | None:
    scope = getattr(request, "scope", None)
    version = None
    if isinstance(scope, dict):
        http_version = scope.get("http_version")
        version = http_version if isinstance(http_version, str) else None
    state = telemetry.start_environ(request.META, native=request, scheme=request.scheme, protocol_version=version)
    if state is not None and state.security_pending is not None:  # the route while the view runs (findings)
        state.security_route = lambda: _route_of(request)
    return state


def _response_headers(response: Any) -> list[tuple[str, str]]:
    headers = [(str(name), str(value)) for name, value in response.items()]
    cookies = getattr(response, "cookies", None)
    if cookies:
        headers.extend(("Set-Cookie", morsel.OutputString()) for morsel in cookies.values())
    return headers


def _after_response(state: ServerRequest, request: Any, response: Any) -> None:
    """Record what the response says and end the span when Django closes the response."""
    try:
        state.set_route(_route_of(request))
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            state.set_status(status)
        config = state.telemetry.config
        if config.response_headers is not None or config.response_hook is not None:
            state.set_response_headers(_response_headers(response), response)
        length = response.get("Content-Length") if hasattr(response, "get") else None
        if length is not None and str(length).isdigit():
            state.add_response_bytes(int(length))
        elif not getattr(response, "streaming", True):
            state.add_response_bytes(len(response.content))
        closers = getattr(response, "_resource_closers", None)
        if isinstance(closers, list):
            closers.append(lambda: finish_guarded(state))
            return
    except Exception:
        log_once("django.response", "veil: failed to read a Django response", exc_info=True)
    finish_guarded(state)


def _on_request_exception(sender: Any, request: Any = None, **kwargs: Any) -> None:
    """`got_request_exception` receiver: Django is handling an uncaught exception into a 500 response."""
    try:
        state = getattr(request, _REQUEST_ATTRIBUTE, None)
        exception = sys.exc_info()[1]
        if isinstance(state, ServerRequest) and exception is not None:
            state.record_exception(exception)
    except Exception:
        log_once("django.signal", "veil: failed to record a Django exception", exc_info=True)


def _connect_signal() -> None:
    from django.core.signals import got_request_exception  # type: ignore[import-untyped]

    got_request_exception.connect(_on_request_exception, dispatch_uid="veil.instrumentation.django")


class VeilMiddleware:
    """Django middleware starting the SERVER span of each request; sync and async capable.

    Inserted by `DjangoInstrumentor().instrument()`, or list `"veil.instrumentation.django.VeilMiddleware"` in
    MIDDLEWARE yourself (first is best: spans then cover the other middleware too). Without instrument() it
    uses the global providers and the options from the environment.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self._async = iscoroutinefunction(get_response)
        if self._async:
            markcoroutinefunction(self)
        self._from_instrumentor = _State.telemetry is not None
        self._own: ServerTelemetry | None = None
        if not self._from_instrumentor:
            try:
                self._own = _telemetry()
                _connect_signal()
            except Exception:
                log_once("django.middleware", "veil: VeilMiddleware could not start", exc_info=True)

    def _current_telemetry(self) -> ServerTelemetry | None:
        return _State.telemetry if self._from_instrumentor else self._own

    def _begin(self, request: Any) -> tuple[ServerRequest | None, bool]:
        """(state, owned): the request's state and whether this middleware starts and ends its span."""
        outer = current_server_request()
        if outer is not None:
            setattr(request, _REQUEST_ATTRIBUTE, outer)
            return outer, False
        telemetry = self._current_telemetry()
        if telemetry is None:
            return None, False
        try:
            state = _start(telemetry, request)
        except Exception:
            log_once("django.start", "veil: failed to start a Django server span", exc_info=True)
            return None, False
        if state is not None:
            setattr(request, _REQUEST_ATTRIBUTE, state)
        return state, True

    def __call__(self, request: Any) -> Any:
        if self._async:
            return self.__acall__(request)
        state, owned = self._begin(request)
        if state is None:
            return self.get_response(request)
        if not owned:
            try:
                return self.get_response(request)
            finally:
                state.set_route(_route_of(request))
        token = state.attach()
        try:
            response = self.get_response(request)
        except BaseException as exception:
            state.set_route(_route_of(request))
            fail_guarded(state, exception)
            raise
        finally:
            state.detach(token)
        _after_response(state, request, response)
        return response

    def process_exception(self, request: Any, exception: BaseException) -> Any:
        """Block mode: a view stopped by a veil security rule answers 403, as under Flask and FastAPI, instead
        of Django's 500 page; any other exception is left to Django (None)."""
        if not isinstance(exception, Blocked):
            return None
        from django.http import HttpResponseForbidden  # type: ignore[import-untyped]

        return HttpResponseForbidden(FORBIDDEN_BODY, content_type="text/plain")

    async def __acall__(self, request: Any) -> Any:
        get_response: Callable[[Any], Awaitable[Any]] = self.get_response
        state, owned = self._begin(request)
        if state is None:
            return await get_response(request)
        if not owned:
            try:
                return await get_response(request)
            finally:
                state.set_route(_route_of(request))
        token = state.attach()
        try:
            response = await get_response(request)
        except BaseException as exception:
            state.set_route(_route_of(request))
            fail_guarded(state, exception)
            raise
        finally:
            state.detach(token)
        _after_response(state, request, response)
        return response


def _ensure_middleware() -> None:
    """Put VeilMiddleware into settings.MIDDLEWARE unless it is listed already."""
    from django.conf import settings  # type: ignore[import-untyped]

    current = getattr(settings, "MIDDLEWARE", None)
    if current is None:
        return
    entries = list(current)
    if MIDDLEWARE_PATH in entries:
        return
    position = min(_State.position, len(entries))
    entries.insert(position, MIDDLEWARE_PATH)
    settings.MIDDLEWARE = tuple(entries) if isinstance(current, tuple) else entries
    _State.inserted = True


def _load_middleware_wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    if _State.telemetry is not None:
        try:
            _ensure_middleware()
        except Exception:
            log_once("django.insert", "veil: could not add VeilMiddleware to MIDDLEWARE", exc_info=True)
    return wrapped(*args, **kwargs)


def _position(value: object) -> int:
    if value is None:
        raw = os.environ.get(POSITION_VARIABLE, "").strip()
        if not raw:
            return 0
        variable, value = POSITION_VARIABLE, raw
    else:
        variable = "middleware_position (keyword argument)"
    accepted = "an integer >= 0 (index in settings.MIDDLEWARE)"
    if isinstance(value, bool):
        raise ConfigurationError(variable, value, accepted)
    try:
        position: int = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError) as error:
        raise ConfigurationError(variable, value, accepted) from error
    if position < 0:
        raise ConfigurationError(variable, value, accepted)
    return position


class DjangoInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Traces Django requests through `VeilMiddleware`, added to MIDDLEWARE when Django loads it.

    Options: `middleware_position` (index in MIDDLEWARE, default 0 or OTEL_PYTHON_DJANGO_MIDDLEWARE_POSITION),
    `excluded_urls` (default OTEL_PYTHON_DJANGO_EXCLUDED_URLS, else OTEL_PYTHON_EXCLUDED_URLS),
    `request_hook(span, RequestInfo)`, `response_hook(span, RequestInfo, ResponseInfo)` (`native` is the
    HttpRequest / HttpResponse), `capture_request_headers`, `capture_response_headers`, `sanitize_fields`,
    `tracer_provider`, `meter_provider`. Call it before Django builds its handler (before
    `get_wsgi_application()` / `get_asgi_application()`); `veil.configure()` and `veil run` do.
    """

    def instrumentation_dependencies(self) -> Collection[str]:
        return _instruments

    def _instrument(self, **kwargs: Any) -> None:
        position = _position(kwargs.pop("middleware_position", None))
        telemetry = _telemetry(**kwargs)
        _State.position = position
        _State.telemetry = telemetry
        _State.inserted = False
        wrapt.wrap_function_wrapper(
            "django.core.handlers.base", "BaseHandler.load_middleware", _load_middleware_wrapper
        )
        _connect_signal()

    def _uninstrument(self, **kwargs: Any) -> None:
        from django.core.handlers.base import BaseHandler  # type: ignore[import-untyped]
        from django.core.signals import got_request_exception

        unwrap(BaseHandler, "load_middleware")
        _State.telemetry = None
        got_request_exception.disconnect(dispatch_uid="veil.instrumentation.django")
        if _State.inserted:
            _State.inserted = False
            try:
                from django.conf import settings

                current = settings.MIDDLEWARE
                entries = [entry for entry in current if entry != MIDDLEWARE_PATH]
                settings.MIDDLEWARE = tuple(entries) if isinstance(current, tuple) else entries
            except Exception:
                log_once("django.remove", "veil: could not remove VeilMiddleware from MIDDLEWARE", exc_info=True)
