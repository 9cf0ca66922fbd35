"""Building and installing the providers and propagators from Settings; the Telemetry handle.

Each exporter's pipeline (processors, accounting, redaction) comes from veil.export.pipeline.

`configure()` validates everything first and builds everything before it installs anything, so a mistake
leaves no half-configured process behind. The `Telemetry` handle flushes and shuts down within a bound, also
at process exit, and the pipelines it builds survive fork: the SDK restarts its worker threads in a child and
veil's exporters build their connections anew per process (see veil.export).
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider, sampling

from veil import _sdk, _signals, export, instrumentation
from veil import settings as settings_module
from veil._fork import after_fork_after_existing_hooks
from veil._guard import call_guarded
from veil._resource import build_resource, refresh_process_id
from veil.export import accounting
from veil.export.accounting import Health, Ledger
from veil.export.pipeline import Pipelines
from veil.instrumentation import InstrumentResult
from veil.instrumentation.providers import set_log_export_provider
from veil.propagation import api_module, build_propagator
from veil.report import log_report
from veil.settings import Settings

_logger = logging.getLogger("veil")


@dataclass
class Telemetry:
    """The handle `veil.configure()` returns: what was installed, and how to flush and shut it down."""

    settings: Settings
    resource: Resource | None = None
    tracer_provider: TracerProvider | None = None
    meter_provider: MeterProvider | None = None
    logger_provider: LoggerProvider | None = None
    propagator: TextMapPropagator | None = None
    instrumented: InstrumentResult = field(default_factory=InstrumentResult)
    _shut_down: bool = False
    _ledgers: list[Ledger] = field(default_factory=list, repr=False)
    _reporter: accounting.LossReporter | None = field(default=None, repr=False)
    _security: Any = field(default=None, repr=False)  # veil.security.outputs.Outputs (sinks, audit file)

    @property
    def enabled(self) -> bool:
        """False when OTEL_SDK_DISABLED turned veil off: nothing is recorded or exported."""
        return self.tracer_provider is not None

    def health(self) -> Health:
        """What happened to this process's telemetry so far: per signal, the items exported, dropped
        (queue full), failed (after retries), rejected (OTLP partial success) and still queued.

        Cheap (a few counters read under short locks): fit for readiness probes and tests.
        """
        return accounting.health_of(self._ledgers)

    def _providers(self) -> list[Any]:
        return [p for p in (self.tracer_provider, self.meter_provider, self.logger_provider) if p is not None]

    def force_flush(self, timeout_millis: int | None = None) -> bool:
        """Export everything recorded so far; True when every signal finished within the timeout."""
        timeout = self.settings.shutdown_timeout_millis if timeout_millis is None else timeout_millis

        def flush() -> bool:
            # Audit events first: their thread feeds the log pipeline and the security sinks.
            secured = self._security is None or self._security.flush(timeout / 1000.0)
            return all(p.force_flush(timeout) is not False for p in self._providers()) and secured

        return _bounded(flush, timeout)

    def shutdown(self, timeout_millis: int | None = None) -> bool:
        """Flush and stop every pipeline, in at most `timeout_millis` (default VEIL_SHUTDOWN_TIMEOUT).

        Returns False when the bound was hit (an unreachable backend); the process may then exit and lose
        what was still queued, rather than hang.
        """
        if self._shut_down:
            return True
        self._shut_down = True
        timeout = self.settings.shutdown_timeout_millis if timeout_millis is None else timeout_millis

        def shut_down(provider: Any) -> Callable[[], bool]:
            def work() -> bool:
                provider.shutdown()
                return True

            return work

        # The signals shut down side by side, so one black-holed exporter cannot eat the others' time; an
        # unreachable (refused, unresolvable) collector fails at once instead of backing off.
        from veil.export.otlp import shutting_down

        works = [shut_down(provider) for provider in self._providers()]
        if self._security is not None:  # queued audit events become log records before the providers stop
            _bounded(lambda: bool(self._security.close_emitter(timeout / 1000.0)), timeout // 2)
            works.append(lambda: bool(self._security.close(timeout / 1000.0)))
        with shutting_down():
            finished = _bounded_all(works, timeout)
        if not finished:
            _logger.warning(
                "veil: shutdown did not finish within %d ms; what was still queued is abandoned: %s",
                timeout,
                accounting.describe(self.health()),
            )
        elif self._reporter is not None:
            self._reporter.check(force=True)
        return finished


def _bounded(work: Callable[[], bool], timeout_millis: int) -> bool:
    """Run `work` on a daemon thread and wait at most `timeout_millis` for it."""
    return _bounded_all([work], timeout_millis)


def _bounded_all(works: list[Callable[[], bool]], timeout_millis: int) -> bool:
    """Run each of `works` on its own daemon thread; wait at most `timeout_millis` in all; True if all
    finished and returned True. Threads still running at the deadline are left behind (daemon threads do
    not hold up the interpreter's exit)."""
    outcomes: list[bool] = []

    def run(work: Callable[[], bool]) -> None:
        try:
            outcomes.append(work())
        except Exception:
            _logger.warning("veil: flush or shutdown failed", exc_info=True)
            outcomes.append(False)

    deadline = time.monotonic() + max(timeout_millis, 0) / 1000.0
    workers = [threading.Thread(target=run, args=(work,), name="veil-shutdown", daemon=True) for work in works]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(max(deadline - time.monotonic(), 0.0))
    return len(outcomes) == len(works) and all(outcomes)


# -------------------------------------------------------------------------------------------- building


def _sampler(settings: Settings) -> sampling.Sampler:
    ratio = settings.sampler_ratio()
    root: sampling.Sampler
    name = settings.traces_sampler
    base = name.removeprefix("parentbased_")
    if base == "always_on":
        root = sampling.ALWAYS_ON
    elif base == "always_off":
        root = sampling.ALWAYS_OFF
    else:
        root = sampling.TraceIdRatioBased(ratio)
    return sampling.ParentBased(root) if name.startswith("parentbased_") else root


def _span_limits(settings: Settings) -> SpanLimits:
    return SpanLimits(
        max_attributes=settings.attribute_count_limit,
        max_events=settings.span_event_count_limit,
        max_links=settings.span_link_count_limit,
        max_span_attributes=settings.span_attribute_count_limit,
        max_event_attributes=settings.event_attribute_count_limit,
        max_link_attributes=settings.link_attribute_count_limit,
        # With redaction on, value lengths are limited after redaction, by the redacting exporter: the SDK would
        # cut a secret short before any detector saw it. UNSET stops the SDK reading the variables itself.
        max_attribute_length=SpanLimits.UNSET if settings.redaction_enabled else settings.attribute_value_length_limit,
        max_span_attribute_length=(
            SpanLimits.UNSET if settings.redaction_enabled else settings.span_attribute_value_length_limit
        ),
    )


def _keep_resource_after_fork(telemetry: Telemetry) -> None:
    """In a forked child, give the providers veil's resource again, with the child's process id.

    The SDK refreshes each provider's resource after a fork from its process-dependent detectors, which read
    OTEL_SERVICE_NAME/OTEL_RESOURCE_ATTRIBUTES again and would override what `configure()` was given. This hook
    is registered after the providers' own, so it runs after them (after-fork hooks run in registration order;
    the fork hub's own slot precedes them).
    """
    reference = weakref.ref(telemetry)

    def after_in_child() -> None:
        current = reference()
        if current is None or current.resource is None:
            return
        refresh_process_id(current.resource)
        for provider in current._providers():
            update = _sdk.resource_updater(provider)
            if update is not None:
                call_guarded("resource update after fork", update, current.resource)

    after_fork_after_existing_hooks(after_in_child)


def build(settings: Settings) -> Telemetry:
    """Build (without installing) every pipeline Settings asks for; on failure nothing is left running."""
    telemetry = Telemetry(settings=settings)
    if settings.sdk_disabled:
        return telemetry
    try:
        pipelines = Pipelines(settings, telemetry._ledgers)  # loads the redaction rules first
        resource = telemetry.resource = build_resource(settings)
        telemetry.propagator = build_propagator(settings.propagators)
        telemetry.tracer_provider = TracerProvider(
            sampler=_sampler(settings), resource=resource, shutdown_on_exit=False, span_limits=_span_limits(settings)
        )
        export.limit_sdk_export_logs()
        for span_processor in pipelines.span_processors():
            telemetry.tracer_provider.add_span_processor(span_processor)
        telemetry.meter_provider = MeterProvider(
            metric_readers=pipelines.metric_readers(), resource=resource, shutdown_on_exit=False
        )
        if settings.runtime_metrics:  # process and CPython metrics, read on collection (issue 8)
            from veil.runtime_metrics import register_runtime_metrics

            register_runtime_metrics(telemetry.meter_provider)
        telemetry.logger_provider = LoggerProvider(resource=resource, shutdown_on_exit=False)
        for log_processor in pipelines.log_processors():
            telemetry.logger_provider.add_log_record_processor(log_processor)
        _build_security_outputs(telemetry)
        telemetry._reporter = accounting.LossReporter(telemetry._ledgers)
        accounting.register_metrics(telemetry.meter_provider, telemetry._ledgers)
    except BaseException:
        telemetry.shutdown(timeout_millis=1000)
        raise
    _keep_resource_after_fork(telemetry)
    return telemetry


def _build_security_outputs(telemetry: Telemetry) -> None:
    """The SIEM sinks and the audit file (issue 15), whose queues join the ledgers."""
    from veil.security.outputs import build as build_security_outputs

    telemetry._security = build_security_outputs(telemetry.settings)
    telemetry._ledgers.extend(telemetry._security.ledgers)


# ------------------------------------------------------------------------------------------ installing

_lock = threading.RLock()
_installed: Telemetry | None = None
_atexit_registered = False


def _install_globals(telemetry: Telemetry) -> None:
    """Make `telemetry`'s providers and propagator the process-wide ones.

    The OpenTelemetry API allows setting each global provider once. veil owns that slot: when veil replaces
    its own earlier installation (force=True), the set-once guards are reset so the new providers take over;
    tracers handed out by the old provider stop recording once it is shut down.
    """
    assert telemetry.tracer_provider is not None and telemetry.meter_provider is not None
    assert telemetry.logger_provider is not None
    _sdk.install_global_providers(telemetry.tracer_provider, telemetry.meter_provider, telemetry.logger_provider)
    if telemetry.propagator is not None:
        api_module().set_global_textmap(telemetry.propagator)


def _at_exit() -> None:
    with _lock:
        telemetry = _installed
    if telemetry is not None:
        telemetry.shutdown()


class _ForkToken:
    """A weak-referenceable key for multiprocessing's after-fork registry."""


_fork_token = _ForkToken()


def _flush_in_multiprocessing_children() -> None:
    """multiprocessing ends a forked child with os._exit(), which skips atexit: register the bounded
    shutdown as a multiprocessing finalizer in each child instead, so its queued telemetry is exported."""
    from multiprocessing import util

    def after_fork(_token: object) -> None:
        util.Finalize(None, _at_exit, exitpriority=0)

    util.register_after_fork(_fork_token, after_fork)


def configure(service_name: str | None = None, *, force: bool = False, **overrides: Any) -> Telemetry:
    """Set up tracing, metrics and logs for this process and instrument installed libraries.

    Keyword arguments are Settings fields (`traces_exporter="otlp"`, `otlp_endpoint=...`) and win over the
    environment, which wins over defaults. A second call warns and returns the same handle unless
    `force=True`, which replaces the earlier configuration. Invalid configuration raises ConfigurationError
    before anything is installed.
    """
    return _configure(service_name, force, overrides, launcher=False)


def configure_for_launcher() -> Telemetry:
    """configure() for the opentelemetry-instrument launcher, which loads the instrumentors itself and
    prints the startup report after them (veil.distro)."""
    return _configure(None, False, {}, launcher=True)


def _configure(service_name: str | None, force: bool, overrides: dict[str, Any], launcher: bool) -> Telemetry:
    global _installed, _atexit_registered
    with _lock:
        if _installed is not None and not force:
            _logger.warning(
                "veil.configure() was already called; returning the existing configuration "
                "(pass force=True to replace it)"
            )
            return _installed
        settings = Settings.load(service_name=service_name, **overrides)
        security = _security_config(settings)  # a bad rule file stops here, before anything is built
        telemetry = build(settings)
        previous = _installed
        if previous is not None:
            instrumentation.uninstrument()
            previous.shutdown()
        settings_module.set_current(settings)
        if telemetry.enabled:
            _install_globals(telemetry)
            telemetry._security.activate()
        _installed = telemetry
        set_log_export_provider(_log_export_provider(telemetry))
        if not _atexit_registered:
            atexit.register(_at_exit)
            _flush_in_multiprocessing_children()
            _atexit_registered = True
        if telemetry.enabled:
            _signals.install(_at_exit)  # a stop by SIGTERM/SIGINT runs no atexit hook (veil._signals)
        _install_security(security, settings)  # after the exit hook above: its own exit flush runs first
    if launcher:
        return telemetry
    if telemetry.enabled and settings.auto_instrument:
        telemetry.instrumented = instrument()
    if settings.startup_report:
        log_report(telemetry)
    return telemetry


def _security_config(settings: Settings) -> Any:
    """The compiled runtime rules (veil.security.sensor), or None when VEIL_SECURITY=off or veil is disabled."""
    if settings.sdk_disabled or settings.security == "off":
        return None
    from veil.security import sensor

    return sensor.prepare(settings)


def _install_security(config: Any, settings: Settings) -> None:
    if config is None and "veil.security.sensor" not in sys.modules:
        return  # never installed: nothing to turn off
    from veil.security import sensor

    sensor.install(config, settings)


def _log_export_provider(telemetry: Telemetry) -> LoggerProvider | None:
    """The LoggerProvider stdlib records are exported through by default: veil's, when it has a logs exporter."""
    if telemetry.logger_provider is None or not telemetry.settings.exporters("logs"):
        return None  # no processor: exporting would only cost time
    return telemetry.logger_provider


def instrument(*names: str) -> InstrumentResult:
    """Instrument every supported library that is installed, or only the named ones.

    Uses the providers of `veil.configure()` (the global ones) and honours
    OTEL_PYTHON_DISABLED_INSTRUMENTATIONS when no name is given. Returns what was instrumented and what was
    skipped with the reason; skips are logged (version conflicts at WARNING).
    """
    settings = settings_module.current()
    return instrumentation.instrument(*names, disabled=settings.disabled_instrumentations)


def installed() -> Telemetry | None:
    """The Telemetry handle of the last `configure()`, if any."""
    return _installed


def reset_for_tests() -> None:
    """Shut down and forget the installed configuration (for test suites that configure repeatedly)."""
    global _installed
    with _lock:
        if _installed is not None:
            instrumentation.uninstrument()
            _installed.shutdown(timeout_millis=2000)
        _installed = None
        set_log_export_provider(None)
        settings_module.set_current(None)
