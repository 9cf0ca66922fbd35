"""Turning veil's Settings (the `# --- redaction ---` options) into the engine's `RedactionConfig`."""

from __future__ import annotations

from typing import Any, cast

from veil.redaction.engine import EmailPolicy, Mode, RedactionConfig, SQLPolicy
from veil.redaction.url import DEFAULT_SENSITIVE_QUERY_PARAMETERS


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
