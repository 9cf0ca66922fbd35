"""Settings → Redactor: every redaction option reaches the engine."""

from __future__ import annotations

import pytest

from veil.errors import ConfigurationError
from veil.redaction import Redactor
from veil.settings import Settings


def test_from_settings_applies_every_option() -> None:
    settings = Settings.load(
        {
            "VEIL_SENSITIVE_QUERY_PARAMETERS": "ticket",
            "VEIL_REDACTION_SENSITIVE_KEYS": "customer_note",
            "VEIL_REDACTION_ALLOWED_KEYS": "debug.raw",
            "VEIL_REDACTION_EXTRA_PATTERNS": "tck=TCK-%5B0-9%5D%7B4%7D",
            "VEIL_REDACTION_EMAILS": "keep",
            "VEIL_REDACTION_SQL": "all",
            "VEIL_REDACTION_DEBUG_KEYS": "true",
        }
    )
    redactor = Redactor.from_settings(settings)
    assert redactor.redact("url.full", "https://h/?ticket=1&sig=2&q=3") == "https://h/?ticket=REDACTED&sig=REDACTED&q=3"
    assert redactor.redact("customer_note", "x") == "[REDACTED:sensitive_key]"
    assert redactor.redact("debug.raw", "password=x") == "password=x"
    assert redactor.redact(None, "see TCK-1234") == "see [REDACTED:tck]"
    assert redactor.redact(None, "mail bob@example.com") == "mail bob@example.com"
    assert redactor.redact("db.statement", "SELECT 1 FROM t WHERE a = 'b'") == "SELECT ? FROM t WHERE a = ?"
    assert redactor.config.debug_keys
    assert redactor.enabled


def test_hash_mode_from_settings_needs_a_key() -> None:
    settings = Settings.load({"VEIL_REDACTION_MODE": "hash"})
    with pytest.raises(ConfigurationError, match="VEIL_REDACTION_HASH_KEY"):
        Redactor.from_settings(settings)
    keyed = Settings.load({"VEIL_REDACTION_MODE": "hash", "VEIL_REDACTION_HASH_KEY": "k" * 32})
    assert Redactor.from_settings(keyed).redact("password", "pw").startswith("[REDACTED:password:")


def test_invalid_choices_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="VEIL_REDACTION_EMAILS"):
        Settings.load({"VEIL_REDACTION_EMAILS": "sometimes"})


def test_unsafe_extra_pattern_is_refused_at_configuration() -> None:
    settings = Settings.load({"VEIL_REDACTION_EXTRA_PATTERNS": "bad=(a%2B)%2Bb"})
    with pytest.raises(ConfigurationError, match="VEIL_REDACTION_EXTRA_PATTERNS"):
        Redactor.from_settings(settings)
