"""docs/configuration.md is generated from Settings and must not drift from it."""

from __future__ import annotations

from pathlib import Path

from veil.config_reference import render_markdown
from veil.settings import options

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_configuration_page_matches_the_settings_definition() -> None:
    assert PAGE.read_text(encoding="utf-8") == render_markdown(), (
        "docs/configuration.md is stale: regenerate it with `veil config --markdown > docs/configuration.md`"
    )


def test_every_variable_appears_in_the_reference() -> None:
    page = render_markdown()
    for item in options():
        if item.env:
            assert f"`{item.env}`" in page
