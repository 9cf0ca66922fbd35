"""The demo's steps: receiver, services, traffic, shutdown, then the traces and logs on the terminal."""

from __future__ import annotations

import os
import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.trace import format_trace_id

from veil.demo.attack import attack_service, send_attack, trace_of
from veil.demo.receiver import DemoReceiver
from veil.demo.render import LogLine, log_lines, readable_spans
from veil.demo.services import Service, ServiceError, Supervisor, free_ports, service_commands, tail
from veil.demo.traffic import INVENTORY_PASSWORD, SCENARIOS, Result, drive
from veil.export.console import ConsoleSpanExporter
from veil.redaction import REDACTION_COUNT_ATTRIBUTE

__all__ = ["Demo"]

_SERVICES = ("gateway", "inventory", "payments")


class Demo:
    """One run of the demo. `run()` never leaves a service process behind, whatever happens."""

    def __init__(
        self,
        *,
        root: Path,
        log_dir: Path,
        relay_endpoint: str | None,
        relay_traces_only: bool,
        jaeger_ui: str | None,
        out: TextIO,
    ) -> None:
        self.root = root
        self.log_dir = log_dir
        self.out = out
        self.jaeger_ui = jaeger_ui
        self.results: list[Result] = []  # the requests sent and their trace ids, once run() has sent them
        self.receiver = DemoReceiver(relay_endpoint, frozenset({"traces"}) if relay_traces_only else None)
        ports = dict(zip(_SERVICES, free_ports(len(_SERVICES)), strict=True))
        commands = service_commands()
        urls = {
            "SHOP_INVENTORY_URL": f"http://127.0.0.1:{ports['inventory']}",
            "SHOP_PAYMENTS_URL": f"http://127.0.0.1:{ports['payments']}",
        }
        self.services = []
        for name in _SERVICES:
            how, command, display = commands[name]
            env = {"SHOP_PORT": str(ports[name]), **urls}
            if name == "inventory":
                # The credentials a deployment puts in a service URL: shown as REDACTED in the trace.
                env["SHOP_PAYMENTS_URL"] = f"http://inventory:{INVENTORY_PASSWORD}@127.0.0.1:{ports['payments']}"
                env["OTEL_SERVICE_NAME"] = "inventory"
            self.services.append(Service(name, how, command, display, ports[name], env, log_dir / f"{name}.log"))
        self.services.append(attack_service(free_ports(1)[0], log_dir))  # veil.demo.attack
        self.supervisor = Supervisor(self.services, root)

    def _print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def environment(self) -> dict[str, str]:
        """What every service gets: the inherited environment minus OTEL_*/VEIL_*, plus the demo's export."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
        python_path = [str(self.root), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env.update(
            {
                "PYTHONPATH": os.pathsep.join(python_path),
                "PYTHONUNBUFFERED": "1",
                "SHOP_HOST": "127.0.0.1",
                "OTEL_EXPORTER_OTLP_ENDPOINT": self.receiver.endpoint,
                "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_LOGS_EXPORTER": "otlp",
                "OTEL_METRICS_EXPORTER": "otlp",
                "OTEL_PYTHON_DISTRO": "veil",
                "OTEL_PYTHON_CONFIGURATOR": "veil",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
                "OTEL_BLRP_SCHEDULE_DELAY": "200",
                "VEIL_ENVIRONMENT": "demo",
                "VEIL_STARTUP_REPORT": "true",
            }
        )
        return env

    def run(self, startup_timeout: float) -> int:
        self.receiver.start()
        try:
            return self._run(startup_timeout)
        except ServiceError as error:
            self._print(f"veil demo: {error}")
            for service in self.services:
                if str(service.log_path) in str(error):
                    self._print(f"--- last lines of {service.log_path}:")
                    for line in tail(service.log_path):
                        self._print(f"    {line}")
            return 1
        except KeyboardInterrupt:
            self._print("\nveil demo: interrupted; stopping the services")
            return 130
        finally:
            self.supervisor.stop_all()
            self.receiver.stop()
            left = self.supervisor.alive()
            if left:  # pragma: no cover - stop_all kills what does not stop
                print(f"veil demo: could not stop {', '.join(left)}", file=sys.stderr)

    def _run(self, startup_timeout: float) -> int:
        self._print("veil demo: a shop of three services, each traced with veil\n")
        self.supervisor.start(self.environment())
        self.supervisor.wait_ready(startup_timeout)
        self._print(f"  {'service':<10} {'port':<6} {'veil added with':<26} command")
        for service in self.services:
            self._print(f"  {service.name:<10} {service.port:<6} {service.how:<26} {service.display}")
        gateway = self.services[0]
        self._print(f"\nSending {len(SCENARIOS)} requests to the gateway ({gateway.url}):")
        results = self.results = drive(gateway.url)
        for result in results:
            answer = str(result.status) if result.status is not None else f"no answer ({result.error})"
            self._print(f"  {result.scenario.name:<15} POST /checkout -> {answer:<4} trace {result.trace_id or '?'}")
        attack = send_attack(self.services[-1].url)
        outcome = str(attack.status) if attack.status is not None else f"no answer ({attack.error})"
        self._print(f"  {attack.scenario.name:<15} GET /ping?host=127.0.0.1;id on the vulnerable example -> {outcome}")
        self._print("\nStopping the services (veil flushes their telemetry on exit) ...")
        codes = self.supervisor.stop_all()
        self.receiver.stop()
        unclean = {name: code for name, code in codes.items() if code not in (0, None) and code >= 0}
        spans = readable_spans(self.receiver.trace_requests())
        logs = log_lines(self.receiver.log_requests())
        results.append(replace(attack, trace_id=trace_of(spans)))
        self._show(results, spans, logs)
        problems = self._problems(results, spans, logs, unclean)
        for problem in problems:
            self._print(f"veil demo: {problem}")
        return 1 if problems else 0

    # ------------------------------------------------------------------------------------------ output

    def _show(self, results: list[Result], spans: list[ReadableSpan], logs: list[LogLine]) -> None:
        by_trace: dict[str, list[ReadableSpan]] = defaultdict(list)
        for span in spans:
            by_trace[format_trace_id(span.context.trace_id)].append(span)
        logs_by_trace: dict[str, list[LogLine]] = defaultdict(list)
        for line in logs:
            logs_by_trace[line.trace_id].append(line)
        exporter = ConsoleSpanExporter(stream=self.out, flush_after_seconds=60.0)
        self._print("\nThe traces, as the services exported them (secrets show as [REDACTED:...] / REDACTED):")
        shown = set()
        for result in results:
            self._print(f"\n== {result.scenario.name}: {result.scenario.what}")
            trace_spans = by_trace.get(result.trace_id, [])
            if not trace_spans:
                self._print("   (no spans received for this request)")
                continue
            shown.add(result.trace_id)
            exporter.export(sorted(trace_spans, key=lambda span: span.end_time or 0))
            exporter.force_flush()
            for line in logs_by_trace.get(result.trace_id, []):
                self._print(f"   log  {line.service:<9} {line.severity:<5} {_printable(line.body)}")
        others = [trace_id for trace_id in by_trace if trace_id not in shown]
        if others:
            self._print(f"\n{len(others)} other trace(s) were exported (e.g. {others[0]}).")
        exporter.shutdown()

        counted = sum(_redactions(span.attributes) for span in spans) + sum(
            _redactions(line.attributes) for line in logs
        )
        correlated = sum(1 for line in logs if line.trace_id)
        self._print(
            f"\nRedaction: {counted} value(s) replaced in {len(spans)} spans and {len(logs)} log records before "
            "they left the services (URL credentials and query tokens are removed earlier, where recorded)."
        )
        self._print(f"Logs: {correlated} of {len(logs)} exported log records carry their trace and span ids.")
        self._print("Each service also wrote its log as JSON lines (trace_id, span_id, secrets redacted):")
        for service in self.services:
            self._print(f"  {service.name:<10} {service.log_path}")
        example = next((result.trace_id for result in results if result.trace_id), "<trace id>")
        self._print(f"Find one trace's log lines in all of them:  grep {example} {self.log_dir / '*.log'}")
        relay = self.receiver.relay
        if relay is not None:
            note = f"; {relay.failed} failed ({relay.first_error})" if relay.failed else ""
            self._print(f"Relayed {relay.sent} export request(s) to {relay.endpoint}{note}.")
            if self.jaeger_ui is not None and relay.sent:
                self._print(f"Open the trace in Jaeger: {self.jaeger_ui}/trace/{example}")

    def _problems(
        self,
        results: list[Result],
        spans: list[ReadableSpan],
        logs: list[LogLine],
        unclean: Mapping[str, int],
    ) -> list[str]:
        problems = [
            f"'{result.scenario.name}' answered {result.status or result.error}, expected "
            f"{result.scenario.expected_status}"
            for result in results
            if result.status != result.scenario.expected_status
        ]
        services = {str(span.resource.attributes.get(SERVICE_NAME)) for span in spans}
        missing = [name for name in _SERVICES if name not in services]
        if missing:
            logs_of = ", ".join(str(s.log_path) for s in self.services if s.name in missing)
            problems.append(f"no spans from {', '.join(missing)}; see {logs_of}")
        if not logs:
            problems.append("no log records were exported")
        problems.extend(
            f"{name} exited with code {code}; see {self.log_dir / (name + '.log')}" for name, code in unclean.items()
        )
        return problems


def _redactions(attributes: Mapping[str, Any] | None) -> int:
    value = (attributes or {}).get(REDACTION_COUNT_ATTRIBUTE, 0)
    return value if isinstance(value, int) else 0


def _printable(text: str, limit: int = 200) -> str:
    cleaned = "".join(char if char.isprintable() else f"\\x{ord(char):02x}" for char in text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
