"""SQL statements (`db.query.text`, `db.statement`): literals that hold secrets or personal data.

Policy `sensitive` (default): a literal compared with or assigned to a secret column (`password = '...'`,
`INSERT INTO users (email, password) VALUES (..., '...')`, `IDENTIFIED BY '...'`, `PASSWORD '...'`) is replaced;
the engine's value detectors then run over the whole statement, so an e-mail or a card number in any literal is
replaced too. Policy `all`: every string and numeric literal becomes `?`, as the database semantic conventions
describe. Parameterized statements (`$1`, `%s`, `?`, `:name`) carry no literal and are left as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from veil.redaction.keys import KeyClassifier
from veil.redaction.rules import Match, is_placeholder

_STRING = r"'(?:[^'\\]|\\.|''){0,8192}'"
_INSERT = re.compile(
    r"\bINSERT\s+(?:INTO\s+)?[\w.\"`\[\]]{1,128}\s*\((?P<columns>[^()]{1,4096})\)\s*VALUES\s*",
    re.IGNORECASE,
)
_TUPLE_ITEM = re.compile(rf"\s*(?P<item>{_STRING}|[^,()']{{0,256}})\s*(?P<end>[,)])")
_KEYWORD_SECRET = re.compile(
    rf"\b(?:IDENTIFIED\s+BY|PASSWORD|ENCRYPTED\s+PASSWORD)\s+(?P<literal>{_STRING})", re.IGNORECASE
)
_TOKENS = re.compile(
    rf"""
    (?P<keep>--[^\n]*|/\*[\s\S]*?\*/|"(?:[^"]|""){{0,256}}"|`[^`]{{0,256}}`)
  | (?P<string>(?<![A-Za-z0-9_])[NnXxBbEe]?{_STRING})
  | (?P<dollar>\$(?P<tag>[A-Za-z_]\w{{0,30}}|)\$[\s\S]{{0,65536}}?\$(?P=tag)\$)
  | (?<![\w$:@.?])(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.])
    """,
    re.VERBOSE,
)


def _split_columns(columns: str) -> list[str]:
    return [column.strip().strip('"`[]').rsplit(".", 1)[-1] for column in columns.split(",")]


def _literal_match(literal_start: int, literal: str, category: str) -> Match | None:
    inner = literal[1:-1]
    if not inner or is_placeholder(inner):
        return None
    return Match(literal_start + 1, literal_start + len(literal) - 1, category)


def find_sensitive_literals(statement: str, classifier: KeyClassifier) -> Iterator[Match]:
    """The literals in `statement` that belong to secret columns or follow a password keyword."""
    for match in _KEYWORD_SECRET.finditer(statement):
        found = _literal_match(match.start("literal"), match.group("literal"), "password")
        if found is not None:
            yield found
    for match in _INSERT.finditer(statement):
        categories = [classifier.classify(column) for column in _split_columns(match.group("columns"))]
        if not any(categories):
            continue
        position = match.end()
        for _ in range(1000):  # bounded number of rows
            if position >= len(statement) or statement[position] != "(":
                break
            position += 1
            index = 0
            while True:
                item = _TUPLE_ITEM.match(statement, position)
                if item is None:
                    return
                text = item.group("item")
                category = categories[index] if index < len(categories) else None
                if category is not None and text.startswith("'"):
                    found = _literal_match(item.start("item"), text, category)
                    if found is not None:
                        yield found
                elif category is not None and text and not is_placeholder(text):
                    yield Match(item.start("item"), item.start("item") + len(text), category)
                position = item.end()
                index += 1
                if item.group("end") == ")":
                    break
            while position < len(statement) and statement[position] in " ,\t\r\n":
                position += 1


def replace_all_literals(statement: str) -> tuple[str, int]:
    """Every literal → `?` (comments and quoted identifiers are kept); returns the statement and the count."""
    pieces: list[str] = []
    last = 0
    count = 0
    for match in _TOKENS.finditer(statement):
        if match.group("keep") is not None:
            continue
        pieces.append(statement[last : match.start()])
        pieces.append("?")
        last = match.end()
        count += 1
    if not count:
        return statement, 0
    pieces.append(statement[last:])
    return "".join(pieces), count
