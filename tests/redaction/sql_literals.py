"""Hypothesis strategies: SQL statements with secrets planted as literals and comments, per dialect.

`planted_statements()` draws (dialect, statement, secrets): every secret is written into the statement as a
string, number, hex, dollar-quoted or comment literal in that dialect's syntax (with escaped quotes around it),
so a sanitizer that keeps any of them is caught. The driver tests run the same statements against real
servers and look for the secrets at the OTLP receiver.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

DIALECTS = ("postgresql", "mysql", "sqlite", "")

_TEMPLATES = (
    "SELECT * FROM users WHERE name = {0}",
    "SELECT id, name FROM orders WHERE total > {0} AND status IN ({1}, {2})",
    "INSERT INTO users (name, email) VALUES ({0}, {1})",
    "UPDATE users SET note = {0} WHERE id = {1}",
    "DELETE FROM sessions WHERE token = {0} AND owner = {1}",
    "SELECT {0} AS v, {1} AS w",
)
_SECRET_TEXT = st.text(alphabet="abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=10, max_size=16)
_SECRET_NUMBER = st.integers(min_value=10**9, max_value=10**15)
_SECRET_HEX = st.text(alphabet="0123456789abcdef", min_size=16, max_size=24)


@st.composite
def _literal(draw: Any, dialect: str) -> tuple[str, str]:
    """(literal as written in SQL, the secret inside it)."""
    kinds = ["string", "number", "hex", "line_comment", "block_comment"]
    if dialect in ("postgresql", ""):
        kinds += ["dollar", "estring", "nested_comment"]
    if dialect == "mysql":
        kinds += ["double", "hash_comment", "backslash"]
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        secret = str(draw(_SECRET_NUMBER))
        written = secret + draw(st.sampled_from(["", ".5", "e3"]))
        return written, secret
    if kind == "hex":
        secret = draw(_SECRET_HEX)
        return draw(st.sampled_from([f"X'{secret}'", f"x'{secret}'", f"0x{secret}"])), secret
    secret = draw(_SECRET_TEXT)
    around = draw(st.sampled_from(["", "it''s ", " -- ", "/* ", "é ", "a\nb "]))
    if kind == "string":
        return f"'{around}{secret}{around}'", secret
    if kind == "estring":
        return f"E'{around}\\'{secret}\\\\'", secret
    if kind == "backslash":
        return f"'\\'{around}{secret}\\\\'", secret
    if kind == "double":
        return f'"{secret} ""q"" "', secret
    if kind == "dollar":
        tag = draw(st.sampled_from(["", "t", "body_1"]))
        return f"${tag}$ '{secret}' $x$ ${tag}$", secret
    if kind == "line_comment":
        return f"1 -- {secret} 'x\n", secret
    if kind == "nested_comment":
        return f"/* a /* b */ {secret} */ 1", secret
    if kind == "hash_comment":
        return f"1 # {secret}\n", secret
    return f"/* {around}{secret} */ 1", secret


@st.composite
def planted_statements(draw: Any, dialects: tuple[str, ...] = DIALECTS) -> tuple[str, str, list[str]]:
    """(dialect, statement, secrets) with 2 to 4 secrets planted as literals or comments."""
    dialect = draw(st.sampled_from(dialects))
    template = draw(st.sampled_from(_TEMPLATES))
    literals = [draw(_literal(dialect)) for _ in range(3)]
    statement = template.format(*(written for written, _ in literals))
    used = [secret for index, (_, secret) in enumerate(literals) if "{" + str(index) + "}" in template]
    if draw(st.booleans()):
        secret = draw(_SECRET_TEXT)
        statement = f"/* {secret} */ {statement}" if draw(st.booleans()) else f"{statement} -- {secret}"
        used.append(secret)
    return dialect, statement, used
