"""Stand-in instrumentors for registry and distro tests: each a real BaseInstrumentor with known dependencies."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import BaseInstrumentor


class Fake:
    """A third-party instrumentor for a library veil does not cover (only `instrument` is called)."""

    calls = 0

    def instrument(self, **kwargs: Any) -> None:
        type(self).calls += 1


class _Recording(BaseInstrumentor):  # type: ignore[misc]
    requirements: tuple[str, ...] = ()
    received: dict[str, Any] | None = None

    def instrumentation_dependencies(self) -> Collection[str]:
        return self.requirements

    def _instrument(self, **kwargs: Any) -> None:
        type(self).received = kwargs

    def _uninstrument(self, **kwargs: Any) -> None:
        type(self).received = None


class Installed(_Recording):
    requirements = ("pytest>=7",)


class WrongVersion(_Recording):
    requirements = ("pytest<2",)


class Missing(_Recording):
    requirements = ("surely-not-installed-library>=1",)


class Raising(_Recording):
    requirements = ("pytest>=7",)

    def _instrument(self, **kwargs: Any) -> None:
        raise RuntimeError("instrumentation bug")
