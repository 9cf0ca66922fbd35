"""veil: secure-by-default distributed tracing and APM for Python services, built on OpenTelemetry.

Public API: `configure`, `instrument`, `Telemetry`, `ConfigurationError`, `__version__`.
"""

from veil._version import __version__
from veil.errors import ConfigurationError
from veil.telemetry import Telemetry, configure, instrument

__all__ = ["ConfigurationError", "Telemetry", "__version__", "configure", "instrument"]
