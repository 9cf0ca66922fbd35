"""The engine's configuration, `RedactionConfig`, and how veil's Settings (the `# --- redaction ---` options) make one.

Below the engine: the engine builds itself from a `RedactionConfig`, and nothing here needs the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, cast

from veil.redaction.rules import Detector
from veil.redaction.url import DEFAULT_SENSITIVE_QUERY_PARAMETERS

__all__ = ["EmailPolicy", "Mode", "RedactionConfig", "SQLPolicy", "config_from_settings"]

EmailPolicy = Literal["redact", "hash", "keep"]
SQLPolicy = Literal["sensitive", "all", "off"]
Mode = Literal["mark", "hash"]


@dataclass(frozen=True)
class RedactionConfig:
    """Everything the engine needs, resolved once (see `Redactor.from_settings` for the VEIL_* variables)."""

    enabled: bool = True
    sensitive_query_parameters: frozenset[str] = DEFAULT_SENSITIVE_QUERY_PARAMETERS
    extra_sensitive_keys: tuple[str, ...] = ()
    allowed_keys: tuple[str, ...] = ()
    extra_patterns: tuple[tuple[str, str], ...] = ()
    email: EmailPolicy = "redact"
    sql: SQLPolicy = "sensitive"
    mode: Mode = "mark"
    hash_key: bytes | None = field(default=None, repr=False)
    debug_keys: bool = False
    max_scan_length: int = 65536
    extra_detectors: tuple[Detector, ...] = ()


def config_from_settings(settings: Any) -> RedactionConfig:
    """The engine configuration for `settings` (a `veil.settings.Settings`); missing options take defaults."""
    defaults = RedactionConfig()
    key = getattr(settings, "redaction_hash_key", None)
    patterns = getattr(settings, "redaction_extra_patterns", None) or {}
    return RedactionConfig(
        enabled=bool(getattr(settings, "redaction_enabled", True)),
        sensitive_query_parameters=DEFAULT_SENSITIVE_QUERY_PARAMETERS
        | frozenset(getattr(settings, "sensitive_query_parameters", ()) or ()),
        extra_sensitive_keys=tuple(getattr(settings, "redaction_sensitive_keys", ()) or ()),
        allowed_keys=tuple(getattr(settings, "redaction_allowed_keys", ()) or ()),
        extra_patterns=tuple(sorted(dict(patterns).items())),
        email=cast(EmailPolicy, getattr(settings, "redaction_emails", None) or defaults.email),
        sql=cast(SQLPolicy, getattr(settings, "redaction_sql", None) or defaults.sql),
        mode=cast(Mode, getattr(settings, "redaction_mode", None) or defaults.mode),
        hash_key=key.encode("utf-8") if isinstance(key, str) else None,
        debug_keys=bool(getattr(settings, "redaction_debug_keys", False)),
    )
