"""Wiring the security outputs from Settings: the audit file, the SIEM sinks, `veil.audit()` and the signals.

`build(settings)` runs while `veil.configure()` builds the pipelines: it makes the sinks and the audit file
(their ledgers join `Telemetry.health()`); `Outputs.activate()` runs once they are installed: it points
`veil.audit()` at them, subscribes the sinks to findings and registers the request-level signals;
`Outputs.close()` is part of `Telemetry.shutdown()`. With nothing configured nothing is started.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.semconv.attributes.url_attributes import URL_PATH

from veil._guard import call_guarded
from veil.export.accounting import Ledger
from veil.security import audit, signals
from veil.security.findings import add_listener
from veil.security.request import add_request_observer, current_request
from veil.security.signals import ClientResolver
from veil.security.sinks import Sink, build_sinks
from veil.security.sinks.base import Worker
from veil.security.trail import TrailSink


class AuditEmitter(Worker):
    """The thread that turns queued `veil.audit()` events into log records and hands them to the outputs."""

    kind = "audit"

    def process(self, batch: Sequence[audit.AuditEvent]) -> bool:
        for event in batch:
            call_guarded("veil.audit delivery", audit.deliver, event)
        return True


class Outputs:
    """What `install` started; `close(timeout)` flushes and stops it."""

    def __init__(self, settings: Any, sinks: list[Sink], trail: TrailSink | None) -> None:
        self.settings = settings
        self.sinks = sinks
        self.trail = trail
        self.unsubscribe: list[Callable[[], object]] = []
        self.emitter = AuditEmitter("veil.audit", settings.security_sink_queue_size)

    @property
    def ledgers(self) -> list[Ledger]:
        return [self.emitter.ledger, *(sink.ledger for sink in self._all())]

    def _all(self) -> list[Sink]:
        return [*self.sinks, *([self.trail] if self.trail is not None else [])]

    def on_audit(self, event: audit.AuditEvent) -> None:
        for sink in self._all():
            sink.submit(event)

    def on_finding(self, finding: Any) -> None:
        for sink in self.sinks:
            sink.submit(finding)

    def activate(self) -> None:
        """Point `veil.audit()` at the outputs and subscribe the sinks to findings (called once installed)."""
        settings = self.settings
        if self.sinks:
            self.unsubscribe.append(add_listener(self.on_finding))
        resolver = ClientResolver(settings.security_trusted_proxies)
        on_auth_failure = None
        if settings.security_signals and settings.security != "off":  # VEIL_SECURITY=off: all detection off
            observer = signals.from_settings(settings)
            self.unsubscribe.append(add_request_observer(observer))
            on_auth_failure = lambda event: observer.note_audit_failure(event.actor)  # noqa: E731
        hash_key = settings.audit_enduser_hash_key
        audit.install(
            submit=self.emitter.submit,
            outputs=self.on_audit if self._all() else None,
            hash_key=hash_key.encode("utf-8") if hash_key else None,
            on_auth_failure=on_auth_failure,
            request_fields=lambda: _request_fields(resolver),
        )

    def flush(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        emitted = self.emitter.flush(timeout)
        return all(sink.flush(max(deadline - time.monotonic(), 0.0)) for sink in self._all()) and emitted

    def close_emitter(self, timeout: float) -> bool:
        """Turn the queued audit events into log records and stop that thread (before the providers stop)."""
        return self.emitter.close(timeout)

    def close(self, timeout: float) -> bool:
        for unsubscribe in self.unsubscribe:
            call_guarded("security outputs: unsubscribe", unsubscribe)
        self.unsubscribe.clear()
        deadline = time.monotonic() + timeout
        emitted = self.emitter.close(timeout)
        audit.uninstall()
        return emitted and all(sink.close(max(deadline - time.monotonic(), 0.0)) for sink in self._all())


def _request_fields(resolver: ClientResolver) -> dict[str, str]:
    """The request an audit event happens in: client, method, route, path (on the caller's thread)."""
    scope = current_request()
    if scope is None:
        return {}
    fields = {HTTP_REQUEST_METHOD: scope.method, URL_PATH: scope.target.partition("?")[0][:1024]}
    client = resolver.client(scope)
    if client:
        fields[CLIENT_ADDRESS] = client
    route = scope.resolve_route()
    if route:
        fields[HTTP_ROUTE] = route
    return fields


def build(settings: Any) -> Outputs:
    """The security outputs `settings` asks for, built but not started (no thread runs before the first event)."""
    redactor: list[Any] = []

    def redact(key: str, value: Any) -> Any:
        # Built on first use, on a sink's thread: processes without sinks never compile the rules twice.
        if not redactor:
            from veil.redaction import Redactor

            redactor.append(Redactor.from_settings(settings))
        return redactor[0].redact(key, value) if settings.redaction_enabled else value

    sinks = build_sinks(settings, redact)
    trail = None
    if settings.audit_file:
        key = settings.audit_key.encode("utf-8") if settings.audit_key else None
        trail = TrailSink(
            settings.audit_file, key, settings.audit_checkpoint_interval, settings.security_sink_queue_size, redact
        )
    outputs = Outputs(settings, sinks, trail)
    service = {"name": settings.service_name or "unknown_service"}
    if settings.service_version:
        service["version"] = settings.service_version
    for sink in outputs._all():
        sink.service = service
    return outputs
