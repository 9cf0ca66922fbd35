"""The exceptions veil raises into user code: only for configuration mistakes, never at request time."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigurationError(ValueError):
    """A configuration value is invalid.

    The message names the variable (environment variable or keyword argument), the offending value and what
    is accepted, so a single error tells the user exactly what to fix.
    """

    def __init__(self, variable: str, value: object, accepted: str | Iterable[str], reason: str = "") -> None:
        if not isinstance(accepted, str):
            accepted = ", ".join(sorted(accepted))
        self.variable = variable
        self.value = value
        self.accepted = accepted
        detail = f" ({reason})" if reason else ""
        super().__init__(f"{variable}={value!r} is invalid{detail}; accepted: {accepted}")
