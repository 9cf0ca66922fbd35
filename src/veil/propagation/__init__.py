"""Context propagation: veil's W3C Trace Context Level 2 propagator and the name → propagator registry.

`build_propagator(["tracecontext", "baggage"])` turns the names of `OTEL_PROPAGATORS` into one
`GuardedCompositePropagator`. Each member runs under its own guard, so a propagator that raises on a hostile
header (b3 and jaeger do, on non-string values) neither breaks the others nor reaches the application.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from opentelemetry.context.context import Context
from opentelemetry.propagators import textmap

from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.propagation.tracecontext import Level2TraceState, TraceContextPropagator

__all__ = [
    "PROPAGATOR_NAMES",
    "GuardedCompositePropagator",
    "Level2TraceState",
    "TraceContextPropagator",
    "build_propagator",
]


def _tracecontext() -> textmap.TextMapPropagator:
    return TraceContextPropagator()


def _baggage() -> textmap.TextMapPropagator:
    from opentelemetry.baggage.propagation import W3CBaggagePropagator

    return W3CBaggagePropagator()


def _b3_single() -> textmap.TextMapPropagator:
    from opentelemetry.propagators.b3 import B3SingleFormat

    return B3SingleFormat()


def _b3_multi() -> textmap.TextMapPropagator:
    from opentelemetry.propagators.b3 import B3MultiFormat

    return B3MultiFormat()


def _jaeger() -> textmap.TextMapPropagator:
    from opentelemetry.propagators.jaeger import JaegerPropagator

    propagator: textmap.TextMapPropagator = JaegerPropagator()
    return propagator


_FACTORIES: dict[str, Callable[[], textmap.TextMapPropagator]] = {
    "tracecontext": _tracecontext,
    "baggage": _baggage,
    "b3": _b3_single,
    "b3multi": _b3_multi,
    "jaeger": _jaeger,
}

#: The names `OTEL_PROPAGATORS` accepts, in documentation order (the registry's, and `none`).
PROPAGATOR_NAMES: tuple[str, ...] = (*_FACTORIES, "none")


class GuardedCompositePropagator(textmap.TextMapPropagator):
    """Runs several propagators in order; one that raises is skipped (logged once) and the others still run.

    Extraction threads the context through the members in order, so when two formats carry a parent the later
    one wins (as in OpenTelemetry's `CompositePropagator`); a member that raises contributes nothing. With no
    members it is a no-op: extract returns the given context (an empty one if none was given), inject writes
    nothing.
    """

    def __init__(
        self,
        propagators: Sequence[textmap.TextMapPropagator],
        names: Sequence[str] | None = None,
    ) -> None:
        self._propagators = tuple(propagators)
        if names is None or len(names) != len(self._propagators):
            names = [type(propagator).__name__ for propagator in self._propagators]
        self._members = tuple(zip(names, self._propagators, strict=True))

    @property
    def propagators(self) -> tuple[textmap.TextMapPropagator, ...]:
        """The member propagators, in the order they run."""
        return self._propagators

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        if context is None:
            context = Context()
        for name, propagator in self._members:
            try:
                extracted = propagator.extract(carrier, context, getter=getter)
            except Exception:
                log_once(
                    f"propagation.extract.{name}",
                    "veil: the %s propagator raised while extracting; its headers are ignored "
                    "(the application is unaffected)",
                    name,
                    exc_info=True,
                )
                continue
            if isinstance(extracted, Context):
                context = extracted
        return context

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        for name, propagator in self._members:
            try:
                propagator.inject(carrier, context, setter=setter)
            except Exception:
                log_once(
                    f"propagation.inject.{name}",
                    "veil: the %s propagator raised while injecting; its headers are not sent "
                    "(the application is unaffected)",
                    name,
                    exc_info=True,
                )

    @property
    def fields(self) -> set[str]:
        fields: set[str] = set()
        for name, propagator in self._members:
            try:
                fields.update(propagator.fields)
            except Exception:
                log_once(
                    f"propagation.fields.{name}",
                    "veil: the %s propagator raised listing its fields (ignored)",
                    name,
                    exc_info=True,
                )
        return fields


def build_propagator(names: Sequence[str]) -> textmap.TextMapPropagator:
    """Build the propagator for the given `OTEL_PROPAGATORS` names.

    Names are trimmed and compared case-insensitively; empty names and repeats are ignored (the first
    occurrence fixes the order); a single string is split on commas. ``none`` alone, or an empty list, gives
    a no-op propagator.

    Raises:
        ConfigurationError: a name is not one of `PROPAGATOR_NAMES`, or ``none`` is combined with others.
    """
    raw = names.split(",") if isinstance(names, str) else list(names)
    value = ",".join(str(name) for name in raw)
    wanted: list[str] = []
    for name in raw:
        normalized = str(name).strip().lower()
        if not normalized or normalized in wanted:
            continue
        if normalized not in PROPAGATOR_NAMES:
            raise ConfigurationError(
                "OTEL_PROPAGATORS",
                value,
                PROPAGATOR_NAMES,
                reason=f"unknown propagator {normalized!r}",
                near=normalized,
            )
        wanted.append(normalized)
    if "none" in wanted:
        if len(wanted) > 1:
            raise ConfigurationError(
                "OTEL_PROPAGATORS",
                value,
                PROPAGATOR_NAMES,
                reason="'none' disables propagation and cannot be combined with other propagators",
            )
        wanted = []
    return GuardedCompositePropagator([_FACTORIES[name]() for name in wanted], names=wanted)


def api_module() -> ModuleType:
    """`opentelemetry.propagate`, imported so that a bad OTEL_PROPAGATORS cannot raise at import time.

    The API module reads OTEL_PROPAGATORS when first imported and raises a bare ValueError on an unknown name,
    which would surface from `import veil` instead of veil's ConfigurationError. veil validates the variable
    itself and installs its own global propagator, so the import runs with the default while an invalid value
    is set, and the variable is restored right after.
    """
    module = sys.modules.get("opentelemetry.propagate")
    if module is not None:
        return module
    raw = os.environ.get("OTEL_PROPAGATORS")
    names = [name.strip().lower() for name in (raw or "").split(",") if name.strip()]
    invalid = any(name not in PROPAGATOR_NAMES for name in names)
    if invalid:
        del os.environ["OTEL_PROPAGATORS"]
    try:
        from opentelemetry import propagate
    finally:
        if invalid and raw is not None:
            os.environ["OTEL_PROPAGATORS"] = raw
    return propagate
