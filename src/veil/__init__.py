"""veil: secure-by-default distributed tracing and APM for Python services, built on OpenTelemetry.

Public API: `configure`, `instrument`, `Telemetry`, `ConfigurationError`, `audit` (veil.security.audit), `__version__`.
"""

from veil.propagation import api_module

api_module()  # first: an invalid OTEL_PROPAGATORS must reach veil's validation, not raise at import

from veil._version import __version__  # noqa: E402
from veil.errors import ConfigurationError  # noqa: E402
from veil.security.audit import audit  # noqa: E402
from veil.telemetry import Telemetry, configure, instrument  # noqa: E402

__all__ = ["ConfigurationError", "Telemetry", "__version__", "audit", "configure", "instrument"]
