"""`veil.audit()`: who did what to what, recorded as an OpenTelemetry log event on the active trace.

`audit(action, actor=..., target=..., outcome=..., **attributes)` emits one log record (event name
`veil.audit`; attributes `veil.audit.action`, `veil.audit.outcome`, `enduser.id`, `veil.audit.target`,
`veil.audit.<name>` for each extra attribute, and the request's `client.address`, `http.route`, `url.path`
when called inside a traced request) and hands the event to the tamper-evident audit file and the SIEM sinks
when they are configured (veil.security.outputs). Redaction happens off the calling thread, in the log
exporter and the sinks, like every other signal. With `VEIL_AUDIT_ENDUSER_HASH_KEY` the user is recorded as an
HMAC-SHA256 of its name, so events about one user still correlate without naming them.

Login, failed login and logout are captured without code from Django's `user_logged_in`,
`user_login_failed` and `user_logged_out` signals, and from Flask-Login's `user_logged_in`, `user_logged_out`
and `user_unauthorized` signals, connected when those modules are imported (a post-import hook: veil never
imports a framework the application does not use).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import wrapt
from opentelemetry import trace
from opentelemetry._logs import SeverityNumber, get_logger_provider
from opentelemetry.semconv._incubating.attributes.enduser_attributes import ENDUSER_ID
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from opentelemetry.util.types import AttributeValue

from veil._guard import log_once

EVENT_NAME = "veil.audit"
ACTION = "veil.audit.action"
OUTCOME = "veil.audit.outcome"
TARGET = "veil.audit.target"
OUTCOMES = ("success", "failure", "unknown")

__all__ = ["ENDUSER_ID", "EVENT_NAME", "AuditEvent", "audit"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audit event as the outputs receive it (raw values: sinks and the audit file redact them)."""

    action: str
    outcome: str
    actor: str | None  # already hashed when VEIL_AUDIT_ENDUSER_HASH_KEY is set
    target: str | None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    request: Mapping[str, str] = field(default_factory=dict)  # client.address, http.route, url.path, ...
    trace_id: int = 0
    span_id: int = 0
    time_unix_nano: int = 0
    trace_flags: int = 0


class _State:
    """What `configure()` installed: the queue to the emitting thread, the outputs, the user-hash key."""

    def __init__(self) -> None:
        self.submit: Callable[[AuditEvent], None] | None = None  # the emitting thread's queue
        self.outputs: Callable[[AuditEvent], None] | None = None
        self.hash_key: bytes | None = None
        self.on_auth_failure: Callable[[AuditEvent], None] | None = None
        self.request_fields: Callable[[], dict[str, str]] = dict
        self.logger: Any = None


_state = _State()


def install(
    *,
    submit: Callable[[AuditEvent], None] | None,
    outputs: Callable[[AuditEvent], None] | None,
    hash_key: bytes | None,
    on_auth_failure: Callable[[AuditEvent], None] | None = None,
    request_fields: Callable[[], dict[str, str]] | None = None,
) -> None:
    """Called by veil's configuration (veil.security.outputs); `uninstall` undoes it."""
    _state.submit = submit
    _state.outputs = outputs
    _state.hash_key = hash_key
    _state.on_auth_failure = on_auth_failure
    _state.request_fields = request_fields or dict
    _state.logger = None
    _capture_frameworks()


def uninstall() -> None:
    install(submit=None, outputs=None, hash_key=None)


def hash_user(user: str, key: bytes) -> str:
    """The pseudonym of `user` under `key`: 32 hex digits of HMAC-SHA256 (equal users, equal pseudonyms)."""
    return hmac.new(key, user.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()[:32]


def audit(
    action: str,
    *,
    actor: object = None,
    target: object = None,
    outcome: str = "success",
    **attributes: AttributeValue,
) -> None:
    """Record that `actor` did `action` to `target` with `outcome` (success, failure or unknown).

    Extra keyword attributes are recorded as `veil.audit.<name>`. Never raises. On the calling thread it only
    captures the trace context, the time and the request fields and queues the event; the log record is made,
    redacted and delivered on veil's threads.
    """
    try:
        state = _state
        if outcome not in OUTCOMES:
            log_once(
                "security.audit.outcome",
                "veil: audit outcome %r is not one of %s; recorded as unknown",
                outcome,
                OUTCOMES,
            )
            outcome = "unknown"
        user = None if actor is None else str(actor)
        if user is not None and state.hash_key is not None:
            user = hash_user(user, state.hash_key)
        context = trace.get_current_span().get_span_context()
        event = AuditEvent(
            action=str(action),
            outcome=outcome,
            actor=user,
            target=None if target is None else str(target),
            attributes=attributes,
            request=state.request_fields(),
            trace_id=context.trace_id,
            span_id=context.span_id,
            time_unix_nano=time.time_ns(),
            trace_flags=context.trace_flags,
        )
        if outcome == "failure" and state.on_auth_failure is not None:
            try:
                state.on_auth_failure(event)  # here, on the request's own thread: bursts count per request
            except Exception:  # a failing signal observer must not cost the audit record itself
                log_once("security.audit.burst", "veil: counting an authentication failure failed", exc_info=True)
        if state.submit is not None:
            state.submit(event)
        else:
            deliver(event)  # veil is not configured: the global logger provider, on this thread
    except Exception:
        log_once("security.audit", "veil: recording an audit event failed (ignored)", exc_info=True)


def deliver(event: AuditEvent) -> None:
    """Emit the event's log record (on its trace) and hand it to the outputs; runs on the emitting thread."""
    state = _state
    attributes: dict[str, AttributeValue] = {ACTION: event.action, OUTCOME: event.outcome, **event.request}
    if event.actor is not None:
        attributes[ENDUSER_ID] = event.actor
    if event.target is not None:
        attributes[TARGET] = event.target
    for key, value in event.attributes.items():
        attributes[f"veil.audit.{key}"] = value
    logger = state.logger
    if logger is None:
        logger = state.logger = get_logger_provider().get_logger("veil.security")
    context = None
    if event.trace_id:
        span_context = SpanContext(event.trace_id, event.span_id, False, TraceFlags(event.trace_flags))
        context = trace.set_span_in_context(NonRecordingSpan(span_context))
    failed = event.outcome == "failure"
    logger.emit(
        timestamp=event.time_unix_nano,
        context=context,
        severity_number=SeverityNumber.WARN if failed else SeverityNumber.INFO,
        severity_text="WARN" if failed else "INFO",
        body=f"audit {event.action} {event.outcome}",
        attributes=attributes,
        event_name=EVENT_NAME,
    )
    if state.outputs is not None:
        state.outputs(event)


# ---------------------------------------------------------------------------------- framework capture

_hooks_registered = False


def _capture_frameworks() -> None:
    global _hooks_registered
    if _hooks_registered:
        return
    _hooks_registered = True
    wrapt.register_post_import_hook(_connect_django, "django.contrib.auth.signals")
    wrapt.register_post_import_hook(_connect_flask_login, "flask_login.signals")


def _django_username(user: Any) -> str | None:
    getter = getattr(user, "get_username", None)
    name = getter() if callable(getter) else None
    return str(name) if name else None  # the anonymous user has an empty name


def _connect_django(signals: Any) -> None:
    def logged_in(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
        audit("login", actor=_django_username(user), outcome="success", framework="django")

    def login_failed(sender: Any, credentials: Mapping[str, Any] | None = None, request: Any = None, **_: Any) -> None:
        # Django passes the credentials with the password already masked; only the user name is kept.
        username = (credentials or {}).get("username")
        audit("login", actor=username, outcome="failure", framework="django")

    def logged_out(sender: Any, request: Any = None, user: Any = None, **_: Any) -> None:
        audit("logout", actor=_django_username(user), outcome="success", framework="django")

    signals.user_logged_in.connect(logged_in, weak=False, dispatch_uid="veil.audit.login")
    signals.user_login_failed.connect(login_failed, weak=False, dispatch_uid="veil.audit.login_failed")
    signals.user_logged_out.connect(logged_out, weak=False, dispatch_uid="veil.audit.logout")


def _flask_user(user: Any) -> str | None:
    getter = getattr(user, "get_id", None)
    value = getter() if callable(getter) else None
    return None if value is None else str(value)


def _connect_flask_login(signals: Any) -> None:
    def logged_in(sender: Any, user: Any = None, **_: Any) -> None:
        audit("login", actor=_flask_user(user), outcome="success", framework="flask-login")

    def logged_out(sender: Any, user: Any = None, **_: Any) -> None:
        audit("logout", actor=_flask_user(user), outcome="success", framework="flask-login")

    def unauthorized(sender: Any, **_: Any) -> None:
        audit("access", outcome="failure", framework="flask-login", reason="unauthorized")

    signals.user_logged_in.connect(logged_in, weak=False)
    signals.user_logged_out.connect(logged_out, weak=False)
    signals.user_unauthorized.connect(unauthorized, weak=False)
