"""User value patterns (VEIL_REDACTION_EXTRA_PATTERNS): checked for catastrophic backtracking, matched in windows.

A pattern is parsed when the configuration is loaded and refused when it uses backreferences, lookaround,
a repetition inside a repetition, an alternation inside a repetition, or more than two unbounded repetitions;
accepted patterns are matched in overlapping windows so the work per character stays bounded.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from veil.errors import ConfigurationError
from veil.redaction.rules import Match

_WINDOW = 1024
_OVERLAP = 256
_MAX_VARIABLE_REPEATS = 2
_SINGLE_CHAR_OPS = frozenset({"LITERAL", "NOT_LITERAL", "IN", "ANY", "CATEGORY", "RANGE", "NEGATE"})
_FIXED_OPS = _SINGLE_CHAR_OPS | {"AT"}


def _parser() -> Any:
    try:
        return importlib.import_module("re._parser")
    except ImportError:  # pragma: no cover - Python 3.10
        return importlib.import_module("sre_parse")


def _unsafe_reason(pattern: str) -> str | None:
    """Why a user pattern could backtrack catastrophically, or None when it is in the safe subset.

    Safe subset: no backreferences, no lookaround, no conditional groups; a repetition repeats a single
    character class or a fixed sequence of them (no repetition inside repetition, no alternation inside
    repetition); at most two unbounded repetitions. Matching is then polynomial of low degree, and windowing
    the text bounds the work per character.
    """
    try:
        tree = _parser().parse(pattern)
    except re.error as error:
        return f"invalid regular expression: {error}"
    variable = 0

    def walk(items: Iterable[tuple[Any, Any]], inside_repeat: bool) -> str | None:
        nonlocal variable
        for op, argument in items:
            name = str(op)
            if name in ("GROUPREF", "GROUPREF_EXISTS"):
                return "backreferences are not allowed"
            if name in ("ASSERT", "ASSERT_NOT"):
                return "lookaround assertions are not allowed"
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                low, high, body = argument
                if inside_repeat:
                    return "nested repetition is not allowed"
                if high - low > 64:
                    variable += 1
                reason = walk(body, inside_repeat=True)
                if reason:
                    return reason
            elif name == "SUBPATTERN":
                reason = walk(argument[-1], inside_repeat)
                if reason:
                    return reason
            elif name == "ATOMIC_GROUP":
                reason = walk(argument, inside_repeat)
                if reason:
                    return reason
            elif name == "BRANCH":
                if inside_repeat:
                    return "alternation inside a repetition is not allowed"
                for branch in argument[1]:
                    reason = walk(branch, inside_repeat)
                    if reason:
                        return reason
            elif name not in _FIXED_OPS:
                return f"construct {name} is not allowed"
        return None

    reason = walk(tree, inside_repeat=False)
    if reason is None and variable > _MAX_VARIABLE_REPEATS:
        reason = f"at most {_MAX_VARIABLE_REPEATS} unbounded repetitions are allowed"
    return reason


class PatternDetector:
    """A user-supplied pattern, checked for catastrophic backtracking and matched window by window.

    Text is searched in windows of 1,024 characters overlapping by 256, so the work per character is bounded
    whatever the input; a match longer than 256 characters that straddles two windows may be missed.
    """

    def __init__(self, name: str, pattern: str, variable: str = "VEIL_REDACTION_EXTRA_PATTERNS") -> None:
        reason = _unsafe_reason(pattern)
        if reason is not None:
            raise ConfigurationError(
                variable,
                pattern,
                "a regular expression without backreferences, lookaround or nested/alternated repetition",
                reason,
            )
        self.name = name
        self._pattern = re.compile(pattern)

    def find(self, text: str) -> Iterator[Match]:
        length = len(text)
        if length <= _WINDOW:
            for match in self._pattern.finditer(text):
                if match.end() > match.start():
                    yield Match(match.start(), match.end(), self.name)
            return
        start = 0
        while start < length:
            end = min(start + _WINDOW, length)
            for match in self._pattern.finditer(text, start, end):
                if match.end() > match.start():
                    yield Match(match.start(), match.end(), self.name)
            if end == length:
                break
            start = end - _OVERLAP


def compile_patterns(patterns: Mapping[str, str]) -> tuple[PatternDetector, ...]:
    """User patterns, category name → regular expression; raises ConfigurationError for unsafe ones."""
    detectors = []
    for category, pattern in patterns.items():
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", category):
            raise ConfigurationError(
                "VEIL_REDACTION_EXTRA_PATTERNS", category, "lowercase category names like my_token"
            )
        detectors.append(PatternDetector(category, pattern))
    return tuple(detectors)
