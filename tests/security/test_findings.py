"""emit() end to end through veil.configure() to the real OTLP receiver; RequestScope from the server path."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from opentelemetry import trace

import veil
from tests.fixtures.otlp import OTLPReceiver
from veil.instrumentation.flask import FlaskInstrumentor
from veil.security import Finding, RequestScope, add_listener, add_request_observer, current_request, emit
from veil.security import findings as findings_module

Configure = Callable[..., veil.Telemetry]


def shell_finding(**changes: object) -> Finding:
    values: dict[str, object] = {
        "rule_id": "VEIL-RT-SHELL",
        "rule_name": "Shell spawned while serving a request",
        "category": "command-injection",
        "priority": "CRITICAL",
        "message": "shell spawned: sh -c 'curl http://admin:hunter2secret@db.internal/?token=abc123def456ghi'",
        "source": "runtime",
        "technique": "T1059",
        "fields": {"proc.cmdline": "mysql --password=hunter2secret -h db", "proc.exe": "/bin/sh"},
    }
    values.update(changes)
    return Finding(**values)  # type: ignore[arg-type]


class Observer:
    def __init__(self) -> None:
        self.started: list[RequestScope] = []
        self.ended: list[tuple[RequestScope, int | None, str | None]] = []

    def on_request_start(self, scope: RequestScope) -> None:
        self.started.append(scope)

    def on_request_end(self, scope: RequestScope) -> None:
        self.ended.append((scope, scope.status_code, scope.route))


@pytest.fixture
def configured(configure_veil: Configure, otlp_receiver: OTLPReceiver) -> Iterator[veil.Telemetry]:
    otlp_receiver.clear()
    handle = configure_veil(
        service_name="security-test",
        otlp_endpoint=otlp_receiver.http_endpoint,
        traces_exporter="otlp",
        logs_exporter="otlp",
        metrics_exporter="otlp",
        security="off",  # the sensor is tested in subprocesses: here only emit() and the request scopes
    )
    findings_module.reset()
    findings_module.configure_noise(window=0, rate=0, burst=1)
    yield handle
    findings_module.reset()


def flask_app(seen: list[RequestScope | None]) -> Flask:
    app = Flask("veil_security_findings")

    @app.route("/run/<name>")
    def run(name: str) -> str:
        seen.append(current_request())
        emit(shell_finding())
        return "ran"

    return app


def test_a_finding_reaches_log_span_server_span_and_metric_with_ids_and_redaction(
    configured: veil.Telemetry, otlp_receiver: OTLPReceiver
) -> None:
    seen: list[RequestScope | None] = []
    received: list[Finding] = []
    observer = Observer()
    remove_observer = add_request_observer(observer)
    remove_listener = add_listener(received.append)
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        client = flask_app(seen).test_client()
        response = client.get("/run/git?verbose=1", headers={"User-Agent": "probe/1", "X-Forwarded-For": "203.0.113.9"})
        assert response.status_code == 200
        response.close()
    finally:
        instrumentor.uninstrument()
        remove_listener()
        remove_observer()
    assert configured.force_flush(5000)

    (server,) = otlp_receiver.wait_for_spans(1, predicate=lambda span: span.kind == "SERVER")
    (log,) = otlp_receiver.wait_for_logs(1, predicate=lambda log: log.event_name == "veil.security.finding")
    # the log record sits on the request's trace and span
    assert (log.trace_id, log.span_id) == (server.trace_id, server.span_id)
    assert (log.severity_text, log.severity_number) == ("CRITICAL", 21)
    assert log.attributes["security_rule.uuid"] == "VEIL-RT-SHELL"
    assert log.attributes["security_rule.name"] == "Shell spawned while serving a request"
    assert log.attributes["security_rule.category"] == "command-injection"
    assert log.attributes["security_rule.ruleset.name"] == "veil-default"
    assert log.attributes["veil.security.technique"] == "T1059"
    assert log.attributes["http.route"] == "/run/<name>"
    # redacted before it left: the message and the command line carried credentials
    assert "hunter2secret" not in str(log.body) and "abc123def456ghi" not in str(log.body)
    assert "hunter2secret" not in str(log.attributes["proc.cmdline"])
    # the span event on the active span (the server span here) and the marker on the server span
    (event,) = [event for event in server.events if event.name == "veil.security.finding"]
    assert event.attributes["security_rule.uuid"] == "VEIL-RT-SHELL"
    assert server.attributes["veil.security.findings"] == 1
    assert server.attributes["veil.security.rules"] == ("VEIL-RT-SHELL",)
    # the counter
    metric = otlp_receiver.wait_for_metric("veil.security.findings")
    (point,) = metric.points
    assert point.value == 1
    assert point.attributes == {"rule": "VEIL-RT-SHELL", "severity": "critical", "http.route": "/run/<name>"}

    # the listener got the same redacted, trace-stamped finding
    (finding,) = received
    assert format(finding.trace_id, "032x") == server.trace_id and finding.time_unix_nano > 0
    assert "hunter2secret" not in finding.message and "hunter2secret" not in str(finding.fields["proc.cmdline"])

    # the scope: peer address (not X-Forwarded-For), target as received, lower-case headers; observers told
    (scope,) = seen
    assert scope is not None and scope is observer.started[0]
    assert scope.client_address == "127.0.0.1"
    assert scope.target == "/run/git?verbose=1" and scope.method == "GET"
    assert scope.headers["user-agent"] == "probe/1" and scope.user_agent == "probe/1"
    assert scope.server_span is not None
    ((ended, status, route),) = observer.ended
    assert ended is scope and status == 200 and route == "/run/<name>"


def test_outside_a_request_the_finding_has_no_trace_and_is_still_emitted(
    configured: veil.Telemetry, otlp_receiver: OTLPReceiver
) -> None:
    received: list[Finding] = []
    remove = add_listener(received.append)
    try:
        assert current_request() is None
        emit(shell_finding(message="startup shell"))
        with trace.get_tracer("tests").start_as_current_span("job") as span:
            emit(shell_finding(message="job shell"))
    finally:
        remove()
    assert configured.force_flush(5000)
    logs = {log.body: log for log in otlp_receiver.wait_for_logs(2)}
    assert logs["startup shell"].trace_id == "" and logs["startup shell"].span_id == ""
    job_context = span.get_span_context()
    assert logs["job shell"].trace_id == format(job_context.trace_id, "032x")
    assert [finding.trace_id for finding in received] == [0, job_context.trace_id]


def test_a_raising_listener_is_isolated_and_unsubscribe_works(configured: veil.Telemetry) -> None:
    calls: list[str] = []

    def broken(finding: Finding) -> None:
        raise RuntimeError("sink down")

    remove_broken = add_listener(broken)
    remove_good = add_listener(lambda finding: calls.append(finding.message))
    emit(shell_finding(message="one"))  # must not raise
    remove_good()
    emit(shell_finding(message="two"))
    remove_broken()
    assert calls == ["one"]


def test_emit_never_raises_even_with_a_bad_finding(configured: veil.Telemetry) -> None:
    emit(shell_finding(fields={"bad": object()}))  # type: ignore[dict-item]


def test_no_scope_is_opened_when_nobody_wants_one(configured: veil.Telemetry) -> None:
    seen: list[RequestScope | None] = []
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        response = flask_app(seen).test_client().get("/run/x")
        assert response.status_code == 200
        response.close()
    finally:
        instrumentor.uninstrument()
    assert seen == [None]


def test_a_raising_observer_never_reaches_the_application(configured: veil.Telemetry) -> None:
    class Broken:
        def on_request_start(self, scope: RequestScope) -> None:
            raise RuntimeError("start")

        def on_request_end(self, scope: RequestScope) -> None:
            raise RuntimeError("end")

    seen: list[RequestScope | None] = []
    remove = add_request_observer(Broken())
    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        response = flask_app(seen).test_client().get("/run/x")
        assert response.status_code == 200
        response.close()
    finally:
        instrumentor.uninstrument()
        remove()
    assert isinstance(seen[0], RequestScope)


def test_headers_are_bounded_and_a_broken_source_gives_none() -> None:
    from veil.security.request import MAX_HEADER_VALUE, MAX_HEADERS, _Headers

    many = _Headers(lambda: [(f"X-H{i}", "v" * 10_000) for i in range(200)] + [("x-h0", "again")])
    assert len(many) == MAX_HEADERS
    assert len(many["x-h0"]) == MAX_HEADER_VALUE

    def broken() -> list[tuple[str, str]]:
        raise RuntimeError("no")

    assert dict(_Headers(broken)) == {}


def test_concurrent_emits_are_all_counted(configured: veil.Telemetry) -> None:
    received: list[Finding] = []
    remove = add_listener(received.append)
    try:
        threads = [threading.Thread(target=lambda: [emit(shell_finding()) for _ in range(50)]) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        remove()
    assert len(received) == 200


def test_fastapi_handler_sees_its_scope_and_route(configured: veil.Telemetry, otlp_receiver: OTLPReceiver) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from veil.instrumentation.fastapi import FastAPIInstrumentor

    observer = Observer()
    remove = add_request_observer(observer)
    app = FastAPI()
    routes: list[str | None] = []

    @app.get("/items/{item_id}")
    def item(item_id: int) -> dict[str, int]:
        scope = current_request()
        routes.append(None if scope is None else scope.resolve_route())
        emit(shell_finding())
        return {"id": item_id}

    instrumentor = FastAPIInstrumentor()
    instrumentor.instrument()
    try:
        with TestClient(app) as client:
            assert client.get("/items/7").status_code == 200
    finally:
        instrumentor.uninstrument()
        remove()
    assert routes == ["/items/{item_id}"]
    assert configured.force_flush(5000)
    (log,) = otlp_receiver.wait_for_logs(1, predicate=lambda log: log.event_name == "veil.security.finding")
    (server,) = otlp_receiver.wait_for_spans(1, predicate=lambda span: span.kind == "SERVER")
    assert log.trace_id == server.trace_id and log.attributes["http.route"] == "/items/{item_id}"
    assert server.attributes["veil.security.findings"] == 1
    assert observer.ended[0][1] == 200


class Skipping(Observer):
    """Says it has nothing to do for targets it has seen (like the signals' benign repeat requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen_targets: set[str] = set()

    def skips_start(self, target: str, user_agent: str | None) -> bool:
        return target in self.seen_targets

    def skips_end(self, status_code: int | None) -> bool:
        return status_code != 401

    def on_request_start(self, scope: RequestScope) -> None:
        self.seen_targets.add(scope.target)
        super().on_request_start(scope)


def test_a_scope_is_built_only_when_something_asks_for_it(
    configured: veil.Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    from veil.security import request as request_module

    built: list[object] = []
    real_new = request_module._new_scope

    def counting_new(cls: type[RequestScope]) -> RequestScope:
        built.append(cls)
        return real_new(cls)

    monkeypatch.setattr(request_module, "_new_scope", counting_new)
    skipping, plain = Skipping(), Observer()
    remove_skipping = add_request_observer(skipping)
    app = Flask("veil_security_lazy")
    asked: list[RequestScope | None] = []

    @app.route("/quiet")
    def quiet() -> str:
        return "quiet"

    @app.route("/ask/<name>")
    def ask(name: str) -> tuple[str, int]:
        asked.append(current_request())
        return "asked", 401

    instrumentor = FlaskInstrumentor()
    instrumentor.instrument()
    try:
        client = app.test_client()
        client.get("/quiet").close()  # new to the observer: it looks, so the scope is built (and told at the end)
        assert len(built) == 1 and len(skipping.started) == 1 and len(skipping.ended) == 1
        client.get("/quiet").close()  # skipped at start and at end: nothing built
        assert len(built) == 1 and len(skipping.started) == 1 and len(skipping.ended) == 1
        skipping.seen_targets.add("/ask/me?x=1")
        client.get("/ask/me?x=1").close()  # skipped at start, but the handler asks: built then, once
        assert len(built) == 2 and len(skipping.started) == 1
        (scope,) = asked
        assert scope is not None and (scope.method, scope.target, scope.resolve_route()) == (
            "GET",
            "/ask/me?x=1",
            "/ask/<name>",
        )
        assert skipping.ended[1:] == [(scope, 401, "/ask/<name>")]
        assert current_request() is None  # the request ended: nothing is kept
        # an observer with no skip tests is told about every request, as before
        remove_plain = add_request_observer(plain)
        client.get("/quiet").close()
        remove_plain()
        assert len(plain.started) == 1 and [(status, route) for _, status, route in plain.ended] == [(200, "/quiet")]
    finally:
        instrumentor.uninstrument()
        remove_skipping()
