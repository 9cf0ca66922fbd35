"""The VEIL_SECURITY* settings: defaults, and mistakes named with the accepted values."""

from __future__ import annotations

import pytest

from veil.errors import ConfigurationError
from veil.settings import Settings


def test_defaults() -> None:
    settings = Settings.load(environ={})
    assert settings.security == "detect"
    assert settings.security_rules == () and settings.security_disabled_rules == ()
    assert (settings.security_aggregation_window, settings.security_rate_limit, settings.security_burst) == (10, 10, 50)


@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("VEIL_SECURITY", "detcet", "block, detect, off"),
        ("VEIL_SECURITY_AGGREGATION_WINDOW", "-1", "an integer from 0 to 3600"),
        ("VEIL_SECURITY_RATE_LIMIT", "lots", "an integer >= 0"),
        ("VEIL_SECURITY_BURST", "0", "an integer >= 1"),
    ],
)
def test_mistyped_values_are_one_clear_error(variable: str, value: str, accepted: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.load(environ={variable: value})
    assert caught.value.variable == variable and accepted in str(caught.value)


def test_lists_and_case() -> None:
    settings = Settings.load(
        environ={"VEIL_SECURITY": " Block ", "VEIL_SECURITY_DISABLED_RULES": "VEIL-RT-DLOPEN, VEIL-RT-IMPORT"}
    )
    assert settings.security == "block"
    assert settings.security_disabled_rules == ("VEIL-RT-DLOPEN", "VEIL-RT-IMPORT")
