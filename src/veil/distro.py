"""veil as an OpenTelemetry distro: the `opentelemetry_distro` and `opentelemetry_configurator` entry points.

Under `opentelemetry-instrument python app.py` (or `veil run`), the launcher asks the distro to configure,
then the configurator to build the SDK, then loads every `opentelemetry_instrumentor` entry point through the
distro. veil builds everything with `veil.configure()` and loads its own instrumentors; an upstream contrib
instrumentor for a library veil also instruments is skipped with a logged reason, so a request never gets two
spans.
"""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro

from veil import instrumentation
from veil.instrumentation import InstrumentResult

_logger = logging.getLogger("veil")

_result = InstrumentResult()


class VeilDistro(BaseDistro):  # type: ignore[misc]  # untyped base class
    """Loads veil's instrumentors and refuses duplicates from upstream contrib."""

    def _configure(self, **kwargs: Any) -> None:
        # The configurator runs next and builds everything from veil's Settings; nothing to default here.
        return None

    def load_instrumentor(self, entry_point: EntryPoint, **kwargs: Any) -> None:
        name = entry_point.name
        from veil import telemetry

        installed = telemetry.installed()
        if installed is None or not installed.enabled:
            # Configuration failed (already reported once) or OTEL_SDK_DISABLED: instrument nothing at all.
            _result.skipped[name] = "veil is not configured" if installed is None else "OTEL_SDK_DISABLED"
            _result.disabled.add(name)
            return
        ours = instrumentation.available()
        if not instrumentation.is_veil_entry_point(entry_point):
            if name in ours:
                reason = f"upstream {entry_point.value} skipped: veil instruments {name} itself"
                _result.replaced[name] = reason
                _logger.info("veil: %s", reason)
                return
            # A library veil does not cover: let the upstream instrumentor run as the launcher intends, but never
            # let its failure stop the launcher from loading the others.
            try:
                super().load_instrumentor(entry_point, **kwargs)
            except ImportError:
                raise  # the launcher skips a library that is not installed, quietly, as without veil
            except Exception as error:
                _result.skipped[name] = f"upstream {entry_point.value} failed: {error!r}"
                _logger.warning("veil: upstream instrumentation %s failed and was skipped", name, exc_info=True)
                return
            _result.instrumented[name] = f"upstream {entry_point.value}"
            return
        if not installed.settings.auto_instrument:
            _result.skipped[name] = "disabled by VEIL_AUTO_INSTRUMENT"
            _result.disabled.add(name)
            return
        kwargs.pop("skip_dep_check", None)
        instrumentation.load_when_imported(entry_point, _result)


def _post_instrument() -> None:
    """`opentelemetry_post_instrument` hook: publish what the launcher loaded and print the startup report."""
    from veil import telemetry
    from veil.report import log_report

    installed = telemetry.installed()
    if installed is None:
        return
    # The handle keeps the launcher's own result object: libraries instrumented on first import update it later.
    _result.merge(installed.instrumented)
    installed.instrumented = _result
    if installed.settings.startup_report:
        log_report(installed)


class VeilConfigurator:
    """The `opentelemetry_configurator`: builds and installs veil's pipelines, leaving instrumenting to the launcher."""

    def configure(self, **kwargs: Any) -> None:
        from veil.telemetry import configure_for_launcher

        try:
            configure_for_launcher()
        except Exception as error:
            # The launcher would swallow this into a stack trace; say plainly what happened and carry on
            # without telemetry (`veil run` validates the configuration before starting the program).
            _logger.error("veil: configuration failed, the application runs without telemetry: %s", error)
