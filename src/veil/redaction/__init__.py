"""Redaction: removing secrets and personal data from every span, event, log and metric before export.

`Redactor` is the engine (see docs/redaction.md for every rule); the detectors live in `keys`, `rules` (vendor
tokens, key=value text), `personal`, `phones`, `commands`, `prose`, `sql` and `patterns`; `veil.redaction.export`
wraps exporters so the work runs on the export thread; `veil.redaction.url` holds the cheap at-source URL and
header helpers the instrumentations call; `veil.redaction.output` redacts the process's own log output;
`veil.redaction.scan` is `veil scan`.

`Match` (what a detector's `find` yields) was called `Span`; `veil.redaction.Span` and `veil.redaction.rules.Span`
still answer, with a DeprecationWarning, for one release.
"""

from __future__ import annotations

from veil._renamed import old_name
from veil.redaction.config import RedactionConfig
from veil.redaction.engine import (
    ERROR_MARKER,
    REDACTION_COUNT_ATTRIBUTE,
    REDACTION_KEYS_ATTRIBUTE,
    Redactor,
)
from veil.redaction.rules import Detector, Match
from veil.redaction.url import (
    DEFAULT_SENSITIVE_QUERY_PARAMETERS,
    SENSITIVE_HEADERS,
    redact_header_value,
    redact_query,
    redact_url,
)

__all__ = [
    "DEFAULT_SENSITIVE_QUERY_PARAMETERS",
    "ERROR_MARKER",
    "REDACTION_COUNT_ATTRIBUTE",
    "REDACTION_KEYS_ATTRIBUTE",
    "SENSITIVE_HEADERS",
    "Detector",
    "Match",
    "RedactionConfig",
    "Redactor",
    "redact_header_value",
    "redact_query",
    "redact_url",
]


# `Span`, the former name of `Match`: still importable for one release, with a DeprecationWarning
__getattr__ = old_name(__name__, "Span", Match, "veil.redaction.Match")
