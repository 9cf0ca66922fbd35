"""What every value detector shares, and the `key=value` text detector (a value judged by its key).

Every detector reports matches `(start, end, category, quote)`; the engine replaces exactly those characters and
keeps the rest of the text. A detector is a cheap gate (a substring test or a length test) in front of one
compiled pattern. This module holds what the detectors share: `Match`, the `Detector` protocol, and what counts
as a mask, a placeholder or a possible credential. Vendor tokens are in `vendors`, personal data in `personal`,
phone numbers in `phones`, commands in `commands`, sentences in `prose`, user patterns in `patterns`. All
built-in patterns are linear or bounded: no nested quantifiers, every repetition capped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple, Protocol

from veil._renamed import old_name
from veil.redaction.keys import KeyClassifier


class Match(NamedTuple):
    """A stretch of text to replace; `quote` wraps the marker when the original was an unquoted JSON number."""

    start: int
    end: int
    category: str
    quote: str = ""


class Detector(Protocol):
    """Finds secrets in a text. `find` may raise: the engine then fails closed on that value."""

    name: str

    def find(self, text: str) -> Iterable[Match]: ...


# ------------------------------------------------------------------------------------------------ key=value text

_PLACEHOLDER = re.compile(
    r"""
    \[(?:REDACTED|FILTERED|Filtered|MASKED|HIDDEN|SCRUBBED|redacted|filtered|masked|hidden|scrubbed)[^\]]{0,80}\]
    | <(?:REDACTED|redacted|FILTERED|filtered|MASKED|masked|HIDDEN|hidden)> | REDACTED | FILTERED
    | \*{3,}\d{0,4} | x{4,} | X{4,} | \.{3,} | …
    | <[A-Za-z0-9_ .:-]{1,40}> | \$\{[^}]{0,80}\}? | \{\{.{0,80} | %\(?[A-Za-z_]*\)?[sdr] | \? | \$\d{1,3}
    | [:@][A-Za-z_][A-Za-z0-9_]{0,30}
    | (?i:none|null|nil|true|false|undefined|n/?a|empty|unset)
    """,
    re.VERBOSE,
)


def is_placeholder(value: str) -> bool:
    """Whether `value` is already masked, a template or parameter placeholder, or a literal like `null`."""
    stripped = value.strip()
    return not stripped or _PLACEHOLDER.fullmatch(stripped) is not None or _MASK.fullmatch(stripped) is not None


# What may stand in the value of a secret's key without being a secret: a mask or a closed template. Looser
# shapes (`@name`, `:name`, `$1`, `<word>`, `null`, an unclosed `{{`) are real passwords often enough. A mask may
# keep a few characters visible (`************4242`, `sk_live_****abcd`, `411111******1111`) and may stand after
# a cookie name (`sid=[REDACTED]`).
_MASK = re.compile(
    r"""
    (?:[A-Za-z0-9_.-]{1,64}=)?
    (?:
      \[(?:REDACTED|FILTERED|Filtered|MASKED|HIDDEN|SCRUBBED|REMOVED|PROTECTED|redacted|filtered|masked|hidden|scrubbed|removed|protected)[^\]]{0,80}\]
    | <(?:REDACTED|redacted|FILTERED|filtered|MASKED|masked|HIDDEN|hidden|SECRET|secret)> | REDACTED | FILTERED
    | \((?:REDACTED|redacted|FILTERED|filtered|MASKED|masked|HIDDEN|hidden|removed|secret)\)
    | [A-Za-z0-9_]{0,12}[ -]?(?:[*•●]{3,}|x{4,}|X{4,}|(?:(?:[*xX]{2,6}|[*xX•]{4})[ -]){1,4}[*xX•]{0,6})[A-Za-z0-9]{0,4}
    | \.{3,} | …
    | \$\{[A-Za-z_][A-Za-z0-9_.:-]{0,80}\} | \{\{[ \t]?[A-Za-z_][A-Za-z0-9_.]{0,80}[ \t]?\}\}
    | %\(?[A-Za-z_]*\)?[sdr] | \?
    )
    """,
    re.VERBOSE,
)


def is_mask(value: str) -> bool:
    """Whether the value of a secret's key is already masked or a closed template (never a real secret)."""
    return not value.strip() or _MASK.fullmatch(value.strip()) is not None


# Values that are settings, not credentials: booleans, single words, numbers with a unit, dates, short phrases.
_SETTING = re.compile(
    r"""
    (?i:true|false|yes|no|on|off|none|null|nil|n/?a)
    | [A-Za-z][a-z]{0,23} | [A-Z]{1,12} | [A-Za-z]+(?:[ ][A-Za-z]+){1,5}
    | -?\d{1,9}(?:\.\d{1,6})?[ ]?[A-Za-z%]{0,8}
    | \d{4}-\d{2}-\d{2}(?:[T ][0-9:.]{5,15}(?:Z|[+-]\d{2}:?\d{2})?)?
    """,
    re.VERBOSE,
)


def could_be_credential(value: object) -> bool:
    """Whether a value under a key that only *mentions* a secret (`password_history`) could be one itself.

    Booleans, numbers, single words, short phrases, dates and masks are settings; anything else is treated as
    a credential (fail closed).
    """
    if value is None or isinstance(value, (bool, int, float)):
        return False
    text = str(value).strip()
    return not is_mask(text) and _SETTING.fullmatch(text) is None


def digit_count(value: str) -> int:
    """How many ASCII digits `value` holds."""
    return sum(map(value.count, "0123456789"))


MIN_PHONE_DIGITS = 7


# key, optional closing quote of the key, separator, then a quoted value (", ', \", '' escapes) or a bare one
# (an optional auth scheme kept aside).  Every repetition is bounded.
_ASSIGNMENT = re.compile(
    r"""
    (?P<key>[A-Za-z_](?<![A-Za-z0-9_.].)[A-Za-z0-9_.\[\]-]{0,63}?)
    (?P<keyquote>\\?["'])?
    (?P<separator>[ \t]{0,3}(?:=>|:=|[:=])[ \t]{0,3})
    (?:
        "(?P<dq>(?:[^"\\\n]|\\.){0,4096})"
      | \\"(?P<edq>(?:[^"\\]|\\[^"]){0,4096})\\"
      | '(?P<sq>(?:[^'\\\n]|\\.|''){0,4096})'
      | (?P<scheme>(?i:bearer|basic|token|digest|negotiate|ntlm|apikey|aws4-hmac-sha256)[ \t]{1,4})?
        (?P<bare>[^\s,;&"'\\][^\s,;&"'<>(){}\[\]\\]{0,4095})
    )
    """,
    re.VERBOSE,
)
_SQL_STRING_PREFIXES = frozenset({"N", "n", "E", "e", "X", "x", "B", "b"})
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")
_AUTH_SCHEMES = frozenset({"bearer", "basic", "token", "digest", "negotiate", "ntlm", "apikey", "aws4-hmac-sha256"})


_NEXT_ASSIGNMENT = re.compile(r"[&;,][ \t]*[A-Za-z_][A-Za-z0-9_.\[\]-]{0,63}[ \t]*=")
_CLOSERS = {")": "(", "]": "[", "}": "{", ">": "<"}


def _secret_end(text: str, start: int, end: int) -> int:
    """Where an unquoted secret after a secret's key ends: at white space or a quote, or at `&`/`;`/`,` that
    starts the next `key=` — not at the first punctuation, since passwords contain `&`, `(`, `{`, `;`.
    Unbalanced closing brackets at its end belong to the surrounding text."""
    limit = min(len(text), start + 4096)
    while end < limit and not text[end].isspace() and text[end] not in "\"'":
        if text[end] in "&;," and _NEXT_ASSIGNMENT.match(text, end):
            break
        end += 1
    if end > start + 1 and text[end - 1] in ";,":
        end -= 1  # `Password=P@ss;` ends a connection-string member, `password=x, then` a clause
    while end > start + 1 and text[end - 1] in _CLOSERS:
        closer = text[end - 1]
        value = text[start:end]
        if value.count(closer) <= value.count(_CLOSERS[closer]):
            break
        end -= 1
    return end


def _masked_after(text: str, position: int) -> bool:
    """True when what follows `position` (after blanks) is a redaction marker."""
    rest = text[position : position + 64].lstrip(" \t")
    return rest.startswith(("[REDACTED", "REDACTED"))


# `--password hunter2` (command lines) and `password 'hunter2'` (messages quoting the value).
_SPACED = re.compile(
    r"""
    (?:-(?<![A-Za-z0-9_-].)-?(?P<flag>[A-Za-z][A-Za-z0-9_-]{1,40})[ \t]+(?P<flagvalue>[^\s"'-][^\s"']{0,4095}))
  | (?:(?P<word>[A-Za-z](?<![A-Za-z0-9_.-].)[A-Za-z0-9_]{1,40})[ \t]{1,3}
       (?:"(?P<dq>[^"\n]{1,512})"|'(?P<sq>[^'\n]{1,512})'))
    """,
    re.VERBOSE,
)


_STEM_GATE_LENGTH = 96


class AssignmentDetector:
    """`password=...`, `"api_key": "..."`, `Authorization: Bearer ...`, `Pwd=...;` in free text.

    The key is judged by the same word rules as attribute keys; only the value is replaced.
    """

    name = "assignment"

    def __init__(self, classifier: KeyClassifier) -> None:
        self._classifier = classifier
        self._stems = classifier.stems()

    def find(self, text: str, bind_parameters: bool = False, lowered: str | None = None) -> Iterable[Match]:
        """Secret values after secret keys; with `bind_parameters` (SQL), `:name`/`@name`/`$1`/`?` are kept.
        `lowered`: the text in lower case, when the caller has it."""
        spaced = " -" in text or text.startswith("-") or " '" in text or ' "' in text
        if not spaced and "=" not in text and ":" not in text:
            return ()
        return list(self._find(text, bind_parameters, lowered, spaced))

    def _find(self, text: str, bind_parameters: bool, lowered: str | None, spaced: bool) -> Iterator[Match]:
        unmasked = is_placeholder if bind_parameters else is_mask
        if len(text) > _STEM_GATE_LENGTH:
            lowered = lowered if lowered is not None else text.lower()
            if not any(stem in lowered for stem in self._stems):
                return  # no key in this text can be a secret's key
        if spaced:
            yield from self._spaced(text, unmasked)
        if "=" not in text and ":" not in text:
            return
        judge = self._classifier.judge
        for match in _assignments(text):
            key = match.group("key")
            category, holds = judge(key)
            if category is None:
                continue
            for group in ("dq", "edq", "sq", "bare"):
                value = match.group(group)
                if value is not None:
                    break
            else:  # pragma: no cover - one alternative always matches
                continue
            end = match.end(group)
            start = match.start(group)
            if group == "bare" and value in _SQL_STRING_PREFIXES and text.startswith("'", end):
                closing = text.find("'", end + 1, end + 4098)  # N'...', E'...': a prefixed SQL string literal
                if closing < 0:
                    continue
                start, end, value, group = end + 1, closing, text[end + 1 : closing], "sq"
            if group == "bare":
                end = _secret_end(text, start, end)
                value = text[start:end]
            if not value or unmasked(value) or not _worth_replacing(category, holds, value):
                continue
            if _namespaced_name(match, group, value):
                continue  # `session:123`, `auth:session:42`, `session:*`: a Redis-style name, not a pair
            if group == "bare" and value.lower() in _AUTH_SCHEMES and _masked_after(text, end):
                continue  # `Authorization: Bearer [REDACTED:jwt]`: already masked, the scheme stays
            quote = ""
            if group == "bare":
                keyquote = match.group("keyquote")
                if keyquote and _NUMBER.fullmatch(value):
                    quote = keyquote  # a JSON/dict number: the marker must be quoted to keep the document valid
            yield Match(start, end, category, quote)

    def _spaced(self, text: str, unmasked: Callable[[str], bool]) -> Iterator[Match]:
        judge = self._classifier.judge
        for match in _SPACED.finditer(text):
            key = match.group("flag") or match.group("word")
            category, holds = judge(key)
            if category is None:
                continue
            for group in ("flagvalue", "dq", "sq"):
                value = match.group(group)
                if value is not None:
                    break
            else:  # pragma: no cover - one alternative always matches
                continue
            if not unmasked(value) and _worth_replacing(category, holds, value):
                yield Match(match.start(group), match.end(group), category)


def _assignments(text: str) -> Iterator[re.Match[str]]:
    """`_ASSIGNMENT` matches; after one whose value is itself a pair (`error: password=x`), the search goes on
    from that value rather than past it, so the inner pair is judged too."""
    position = 0
    length = len(text)
    while position < length:
        match = _ASSIGNMENT.search(text, position)
        if match is None:
            return
        yield match
        bare = match.group("bare")
        nested = bare is not None and ("=" in bare or ":" in bare)
        position = match.start("bare") if nested else match.end()


def _namespaced_name(match: re.Match[str], group: str, value: str) -> bool:
    if group != "bare" or match.group("separator") != ":" or match.group("keyquote"):
        return False
    return ":" in value or "*" in value or not could_be_credential(value)


def _worth_replacing(category: str, holds: bool, value: str) -> bool:
    """A phone key's value needs a number in it; a key that only mentions a secret needs a credential."""
    if category == "phone":
        return digit_count(value) >= MIN_PHONE_DIGITS
    return holds or could_be_credential(value)


# `Span`, the former name of `Match`: still importable for one release, with a DeprecationWarning
__getattr__ = old_name(__name__, "Span", Match, "veil.redaction.Match")
