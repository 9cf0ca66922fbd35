"""Each collector fault, over OTLP/HTTP and OTLP/gRPC, against a real instrumented application.

For every fault the test drives the app with a healthy collector, then during the fault, then heals it
and asserts: the app's latency during the fault stays close to its healthy latency (a generous ratio, the
precise figures are in benchmarks/bench_resilience.py); nothing is raised into the app; the SDK does not
log per span; and every span is accounted for exactly: received by the collector, or counted as dropped,
failed or rejected by `Telemetry.health()`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc
import pytest

import veil
from tests.fixtures.otlp import OTLPReceiver, ProgrammedResponse
from tests.resilience.faults import FaultProxy
from tests.resilience.harness import SPANS_PER_REQUEST, Latencies, running_app, settle, telemetry_for
from veil.export.accounting import SignalHealth

PROTOCOLS = ["http/protobuf", "grpc"]
HEALTHY_REQUESTS = 30
FAULT_REQUESTS = 60  # 180 spans against a queue of 64: some must be dropped while exports are blocked


@pytest.fixture(params=PROTOCOLS)
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def proxy(otlp_receiver: OTLPReceiver, protocol: str) -> Iterator[FaultProxy]:
    upstream = otlp_receiver.grpc_port if protocol == "grpc" else otlp_receiver.http_port
    with FaultProxy(upstream) as fault_proxy:
        yield fault_proxy


@dataclass
class Outcome:
    healthy: Latencies
    faulty: Latencies
    produced: int
    received: int
    health: SignalHealth
    before: SignalHealth  # when the fault started (the healthy phase settled)
    records: list[logging.LogRecord]  # logged during and after the fault
    loss_lines: list[str]  # veil's loss summaries, over the whole test
    fault_seconds: float


def run_scenario(
    configure_veil: Callable[..., veil.Telemetry],
    receiver: OTLPReceiver,
    proxy: FaultProxy,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
    start_fault: Callable[[], None],
    end_fault: Callable[[], None],
    hold: float = 0.0,
    **overrides: object,
) -> Outcome:
    telemetry = configure_veil(**telemetry_for(proxy.url, protocol, **overrides))
    veil.instrument("requests")
    caplog.set_level(logging.INFO)
    with running_app() as app:
        app.drive(10)
        healthy = app.drive(HEALTHY_REQUESTS)
        settle(telemetry)
        mark = len(caplog.records)
        before = telemetry.health().traces
        start_fault()
        started = time.monotonic()
        faulty = app.drive(FAULT_REQUESTS)
        time.sleep(hold)
        fault_seconds = time.monotonic() - started
        end_fault()
        settle(telemetry, timeout=20)
    ours = [record for record in caplog.records if record.name.startswith(("opentelemetry", "veil"))]
    records = [record for record in caplog.records[mark:] if record.name.startswith(("opentelemetry", "veil"))]
    span_ids = {span.span_id for span in receiver.spans()}
    return Outcome(
        healthy=healthy,
        faulty=faulty,
        produced=(10 + HEALTHY_REQUESTS + FAULT_REQUESTS) * SPANS_PER_REQUEST,
        received=len(span_ids),
        health=telemetry.health().traces,
        before=before,
        records=records,
        loss_lines=[record.getMessage() for record in ours if "telemetry was lost" in record.getMessage()],
        fault_seconds=fault_seconds,
    )


Scenario = Callable[..., Outcome]


@pytest.fixture
def scenario(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    proxy: FaultProxy,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> Scenario:
    """`run_scenario` bound to this test's fixtures: `scenario(start_fault, end_fault, hold=..., **overrides)`."""
    return functools.partial(run_scenario, configure_veil, otlp_receiver, proxy, protocol, caplog)


def assert_unaffected_app(outcome: Outcome) -> None:
    # Exports run on the processor's thread: a fault costs the app at most some CPU, never a wait on the
    # network (the retry budgets here are >= 1.5 s, which would show in the worst request).
    assert outcome.faulty.p50 <= 3 * outcome.healthy.p50 + 0.005, (outcome.healthy.p50, outcome.faulty.p50)
    assert outcome.faulty.worst < 0.5, outcome.faulty.worst
    # Not a line per span (there were 180 during the fault), and never a traceback.
    assert len(outcome.records) <= 12, [record.getMessage() for record in outcome.records]
    assert not [record for record in outcome.records if record.exc_info], "a traceback was logged"


def assert_exact_accounting(outcome: Outcome) -> None:
    health = outcome.health
    assert health.queued == 0
    assert outcome.received == health.exported, (outcome.received, health)
    assert health.exported + health.dropped + health.failed + health.rejected == outcome.produced, health


def test_refused_connections_then_recovery(
    scenario: Scenario,
    proxy: FaultProxy,
) -> None:
    """The collector is down (connection refused) and comes back on the same port within the budget:
    what fit in the queue arrives; what did not is counted as dropped, exactly; nothing fails."""
    outcome = scenario(
        proxy.refuse,
        proxy.restore,
        hold=0.3,
        otlp_timeout_millis=10000,
    )
    assert_unaffected_app(outcome)
    assert_exact_accounting(outcome)
    assert outcome.health.failed == 0
    assert outcome.health.dropped > 0  # 180 spans met a queue of 64 while the batch in flight waited
    # The fault's spans that fit in the queue (64) and the batch in flight arrived after recovery.
    assert outcome.health.exported - outcome.before.exported >= 64
    assert outcome.loss_lines, "the loss was not reported"


def test_black_hole_fails_within_the_budget(
    scenario: Scenario,
    proxy: FaultProxy,
) -> None:
    """Connections are accepted and never answered: the batch in flight fails when its 1.5 s budget is
    spent (it does not wait forever), the rest is dropped or delivered after the fault, all counted."""
    outcome = scenario(
        proxy.blackhole,
        proxy.forward,
        hold=2.0,
        otlp_timeout_millis=1500,
    )
    assert_unaffected_app(outcome)
    assert_exact_accounting(outcome)
    assert outcome.health.failed > 0  # at least the batch that met the black hole
    assert outcome.loss_lines


def test_slow_collector(
    scenario: Scenario,
    otlp_receiver: OTLPReceiver,
) -> None:
    """Every answer takes 300 ms: exports slow down, the app does not; nothing fails."""
    outcome = scenario(
        lambda: otlp_receiver.program("traces", ProgrammedResponse(delay=0.3), times=None),
        otlp_receiver.clear,
    )
    assert_unaffected_app(outcome)
    assert outcome.health.failed == 0
    health = outcome.health
    assert health.queued == 0
    # clear() forgot what arrived before the fault ended; the book still balances with what it kept.
    assert health.exported + health.dropped == outcome.produced


@pytest.mark.parametrize(
    ("response", "retried"),
    [
        pytest.param(ProgrammedResponse(http_status=503), True, id="503"),
        pytest.param(ProgrammedResponse(http_status=429, retry_after=1), True, id="429-retry-after-1s"),
        pytest.param(ProgrammedResponse(http_status=500), False, id="500"),
    ],
)
def test_error_statuses(
    scenario: Scenario,
    otlp_receiver: OTLPReceiver,
    response: ProgrammedResponse,
    retried: bool,
) -> None:
    """Retryable statuses (503 / UNAVAILABLE, 429 / RESOURCE_EXHAUSTED) are retried with backoff and
    arrive; 500 / INTERNAL is not retryable: the batch fails at once and is counted."""
    outcome = scenario(
        lambda: otlp_receiver.program("traces", response, times=2),
        lambda: None,
        otlp_timeout_millis=10000,
    )
    assert_unaffected_app(outcome)
    assert_exact_accounting(outcome)
    refused = [request for request in otlp_receiver.requests("traces") if not request.accepted]
    assert len(refused) == 2
    if retried:
        assert outcome.health.failed == 0
        if response.retry_after:
            # The retry honoured Retry-After (1 s), not the 1 s +-20 % default backoff by chance alone:
            # the gap between the refusals is at least 0.95 s.
            gap = refused[1].received_at - refused[0].received_at
            assert gap >= 0.95, gap
    else:
        # Exactly the spans of the two refused requests failed: neither was retried.
        refused_spans = sum(
            len(scope.spans)
            for request in refused
            for resource in request.message.resource_spans
            for scope in resource.scope_spans
        )
        assert outcome.health.failed == refused_spans > 0


def test_retry_after_beyond_the_budget_fails_fast(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    proxy: FaultProxy,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 429 asking for 30 s when the budget is 2 s: the batch fails at once (counted), no wait, no hammering."""
    otlp_receiver.program("traces", ProgrammedResponse(http_status=429, retry_after=30), times=1)
    telemetry = configure_veil(**telemetry_for(proxy.url, protocol, otlp_timeout_millis=2000))
    tracer = telemetry.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    for index in range(16):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    started = time.monotonic()
    assert telemetry.force_flush(5000)
    assert time.monotonic() - started < 1.5
    health = telemetry.health().traces
    assert (health.failed, health.exported) == (16, 0)
    assert len(otlp_receiver.requests("traces")) == 1


def test_partial_success_is_read_and_counted(
    configure_veil: Callable[..., veil.Telemetry],
    otlp_receiver: OTLPReceiver,
    proxy: FaultProxy,
    protocol: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    otlp_receiver.program("traces", ProgrammedResponse(rejected=3, message="3 spans had invalid ids"), times=1)
    telemetry = configure_veil(**telemetry_for(proxy.url, protocol))
    tracer = telemetry.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    caplog.set_level(logging.WARNING, logger="veil")
    for index in range(10):
        with tracer.start_as_current_span(f"span-{index}"):
            pass
    assert telemetry.force_flush(5000)
    health = telemetry.health().traces
    assert (health.exported, health.rejected, health.failed, health.dropped) == (7, 3, 0, 0)
    messages = [record.getMessage() for record in caplog.records]
    assert any("rejected 3 traces item(s)" in message and "invalid ids" in message for message in messages)
    assert any("telemetry was lost" in message and "3 rejected" in message for message in messages)


def test_reset_mid_body_then_recovery(
    scenario: Scenario,
    proxy: FaultProxy,
) -> None:
    """The network resets connections in the middle of the request body: retried, delivered after."""
    outcome = scenario(
        proxy.reset,
        proxy.forward,
        hold=0.3,
        otlp_timeout_millis=10000,
    )
    assert_unaffected_app(outcome)
    assert_exact_accounting(outcome)
    assert outcome.health.failed == 0


def test_grpc_codes_map_to_failure_causes(
    configure_veil: Callable[..., veil.Telemetry], otlp_receiver: OTLPReceiver
) -> None:
    """A failed gRPC export is counted with its status code as the error.type."""
    otlp_receiver.program("traces", ProgrammedResponse(grpc_code=grpc.StatusCode.INVALID_ARGUMENT), times=1)
    telemetry = configure_veil(**telemetry_for(otlp_receiver.grpc_endpoint, "grpc"))
    tracer = telemetry.tracer_provider.get_tracer("test")  # type: ignore[union-attr]
    with tracer.start_as_current_span("one"):
        pass
    assert telemetry.force_flush(5000)
    (ledger,) = [ledger for ledger in telemetry._ledgers if ledger.signal == "traces"]  # not the audit queue
    assert ledger.failed == {"INVALID_ARGUMENT": 1}
