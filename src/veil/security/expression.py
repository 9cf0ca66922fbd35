"""The condition language of veil rules: a small, safe, Falco-shaped expression language compiled to closures.

    condition  := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" condition ")" | test
    test       := FIELD OP VALUE | FIELD "exists" | FIELD | MACRO
    OP         := = != < <= > >= in contains icontains startswith endswith glob pmatch matches
    VALUE      := word | 'quoted' | "quoted" | number | "(" item ("," item)* ")"   (a list name expands)

Nothing is evaluated with `eval`: the parser builds a tree, and the compiler turns it into nested Python
closures over an event mapping whose `[]` answers None for an absent field (veil.security.events.Event). Every
comparison with None is false (`exists` tests presence). Errors are `ExpressionError` with the column of the problem.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

Predicate = Callable[[Mapping[str, Any]], bool]

COMPARISONS: Final = frozenset(
    {"=", "==", "!=", "<", "<=", ">", ">=", "in", "contains", "icontains", "startswith", "endswith", "glob",
     "pmatch", "matches"}
)  # fmt: skip
_KEYWORDS: Final = frozenset({"and", "or", "not", "exists"}) | COMPARISONS
_MAX_LENGTH: Final = 8192
_MAX_DEPTH: Final = 64
_SYMBOLS = re.compile(r"\s*(==|!=|<=|>=|=|<|>|\(|\)|,)")
_WORD = re.compile(r"\s*([^\s()=!<>,'\"]+)")
_QUOTED = re.compile(r"\s*('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class ExpressionError(ValueError):
    """A condition that does not parse or names an unknown field, list or macro; `column` is 1-based."""

    def __init__(self, message: str, column: int = 0) -> None:
        super().__init__(message if not column else f"{message} (column {column})")
        self.column = column


@dataclass(frozen=True)
class _Token:
    kind: str  # "symbol", "word", "string"
    text: str
    column: int


def tokenize(text: str) -> list[_Token]:
    if len(text) > _MAX_LENGTH:
        raise ExpressionError(f"condition longer than {_MAX_LENGTH} characters")
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position].isspace():
            position += 1
            continue
        for kind, pattern in (("string", _QUOTED), ("symbol", _SYMBOLS), ("word", _WORD)):
            match = pattern.match(text, position)
            if match:
                raw = match.group(1)
                value = _unquote(raw) if kind == "string" else raw
                tokens.append(_Token(kind, value, match.start(1) + 1))
                position = match.end()
                break
        else:
            raise ExpressionError(f"unexpected character {text[position]!r}", position + 1)
    return tokens


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


# -------------------------------------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Node:
    """One node of a parsed condition: op is and/or/not/cmp/exists/bool/macro."""

    op: str
    children: tuple[Node, ...] = ()
    field: str = ""
    comparison: str = ""
    value: Any = None
    column: int = 0


class _Parser:
    def __init__(self, text: str, macros: Collection[str], lists: Mapping[str, Sequence[str]]) -> None:
        self.tokens = tokenize(text)
        self.index = 0
        self.macros = macros
        self.lists = lists
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of condition")
        self.index += 1
        return token

    def is_word(self, text: str) -> bool:
        token = self.peek()
        return token is not None and token.kind != "string" and token.text == text

    def parse(self) -> Node:
        if not self.tokens:
            raise ExpressionError("empty condition")
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            raise ExpressionError(f"unexpected {token.text!r}", token.column)
        return node

    def parse_or(self) -> Node:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise ExpressionError(f"condition nested deeper than {_MAX_DEPTH}")
        try:
            nodes = [self.parse_and()]
            while self.is_word("or"):
                self.take()
                nodes.append(self.parse_and())
            return nodes[0] if len(nodes) == 1 else Node("or", tuple(nodes))
        finally:
            self.depth -= 1

    def parse_and(self) -> Node:
        nodes = [self.parse_not()]
        while self.is_word("and"):
            self.take()
            nodes.append(self.parse_not())
        return nodes[0] if len(nodes) == 1 else Node("and", tuple(nodes))

    def parse_not(self) -> Node:
        if self.is_word("not"):
            self.take()
            self.depth += 1
            if self.depth > _MAX_DEPTH:
                raise ExpressionError(f"condition nested deeper than {_MAX_DEPTH}")
            try:
                return Node("not", (self.parse_not(),))
            finally:
                self.depth -= 1
        if self.is_word("("):
            self.take()
            node = self.parse_or()
            closing = self.take()
            if closing.text != ")" or closing.kind != "symbol":
                raise ExpressionError(f"expected ')' but found {closing.text!r}", closing.column)
            return node
        return self.parse_test()

    def parse_test(self) -> Node:
        token = self.take()
        if token.kind != "word" or token.text in _KEYWORDS:
            raise ExpressionError(f"expected a field or macro name, found {token.text!r}", token.column)
        name = token.text
        following = self.peek()
        if following is not None and following.kind != "string" and following.text in COMPARISONS:
            self.take()
            comparison = "=" if following.text == "==" else following.text
            value = self.parse_value(comparison, following)
            return Node("cmp", field=name, comparison=comparison, value=value, column=token.column)
        if following is not None and following.kind == "word" and following.text == "exists":
            self.take()
            return Node("exists", field=name, column=token.column)
        if name in self.macros:
            return Node("macro", field=name, column=token.column)
        return Node("bool", field=name, column=token.column)

    def parse_value(self, comparison: str, operator: _Token) -> Any:
        if comparison in ("in", "pmatch"):
            opening = self.take()
            if opening.text != "(" or opening.kind != "symbol":
                raise ExpressionError(f"'{comparison}' needs a list in parentheses", opening.column)
            items: list[Any] = []
            while True:
                token = self.take()
                if token.kind == "symbol" and token.text == ")" and not items:
                    break
                if token.kind == "symbol":
                    raise ExpressionError(f"expected a list item, found {token.text!r}", token.column)
                if token.kind == "word" and token.text in self.lists:
                    items.extend(self.lists[token.text])
                else:
                    items.append(_scalar(token))
                separator = self.take()
                if separator.text == ")" and separator.kind == "symbol":
                    break
                if separator.text != "," or separator.kind != "symbol":
                    raise ExpressionError(f"expected ',' or ')', found {separator.text!r}", separator.column)
            return tuple(items)
        token = self.take()
        if token.kind == "symbol":
            raise ExpressionError(f"'{comparison}' needs a value, found {token.text!r}", token.column)
        value = _scalar(token)
        if comparison == "matches":
            try:
                return re.compile(str(value))
            except re.error as error:
                raise ExpressionError(f"bad regular expression: {error}", token.column) from None
        if comparison in ("<", "<=", ">", ">=") and not isinstance(value, (int, float)):
            raise ExpressionError(f"'{comparison}' needs a number", token.column)
        return value


def _scalar(token: _Token) -> Any:
    if token.kind == "word" and _NUMBER.fullmatch(token.text):
        return float(token.text) if "." in token.text else int(token.text)
    if token.kind == "word" and token.text in ("true", "false"):
        return token.text == "true"
    return token.text


def parse(text: str, macros: Collection[str] = (), lists: Mapping[str, Sequence[str]] | None = None) -> Node:
    """Parse `text` into a tree; raises ExpressionError."""
    if not isinstance(text, str):
        raise ExpressionError("a condition must be a string")
    return _Parser(text, macros, lists or {}).parse()


def fields_of(node: Node, macros: Mapping[str, Node]) -> set[str]:
    """Every field a condition reads (macros expanded)."""
    if node.op == "macro":
        return fields_of(macros[node.field], macros)
    found = {node.field} if node.op in ("cmp", "exists", "bool") else set()
    for child in node.children:
        found |= fields_of(child, macros)
    return found


def event_names(node: Node, macros: Mapping[str, Node]) -> frozenset[str] | None:
    """The audit events a condition can match (from `evt.name = x` / `evt.name in (...)` tests it requires),
    or None when it does not restrict them."""
    if node.op == "macro":
        return event_names(macros[node.field], macros)
    if node.op == "cmp" and node.field == "evt.name":
        if node.comparison == "=":
            return frozenset({str(node.value)})
        if node.comparison == "in":
            return frozenset(str(item) for item in node.value)
        return None
    if node.op == "and":
        result: frozenset[str] | None = None
        for child in node.children:
            names = event_names(child, macros)
            if names is not None:
                result = names if result is None else result & names
        return result
    if node.op == "or":
        union: set[str] = set()
        for child in node.children:
            names = event_names(child, macros)
            if names is None:
                return None
            union |= names
        return frozenset(union)
    return None


# ------------------------------------------------------------------------------------------- compiling


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def compare(comparison: str, left: Any, right: Any) -> bool:
    """One comparison, as conditions and exceptions use it; None on the left is never equal to anything."""
    if left is None:
        return False
    if comparison == "=":
        return bool(left == right) or (not isinstance(left, str) and _text(left) == right)
    if comparison == "!=":
        return not compare("=", left, right)
    if comparison == "in":
        return bool(left in right) or (not isinstance(left, str) and _text(left) in right)
    if comparison in ("<", "<=", ">", ">="):
        if not isinstance(left, (int, float)) or isinstance(left, bool):
            return False
        if not isinstance(right, (int, float)):
            return False
        return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[comparison]
    text = _text(left)
    assert text is not None
    if comparison == "contains":
        return str(right) in text
    if comparison == "icontains":
        return str(right).lower() in text.lower()
    if comparison == "startswith":
        return text.startswith(str(right))
    if comparison == "endswith":
        return text.endswith(str(right))
    if comparison == "glob":
        return fnmatch.fnmatchcase(text, str(right))
    if comparison == "pmatch":
        return any(text == prefix or text.startswith(str(prefix).rstrip("/") + "/") for prefix in right)
    if comparison == "matches":
        return right.search(text) is not None
    raise ExpressionError(f"unknown comparison {comparison!r}")


def compile_node(node: Node, macros: Mapping[str, Predicate]) -> Predicate:
    """Turn a parsed condition into a predicate over an event mapping."""
    op = node.op
    if op == "and":
        parts = tuple(compile_node(child, macros) for child in node.children)
        return lambda event: all(part(event) for part in parts)
    if op == "or":
        parts = tuple(compile_node(child, macros) for child in node.children)
        return lambda event: any(part(event) for part in parts)
    if op == "not":
        inner = compile_node(node.children[0], macros)
        return lambda event: not inner(event)
    if op == "macro":
        return macros[node.field]
    key = node.field
    if op == "exists":
        return lambda event: event[key] is not None
    if op == "bool":
        return lambda event: bool(event[key])
    return _comparison(key, node.comparison, node.value)


def _comparison(key: str, comparison: str, value: Any) -> Predicate:
    # The common shapes get a direct closure; the rest go through compare().
    if comparison == "=" and isinstance(value, str):
        return lambda event: _text(event[key]) == value
    if comparison == "in":
        members = frozenset(str(item) for item in value)
        return lambda event: _text(event[key]) in members
    if comparison == "startswith":
        prefix = str(value)
        return lambda event: (text := _text(event[key])) is not None and text.startswith(prefix)
    if comparison == "contains":
        needle = str(value)
        return lambda event: (text := _text(event[key])) is not None and needle in text
    return lambda event: compare(comparison, event[key], value)
