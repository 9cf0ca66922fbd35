"""The configuration reference page, generated from the Settings definition so it cannot drift."""

from __future__ import annotations

from veil.settings import options

HEADER = """# Configuration reference

Generated from `veil.settings.Settings` by `veil config --markdown`; a test keeps this page identical to the
output. Precedence: keyword arguments of `veil.configure()` > environment variables > defaults. Every value is
validated at startup: a mistake raises one `veil.errors.ConfigurationError` naming the variable and the accepted
values, before anything is installed.

| variable | `configure()` keyword | default | description | example |
|---|---|---|---|---|
"""


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value) if value else "empty"
    if isinstance(value, dict):
        return "empty" if not value else ",".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def render_markdown() -> str:
    rows = []
    for item in options():
        variable = f"`{item.env}`" if item.env else "—"
        doc = item.doc.replace("|", "\\|")
        example = f"`{item.example}`" if item.example else ""
        rows.append(f"| {variable} | `{item.name}` | `{_default(item.default)}` | {doc} | {example} |")
    return HEADER + "\n".join(rows) + "\n"
