"""Fixtures of the instrumentation tests: `providers` (clients), `captured` (servers), `veil_propagator`."""

from tests.instrumentation._clients import providers_fixture
from tests.instrumentation.apps.support import captured_fixture, veil_propagator_fixture

__all__ = ["captured_fixture", "providers_fixture", "veil_propagator_fixture"]
