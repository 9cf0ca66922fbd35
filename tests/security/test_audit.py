"""veil.audit(): an OTLP log event on the active trace, redacted, with optional user pseudonyms; Flask-Login's
signals captured without code (Django's are covered end to end in test_django_e2e.py)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry import trace

import veil
from tests.fixtures.otlp import OTLPReceiver
from veil.security import audit as audit_module
from veil.security.audit import audit
from veil.telemetry import reset_for_tests

USER_KEY = "pseudonym-key-for-tests-0001"


@pytest.fixture
def exporting(otlp_receiver: OTLPReceiver) -> Iterator[Callable[..., veil.Telemetry]]:
    def configure(**overrides: Any) -> veil.Telemetry:
        return veil.configure(
            force=True,
            auto_instrument=False,
            service_name="accounts",
            traces_exporter="none",
            logs_exporter="otlp",
            otlp_endpoint=otlp_receiver.http_endpoint,
            **overrides,
        )

    yield configure
    reset_for_tests()


def audit_logs(receiver: OTLPReceiver, count: int) -> list[Any]:
    return receiver.wait_for_logs(count, predicate=lambda log: log.event_name == "veil.audit")


def test_an_audit_event_is_a_log_event_on_the_active_trace(
    exporting: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    telemetry = exporting()
    with trace.get_tracer("test").start_as_current_span("POST /admin/roles") as span:
        audit(
            "role.grant",
            actor="alice",
            target="user:42",
            role="admin",
            ticket=1234,
            authorization="Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXZhbHVl",
        )
    audit("logout", actor="bob@example.com")
    assert telemetry.force_flush(10_000)
    logs = {log.attributes["veil.audit.action"]: log for log in audit_logs(otlp_receiver, 2)}
    grant, logout = logs["role.grant"], logs["logout"]
    context = span.get_span_context()
    assert (grant.trace_id, grant.span_id) == (f"{context.trace_id:032x}", f"{context.span_id:016x}")
    assert grant.severity_text == "INFO" and grant.body == "audit role.grant success"
    assert grant.attributes["veil.audit.outcome"] == "success"
    assert grant.attributes["enduser.id"] == "alice"
    assert grant.attributes["veil.audit.target"] == "user:42"
    assert grant.attributes["veil.audit.role"] == "admin" and grant.attributes["veil.audit.ticket"] == 1234
    assert "eyJ" not in str(grant.attributes["veil.audit.authorization"])  # redacted on export
    assert logout.trace_id == ""  # outside a trace: recorded all the same
    assert "bob@example.com" not in str(logout.attributes)  # e-mail addresses are personal data


def test_users_can_be_recorded_as_keyed_pseudonyms(
    exporting: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    telemetry = exporting(audit_enduser_hash_key=USER_KEY)
    audit("login", actor="carol", outcome="failure")
    audit("login", actor="carol", outcome="success")
    assert telemetry.force_flush(10_000)
    failed, succeeded = sorted(audit_logs(otlp_receiver, 2), key=lambda log: log.attributes["veil.audit.outcome"])
    expected = hmac.new(USER_KEY.encode(), b"carol", hashlib.sha256).hexdigest()[:32]
    assert failed.attributes["enduser.id"] == succeeded.attributes["enduser.id"] == expected
    assert failed.severity_text == "WARN"


def test_audit_never_raises(exporting: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver) -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    telemetry = exporting()
    audit("x", actor=Hostile())  # swallowed and logged once
    audit("y", outcome="maybe")  # an unknown outcome is recorded as unknown
    assert telemetry.force_flush(10_000)
    (log,) = audit_logs(otlp_receiver, 1)
    assert log.attributes["veil.audit.outcome"] == "unknown"


def test_a_failing_burst_counter_does_not_cost_the_audit_record(
    exporting: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    telemetry = exporting()

    def broken(event: Any) -> None:
        raise TypeError("observer bug")

    monkeypatch.setattr(audit_module._state, "on_auth_failure", broken)
    audit("login", actor="dave", outcome="failure")
    assert telemetry.force_flush(10_000)
    (log,) = audit_logs(otlp_receiver, 1)
    assert log.attributes["veil.audit.outcome"] == "failure"


def test_a_short_user_hash_key_is_refused() -> None:
    with pytest.raises(veil.ConfigurationError, match="VEIL_AUDIT_ENDUSER_HASH_KEY"):
        veil.configure(force=True, auto_instrument=False, audit_enduser_hash_key="short")


def test_flask_login_signals_become_audit_events(
    exporting: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    import flask
    import flask_login

    telemetry = exporting()
    app = flask.Flask("login-app")
    app.secret_key = "test-secret-key"
    manager = flask_login.LoginManager(app)

    class User(flask_login.UserMixin):
        def __init__(self, identifier: str) -> None:
            self.id = identifier

    manager.user_loader(User)

    @app.post("/login/<name>")
    def login(name: str) -> str:
        flask_login.login_user(User(name))
        return "in"

    @app.post("/logout")
    def logout() -> str:
        flask_login.logout_user()
        return "out"

    @app.get("/private")
    @flask_login.login_required
    def private() -> str:
        return "secret"

    client = app.test_client()
    assert client.get("/private").status_code == 401
    assert client.post("/login/dora").status_code == 200
    assert client.post("/logout").status_code == 200
    assert telemetry.force_flush(10_000)
    logs = audit_logs(otlp_receiver, 3)
    seen = sorted((log.attributes["veil.audit.action"], log.attributes["veil.audit.outcome"]) for log in logs)
    assert seen == [("access", "failure"), ("login", "success"), ("logout", "success")]
    by_action = {log.attributes["veil.audit.action"]: log for log in logs}
    assert by_action["login"].attributes["enduser.id"] == "dora"
    assert by_action["login"].attributes["veil.audit.framework"] == "flask-login"
