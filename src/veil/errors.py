"""The exceptions veil raises into user code: only for configuration mistakes, never at request time."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

# Above this many accepted values the message names the closest one and the count instead of the whole list.
_LISTED_AT_MOST = 20


class ConfigurationError(ValueError):
    """A configuration value is invalid.

    The message names the variable (environment variable or keyword argument), the offending value, what is
    accepted and, when one is close enough, the closest accepted value (`closest`), so a single error tells
    the user exactly what to fix. `near` is the part of the value to match (one name of a list); by default
    the value itself when it is a string.
    """

    def __init__(
        self,
        variable: str,
        value: object,
        accepted: str | Iterable[str],
        reason: str = "",
        *,
        near: str | None = None,
    ) -> None:
        choices = None if isinstance(accepted, str) else sorted(accepted)
        if near is None and isinstance(value, str) and "," not in value:  # a list: the caller names the item
            near = value.strip()
        self.closest = closest_match(near, choices) if near and choices else None
        if choices is not None:
            if len(choices) > _LISTED_AT_MOST and self.closest is not None:
                accepted = f"one of {len(choices)} names"
            else:
                accepted = ", ".join(choices)
        self.variable = variable
        self.value = value
        self.accepted = accepted
        detail = f" ({reason})" if reason else ""
        suggestion = f"; did you mean {self.closest!r}?" if self.closest is not None else ""
        super().__init__(f"{variable}={value!r} is invalid{detail}; accepted: {accepted}{suggestion}")


def closest_match(name: str, choices: Iterable[str]) -> str | None:
    """The accepted value most like `name` (case-insensitive), or None if none is close."""
    by_lower = {choice.lower(): choice for choice in choices}
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return by_lower[found[0]] if found else None
