"""Renamed public names of veil.redaction: the new name is the class, the old one answers with a DeprecationWarning."""

from __future__ import annotations

import warnings

import pytest

import veil.redaction
from veil.redaction import Match, RedactionConfig, Redactor, rules


def test_match_is_what_detectors_yield() -> None:
    class _Fixed:
        name = "fixed"

        def find(self, text: str) -> list[Match]:
            return [Match(0, 4, "custom")]

    assert Redactor(RedactionConfig(extra_detectors=(_Fixed(),))).redact(None, "abcd efgh") == (
        "[REDACTED:custom] efgh"
    )


@pytest.mark.parametrize("module", [veil.redaction, rules])
def test_span_is_a_deprecated_alias_of_match(module: object) -> None:
    with pytest.warns(DeprecationWarning, match=r"Span is deprecated: use veil\.redaction\.Match"):
        alias = module.Span  # type: ignore[attr-defined]
    assert alias is Match


def test_from_import_of_span_warns_at_the_importer() -> None:
    with pytest.warns(DeprecationWarning, match="Span is deprecated") as caught:
        from veil.redaction import Span
    assert Span is Match
    assert caught[0].filename == __file__


def test_star_import_and_unknown_names_do_not_warn() -> None:
    assert "Span" not in veil.redaction.__all__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        namespace: dict[str, object] = {}
        exec("from veil.redaction import *", namespace)
    assert namespace["Match"] is Match
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        _ = veil.redaction.Nothing  # type: ignore[attr-defined]
