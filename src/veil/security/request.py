"""The inbound request as the security layer sees it: `RequestScope`, `current_request()` and observers.

veil's server instrumentation calls `begin` for each inbound request and `end` when it ends, but only while
someone wants scopes: a registered `RequestObserver` (request-level signals) or the audit-hook sensor
(`hold_scopes`). Otherwise the server path pays one attribute read.

`begin` only keeps what the request came with on the server request; the `RequestScope` object is built when
something asks for it: `current_request()` (the sensor, on an event it watches, or user code), or an observer
that has to look at this request. An observer may say cheaply that it has nothing to do (`skips_start`,
`skips_end`): the signals' benign repeat requests then build no scope at all.

The scope travels with the request's SERVER span in the OpenTelemetry context, so `current_request()` finds it
in every thread or task that carries that context (streaming bodies included) and nowhere else.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from opentelemetry.trace import Span

from veil._fork import after_fork
from veil._guard import log_once

if TYPE_CHECKING:
    from veil.instrumentation._http.server_request import ServerRequest

__all__ = [
    "RequestObserver",
    "RequestScope",
    "add_request_observer",
    "current_request",
]

MAX_HEADERS = 64
MAX_HEADER_VALUE = 4096

HeaderSource = Callable[[], Iterable[tuple[str, str]]]


class _Headers(Mapping[str, str]):
    """Request headers by lower-case name, read from the server's own structure only when first asked for.

    Bounded: at most MAX_HEADERS names, values cut at MAX_HEADER_VALUE characters; repeated names joined by
    `,`. Reading never raises: a broken source yields no headers.
    """

    __slots__ = ("_items", "_source")

    def __init__(self, source: HeaderSource | Mapping[str, str] | None) -> None:
        self._source = source
        self._items: dict[str, str] | None = None

    def _load(self) -> dict[str, str]:
        items = self._items
        if items is not None:
            return items
        items = {}
        source = self._source
        try:
            pairs = source.items() if isinstance(source, Mapping) else (source() if source is not None else ())
            for name, value in pairs:
                key = name.lower()
                previous = items.get(key)
                if previous is None:
                    if len(items) >= MAX_HEADERS:
                        continue
                    items[key] = value[:MAX_HEADER_VALUE]
                else:
                    items[key] = (previous + "," + value)[:MAX_HEADER_VALUE]
        except Exception:
            log_once("security.headers", "veil: could not read request headers for security", exc_info=True)
        self._items = items
        self._source = None
        return items

    def __getitem__(self, key: str) -> str:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"<request headers: {len(self)}>"


class RequestScope:
    """One inbound request, for the duration of that request: what the security layer may know about it.

    `client_address` is the socket peer, never a forwarded-for header (which the client writes itself).
    `target` is the path and query as received (not redacted: it is compared, never exported as is).
    `route` is the matched template once the framework knows it (`resolve_route()` asks the framework).
    `headers` are read from the server's own structure on first use.

    Added by issue 14 (beyond the contract): `findings` this request has produced so far, `rule_ids` of them,
    the finding that blocked it (`blocked_by`: the 403 answer says so), `route_resolver`, a framework hook that
    reads the route while the handler runs, and `inputs`, the request inputs already split into comparable
    strings (built once, on the first correlation). `auth_failure_counted`: the request-level signals counted
    its authentication failure.

    The server path builds one only when something asks for it (see the module docstring), so the fields most
    requests never set are class-level defaults (an instance stores only what differs) and it is built with
    `object.__new__` and only the per-request fields set, instead of the keyword-rich constructor.
    """

    # the defaults of the fields most requests never set
    enduser_id: str | None = None
    status_code: int | None = None
    findings: int = 0
    rule_ids: tuple[str, ...] = ()
    blocked_by: str | None = None
    route_resolver: Callable[[], str | None] | None = None
    inputs: tuple[tuple[str, str], ...] | None = None
    extra_inputs: tuple[tuple[str, str], ...] = ()
    auth_failure_counted: bool = False
    _headers: Mapping[str, str] | None = None
    _header_source: HeaderSource | Mapping[str, str] | None = None
    _request: ServerRequest | None = None  # whose route is read when no resolver is set

    def __init__(  # noqa: PLR0917 - the constructor of the former dataclass, positional order kept
        self,
        method: str,
        route: str | None,
        target: str,
        client_address: str | None,
        headers: Mapping[str, str],
        user_agent: str | None,
        server_span: Span | None,
        enduser_id: str | None = None,
        status_code: int | None = None,
        findings: int = 0,
        rule_ids: tuple[str, ...] = (),
        blocked_by: str | None = None,
        route_resolver: Callable[[], str | None] | None = None,
        inputs: tuple[tuple[str, str], ...] | None = None,
        extra_inputs: tuple[tuple[str, str], ...] = (),
        auth_failure_counted: bool = False,
    ) -> None:
        self.method = method
        self.route = route
        self.target = target
        self.client_address = client_address
        self._headers = headers
        self.user_agent = user_agent
        self.server_span = server_span
        self.enduser_id = enduser_id
        self.status_code = status_code
        self.findings = findings
        self.rule_ids = rule_ids
        self.blocked_by = blocked_by
        self.route_resolver = route_resolver
        self.inputs = inputs
        self.extra_inputs = extra_inputs
        self.auth_failure_counted = auth_failure_counted

    @property
    def headers(self) -> Mapping[str, str]:
        headers = self._headers
        if headers is None:
            headers = self._headers = _Headers(self._header_source)
            self._header_source = None
        return headers

    def __repr__(self) -> str:
        shown = ("method", "route", "target", "client_address", "user_agent", "enduser_id", "status_code",
                 "findings", "rule_ids", "blocked_by", "auth_failure_counted")  # fmt: skip
        return f"RequestScope({', '.join(f'{name}={getattr(self, name)!r}' for name in shown)})"

    def resolve_route(self) -> str | None:
        """The route template; while it is unknown, `route_resolver` is asked, or the one the framework's
        instrumentation left on the server request (Flask's asks werkzeug directly), or else the server
        request's route, which frameworks set when they match."""
        route = self.route
        if route is None:
            resolver, request = self.route_resolver, self._request
            if resolver is None and request is not None:
                resolver = request.security_route
            try:
                route = resolver() if resolver is not None else request.route if request is not None else None
            except Exception:
                route = None
            if route:
                self.route = route
        return route

    def add_input(self, source: str, value: str) -> None:
        """Tell input correlation about a value the request carried that the server path cannot see
        (a parsed JSON body field, say). Bounded by the correlation module."""
        if len(self.extra_inputs) < MAX_HEADERS:
            self.extra_inputs = (*self.extra_inputs, (source, value))
            self.inputs = None


_new_scope = object.__new__


class RequestObserver(Protocol):
    """Told about every inbound request; must be quick and must not raise (exceptions are logged once).

    It may also define `skips_start(target, user_agent) -> bool` and `skips_end(status_code) -> bool`: when
    they answer True, `on_request_start` / `on_request_end` is not called for that request, and no scope is
    built for it (the cheap path for requests an observer has seen the like of before).
    """

    def on_request_start(self, scope: RequestScope) -> None: ...

    def on_request_end(self, scope: RequestScope) -> None: ...


_Skip = Callable[..., bool] | None


def _hooks(observer: RequestObserver) -> tuple[RequestObserver, _Skip, _Skip]:
    return observer, getattr(observer, "skips_start", None), getattr(observer, "skips_end", None)


class _State:
    """Who wants scopes. `wanted` is read once per request by the server instrumentation."""

    wanted = False
    observers: tuple[RequestObserver, ...] = ()
    hooks: tuple[tuple[RequestObserver, _Skip, _Skip], ...] = ()  # each observer with its optional skip tests
    holders = 0
    lock = threading.Lock()


def _fresh_lock_in_child() -> None:
    _State.lock = threading.Lock()  # a fork taken while another thread held it would leave it locked


after_fork(_fresh_lock_in_child)


def _refresh() -> None:
    _State.hooks = tuple(_hooks(observer) for observer in _State.observers)
    _State.wanted = bool(_State.observers) or _State.holders > 0


def add_request_observer(observer: RequestObserver) -> Callable[[], None]:
    """Subscribe `observer` to every inbound request from now on; returns the function that unsubscribes it."""
    with _State.lock:
        _State.observers = (*_State.observers, observer)
        _refresh()

    def remove() -> None:
        with _State.lock:
            _State.observers = tuple(item for item in _State.observers if item is not observer)
            _refresh()

    return remove


def hold_scopes() -> Callable[[], None]:
    """Ask for scopes without observing (the sensor needs `current_request()`); returns the release."""
    released = False
    with _State.lock:
        _State.holders += 1
        _refresh()

    def release() -> None:
        nonlocal released
        with _State.lock:
            if not released:
                released = True
                _State.holders -= 1
                _refresh()

    return release


def scopes_wanted() -> bool:
    """Whether the server instrumentation should open scopes at all."""
    return _State.wanted


class _Lookup:
    """`current_server_request` of veil.instrumentation (which owns the context key and how the request is held
    there); imported on first use, since that package imports this module."""

    find: Callable[[], ServerRequest | None] | None = None


def current_request() -> RequestScope | None:
    """The scope of the inbound request this code runs for (None outside a request or once it ended)."""
    find = _Lookup.find
    if find is None:
        from veil.instrumentation._http.server_request import current_server_request

        find = _Lookup.find = current_server_request
    request = find()
    if request is None:
        return None
    scope = request.security_scope
    if scope is None and request.security_pending is not None:
        scope = _scope_of(request)
    return scope


def begin(
    request: ServerRequest,
    target: str,
    client_address: str | None,
    user_agent: str | None,
    headers: HeaderSource | Mapping[str, str] | None,
) -> None:
    """Open the security view of `request` (called by the server instrumentation when `scopes_wanted()`): keep
    what it came with, and tell the observers that do not skip it. Never raises."""
    request.security_pending = (target, client_address, user_agent, headers)
    try:
        for observer, skips_start, _ in _State.hooks:
            try:
                if skips_start is not None and skips_start(target, user_agent):
                    continue
                observer.on_request_start(request.security_scope or _scope_of(request))
            except Exception:
                log_once(f"security.observer.start.{type(observer).__qualname__}", _OBSERVER_FAILED, exc_info=True)
    except Exception:
        log_once("security.begin", "veil: failed to open a request's security scope", exc_info=True)


def _scope_of(request: ServerRequest) -> RequestScope:
    """Build the scope of a request `begin` has opened (`security_pending` is set), once."""
    target, client_address, user_agent, headers = request.security_pending  # type: ignore[misc]
    scope = _new_scope(RequestScope)
    scope.method = request.method
    scope.route = request.route
    scope.target = target
    scope.client_address = client_address
    scope.user_agent = user_agent
    scope.server_span = request.span
    scope._header_source = headers
    scope._request = request
    request.security_scope = scope
    return scope


def end(request: ServerRequest) -> None:
    """Close the security view of `request` before its span ends: status and route filled in, observers told
    (those that do not skip it). The request then lets go of the scope, which is freed at once instead of with
    the request's own reference cycle (its context holds it) by the cyclic garbage collector: that collection
    was most of the scope's cost."""
    if request.security_pending is None:
        return
    try:
        scope = request.security_scope
        if scope is not None:
            _finish(scope, request)
        for observer, _, skips_end in _State.hooks:
            try:
                if scope is None:
                    if skips_end is not None and skips_end(request.status_code):
                        continue
                    scope = _scope_of(request)
                    _finish(scope, request)
                observer.on_request_end(scope)
            except Exception:
                log_once(f"security.observer.end.{type(observer).__qualname__}", _OBSERVER_FAILED, exc_info=True)
        if scope is not None:
            scope._request = None
    except Exception:
        log_once("security.end", "veil: failed to close a request's security scope", exc_info=True)
    finally:
        request.security_scope = None
        request.security_pending = None
        request.security_route = None


def _finish(scope: RequestScope, request: ServerRequest) -> None:
    scope.status_code = request.status_code
    if request.route:
        scope.route = request.route


_OBSERVER_FAILED = "veil: a security request observer raised (ignored; the application is unaffected)"
