"""The statement sanitizer: SQL text with every literal replaced by `?`, and Redis commands without their values.

`sanitize_sql(text, dialect)` is a tokenizer, not a pattern list: it walks quoted strings (with the dialect's
escapes: backslashes in MySQL strings and PostgreSQL E-strings, doubled quotes everywhere), dollar-quoted
bodies (`$tag$...$tag$`), quoted identifiers (`"..."`, backticks) and comments (`--`, `#` in MySQL, `/* */`,
nested in PostgreSQL), so a quote inside a comment or a comment marker inside a string cannot derail it.
String, number, hex and bit literals become `?`; comments are removed; runs of whitespace become one space;
runs of literals collapse to one, so the text's shape does not depend on how many values a list holds
(`IN (1, 2, 3)` -> `IN (?)`, `VALUES (1, 'a'), (2, 'b')` -> `VALUES (?)`).
Placeholders (`?`, `%s`, `%(name)s`, `$1`, `:name`) and identifiers are kept. An unterminated string or comment
swallows the rest of the statement (fail-closed). Statements longer than `MAX_LENGTH` are cut there first, so
the cost is bounded; results are cached per statement text (bounded), so a repeated statement costs a lookup.
It never raises: on an internal error the whole text becomes `ERROR_TEXT`.

Dialects: `mysql` (MySQL, MariaDB: double quotes are strings, backslash escapes, `#` comments), `postgresql`
(double quotes are identifiers, nested comments, E-strings, dollar quoting), `sqlite` (as PostgreSQL without
nesting). Any other name is treated fail-closed: double-quoted text is a literal and backslashes escape.

`sanitize_redis(args)` keeps the command and key names (and hash field names) and replaces every value
(`SET user:42 ?`, `AUTH ?`); commands it does not know keep only their name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.semconv._incubating.attributes.db_attributes import DB_STATEMENT, DB_SYSTEM
from opentelemetry.semconv.attributes.db_attributes import DB_QUERY_TEXT, DB_SYSTEM_NAME

from veil._cache import remember

__all__ = [
    "ERROR_TEXT",
    "MAX_LENGTH",
    "allow_raw_text",
    "sanitize_redis",
    "sanitize_span_statements",
    "sanitize_sql",
    "sanitized_count",
]

MAX_LENGTH: Final = 32768
"""Characters of a statement that are tokenized; the rest is replaced by `...` (bounded time and size)."""
ERROR_TEXT: Final = "[REDACTED:error]"
_CACHE_SIZE: Final = 2048
_CACHE_MAX_KEY: Final = 4096
_MARK: Final = "\x00"  # stands for a replaced literal until lists are collapsed

# Every pattern consumes one character of the set below first: the regular expression engine then skips, in C,
# the positions where no token can start, and the branches check that character with a look-behind.
_STRICT = r"(?<=')[^']*(?:''[^']*)*(?:'|\Z)"
_ESCAPED = r"(?<=')[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*(?:'|\Z)"
_E_STRING = r"(?<=(?<![\w$])[Ee]')[^'\\]*(?:(?:\\[\s\S]|'')[^'\\]*)*(?:'|\Z)"
_ESCAPED_DOUBLE = r'(?<=")[^"\\]*(?:(?:\\[\s\S]|"")[^"\\]*)*(?:"|\Z)'
_IDENTIFIER_DOUBLE = r'(?<=")[^"]*(?:""[^"]*)*(?:"|\Z)'
_BACKTICK = r"(?<=`)[^`]*(?:``[^`]*)*(?:`|\Z)"
_NUMBER = (
    r"(?<![\w$.][0-9.])(?:(?<=0)(?:[xX][0-9A-Fa-f]+|[bB][01]+)|(?<=\d)\d*(?:\.\d*)?(?:[eE][+-]?\d+)?"
    r"|(?<=\.)\d+(?:[eE][+-]?\d+)?)"
)
_DOLLAR = r"(?<=\$)(?:[A-Za-z_\u0080-\uffff]\w*)?\$"


@dataclass(frozen=True)
class _Dialect:
    tokens: re.Pattern[str]
    """Every token: comments, block comment starts, literals, quoted identifiers, dollar-quote tags."""
    literals: re.Pattern[str]
    """Literals only: used, with a constant replacement, when none of `markers` is in the statement."""
    markers: tuple[str, ...]
    """What starts a token other than a literal (comment, quoted identifier, dollar quote)."""
    nested: bool
    """Block comments nest (PostgreSQL)."""


def _dialect_patterns(  # noqa: PLR0917 - one row per dialect in the table below
    strings: str, identifiers: str, identifier_quotes: str, hash_comments: bool, dollar: bool, nested: bool
) -> _Dialect:
    first = r"\-/'\"`0-9." + ("#" if hash_comments else "") + (r"\$" if dollar else "")
    parts = [
        r"(?P<comment>(?<=-)-[^\n]*" + (r"|(?<=\#)[^\n]*" if hash_comments else "") + ")",
        r"(?P<block>(?<=/)\*)",
        rf"(?P<literal>{strings}|{_NUMBER})",
        rf"(?P<keep>{identifiers})",
    ]
    if dollar:
        parts.append(rf"(?P<dollar>{_DOLLAR})")
    literal_first = "'0-9." + ("" if '"' in identifier_quotes else '"')
    markers = ("--", "/*", *identifier_quotes, *(("#",) if hash_comments else ()), *(("$",) if dollar else ()))
    return _Dialect(
        re.compile(f"[{first}](?:{'|'.join(parts)})"),
        re.compile(f"[{literal_first}](?:{strings}|{_NUMBER})"),
        markers,
        nested=nested,
    )


_DIALECTS: Final[dict[str, _Dialect]] = {
    "postgresql": _dialect_patterns(
        f"{_E_STRING}|{_STRICT}", f"{_IDENTIFIER_DOUBLE}|{_BACKTICK}", '"`', False, True, True
    ),
    "sqlite": _dialect_patterns(_STRICT, f"{_IDENTIFIER_DOUBLE}|{_BACKTICK}", '"`', False, False, False),
    "mysql": _dialect_patterns(f"{_ESCAPED}|{_ESCAPED_DOUBLE}", _BACKTICK, "`", True, False, False),
    "": _dialect_patterns(f"{_E_STRING}|{_ESCAPED}|{_ESCAPED_DOUBLE}", _BACKTICK, "`", True, True, True),
}
_PREFIXED = re.compile(r"'(?<=[EeNnBbXx&]')")  # a string written E'...', N'...', X'...', B'...', U&'...'
_PREFIX_MARK = re.compile(r"(?<![\w$])(?:[EeNnBbXx]|[Uu]&)\x00")
# Runs of literals become one (`IN (?, ?, ?)` -> `IN (?)`), then runs of one-literal rows (`VALUES (?), (?)` ->
# `VALUES (?)`); whitespace is normalized first. Both patterns start with a fixed character, searched in C.
_LIST_OF_MARKS = re.compile(r"\x00(?: ?, ?\x00)+")
_ROWS_OF_MARKS = re.compile(r"\(\x00\)(?: ?, ?\(\x00\))+")
_ONE_ROW: Final = f"({_MARK})"
_ALIASES: Final = {"mariadb": "mysql", "postgres": "postgresql", "cockroachdb": "postgresql"}

_cache: dict[tuple[str, str], tuple[str, int]] = {}


def _dialect(name: str) -> str:
    name = _ALIASES.get(name, name)
    return name if name in _DIALECTS else ""


def sanitize_sql(text: str, dialect: str = "") -> str:
    """`text` with every literal replaced by `?` and comments removed (see the module docstring)."""
    return sanitized_count(text, dialect)[0]


def sanitized_count(text: str, dialect: str = "") -> tuple[str, int]:
    """`sanitize_sql`, and how many literals and comments were removed."""
    key = (text, dialect)
    cached = _cache.get(key)
    if cached is not None:
        return cached
    try:
        result = _sanitize(text, _dialect(dialect))
    except Exception:  # never raise into the caller; never pass the raw text on
        return ERROR_TEXT, 1
    if len(text) <= _CACHE_MAX_KEY:
        remember(_cache, key, result, _CACHE_SIZE)
    return result


def _block_end(text: str, start: int, nested: bool) -> int:
    """The index after the block comment opening at `start` (the end of `text` when it is unterminated)."""
    if not nested:
        end = text.find("*/", start + 2)
        return len(text) if end < 0 else end + 2
    depth = 0
    position = start
    while True:
        opening = text.find("/*", position)
        closing = text.find("*/", position)
        if closing < 0:
            return len(text)
        if 0 <= opening < closing:
            depth += 1
            position = opening + 2
        else:
            depth -= 1
            position = closing + 2
            if depth == 0:
                return position


class _Positional(Exception):
    """A token that needs its end searched for (a block comment, a dollar-quoted body): the exact walk runs."""


def _token_replacement(match: re.Match[str]) -> str:
    kind = match.lastgroup
    if kind == "literal":
        return _MARK
    if kind == "keep":
        return match.group()
    if kind == "comment":
        return " "
    raise _Positional


def _sanitize(text: str, dialect: str) -> tuple[str, int]:
    tail = ""
    if len(text) > MAX_LENGTH:
        text, tail = text[:MAX_LENGTH], " ..."
    if _MARK in text:
        text = text.replace(_MARK, " ")
    patterns = _DIALECTS[dialect]
    if not _contains_any(text, patterns.markers):
        # literals only (most statements): one substitution in C with a constant replacement
        out, removed = patterns.literals.subn(_MARK, text)
    else:
        try:  # one substitution pass with a replacement per token kind
            out, replaced = patterns.tokens.subn(_token_replacement, text)
            removed = replaced - _count_kept(patterns.tokens, text)
        except _Positional:  # a block comment or a dollar-quoted body: the exact walk finds its end
            out, removed = _walk(text, patterns.tokens, patterns.nested)
    if not removed and not tail:
        return _normalized(text), 0
    out = _normalized(out)
    if _MARK in out:
        if _PREFIXED.search(text) is not None:
            out = _PREFIX_MARK.sub(_MARK, out)
        if f"{_MARK}," in out or f"{_MARK} ," in out:
            out = _LIST_OF_MARKS.sub(_MARK, out)
            if f"({_MARK})," in out or f"({_MARK}) ," in out:
                out = _ROWS_OF_MARKS.sub(_ONE_ROW, out)
        out = out.replace(_MARK, "?")
    return out + tail, removed


def _contains_any(text: str, markers: tuple[str, ...]) -> bool:
    """Substring searches in C: cheaper than one regular expression over the text."""
    for marker in markers:  # noqa: SIM110 - a plain loop: any() with a generator costs more here
        if marker in text:
            return True
    return False


def _normalized(text: str) -> str:
    """Runs of whitespace as one space, no leading or trailing whitespace."""
    if "  " in text or "\n" in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        return " ".join(text.split())
    return text.strip()


def _count_kept(pattern: re.Pattern[str], text: str) -> int:
    return sum(1 for match in pattern.finditer(text) if match.lastgroup == "keep")


def _walk(text: str, pattern: re.Pattern[str], nested: bool) -> tuple[str, int]:
    """The exact token walk: every token's end found, nested comments and dollar-quoted bodies included."""
    pieces: list[str] = []
    append = pieces.append
    position = 0
    removed = 0
    length = len(text)
    while position < length:
        match = pattern.search(text, position)
        if match is None:
            break
        start = match.start()
        append(text[position:start])
        kind = match.lastgroup
        if kind == "literal":
            append(_MARK)
            end = match.end()
        elif kind == "keep":
            end = match.end()
            append(text[start:end])
        elif kind == "comment":
            append(" ")
            end = match.end()
        elif kind == "block":
            append(" ")
            end = _block_end(text, start, nested)
        else:  # dollar-quoted body: up to the same tag, or to the end
            tag = match.group()
            closing = text.find(tag, match.end())
            end = length if closing < 0 else closing + len(tag)
            append(_MARK)
        removed += kind != "keep"
        position = end
    append(text[position:])
    return "".join(pieces), removed


# ------------------------------------------------------------------------------------------------ Redis

# command -> how its arguments are shown: "keys" every argument is a name; "key" the first is a name, the rest
# values; "pairs" name value name value...; "fields" a key, then field value pairs; anything else: all hidden.
_KEYS, _KEY, _PAIRS, _FIELDS = "keys", "key", "pairs", "fields"


def _words(text: str) -> list[str]:
    return text.split()


_REDIS_SHAPES: Final[dict[str, str]] = {
    **dict.fromkeys(
        _words(
            "GET DEL UNLINK EXISTS TTL PTTL TYPE INCR DECR PERSIST STRLEN LLEN SCARD ZCARD HLEN HKEYS HVALS "
            "HGETALL SMEMBERS GETDEL DUMP MGET WATCH HGET HMGET HDEL HEXISTS HSTRLEN XLEN SUNION SINTER SDIFF "
            "PFCOUNT KEYS SCAN TOUCH OBJECT LPOP RPOP SPOP"
        ),
        _KEYS,
    ),
    **dict.fromkeys(
        _words(
            "SET SETNX SETEX PSETEX GETSET APPEND INCRBY DECRBY INCRBYFLOAT EXPIRE PEXPIRE EXPIREAT PEXPIREAT "
            "LPUSH RPUSH LPUSHX RPUSHX LREM LSET LINSERT LRANGE LINDEX LTRIM SADD SREM SISMEMBER SMISMEMBER "
            "ZADD ZREM ZSCORE ZINCRBY ZRANGE ZREVRANGE ZRANGEBYSCORE ZRANK ZREVRANK ZCOUNT ZREMRANGEBYSCORE "
            "ZREMRANGEBYRANK GETRANGE SETRANGE GETEX BITCOUNT SETBIT GETBIT PFADD XADD XRANGE XREVRANGE XDEL "
            "XTRIM PUBLISH SPUBLISH RENAME RENAMENX COPY RESTORE HSCAN SSCAN ZSCAN HINCRBY HINCRBYFLOAT"
        ),
        _KEY,
    ),
    **dict.fromkeys(("MSET", "MSETNX"), _PAIRS),
    **dict.fromkeys(("HSET", "HSETNX", "HMSET"), _FIELDS),
}
_NO_ARGUMENTS: Final = frozenset(
    _words("PING MULTI EXEC DISCARD UNWATCH DBSIZE FLUSHDB FLUSHALL INFO TIME QUIT RANDOMKEY LASTSAVE ROLE")
)
_REDIS_CACHE_SIZE: Final = 1024
_redis_cache: dict[tuple[str, ...], str] = {}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def sanitize_redis(args: Sequence[object]) -> str:
    """The Redis CLI form of a command with every value replaced by `?` (names kept, see the table)."""
    try:
        if not args:
            return ""
        command = _text(args[0]).upper()
        first = command.split(" ", 1)[0]
        shape = _REDIS_SHAPES.get(first)
        rest = args[1:]
        if shape is None:
            if first in _NO_ARGUMENTS or not rest:
                return command
            return f"{command} ?"
        if shape == _KEYS:
            names: list[str] = [_text(item) for item in rest]
        elif shape == _KEY:
            names = [_text(rest[0]), *("?" for _ in rest[1:])] if rest else []
        elif shape == _PAIRS:
            names = [_text(item) if index % 2 == 0 else "?" for index, item in enumerate(rest)]
        else:
            names = [_text(item) if index == 0 or index % 2 == 1 else "?" for index, item in enumerate(rest)]
        key = (command, *names)
        cached = _redis_cache.get(key)
        if cached is not None:
            return cached
        text = " ".join(key)
        if len(text) > MAX_LENGTH:
            text = text[:MAX_LENGTH] + " ..."
        remember(_redis_cache, key, text, _REDIS_CACHE_SIZE)
        return text
    except Exception:
        return ERROR_TEXT


# ------------------------------------------------------------------------------------ export-side hook

_STATEMENT_KEYS: Final = (DB_QUERY_TEXT, DB_STATEMENT)
_raw_scopes: set[str] = set()


def allow_raw_text(scope: str) -> None:
    """Let the spans of instrumentation scope `scope` keep their statement text as recorded (the per-library
    opt-out of veil's own instrumentations; see docs/redaction.md for the risk).
    """
    _raw_scopes.add(scope)


def sanitize_span_statements(span: Any) -> tuple[Mapping[str, Any] | None, int]:
    """The span's attributes with db.query.text / db.statement sanitized, and how many literals went.

    Runs on the export thread for every span, whichever instrumentation recorded it (upstream contrib ones
    included), so the guarantee does not depend on the instrumentation. Text that is already sanitized comes
    back unchanged (and is found in the cache). Redis commands are sanitized as commands, not as SQL.
    """
    attributes: Mapping[str, Any] | None = span.attributes
    if not attributes or (DB_QUERY_TEXT not in attributes and DB_STATEMENT not in attributes):
        return attributes, 0
    scope = getattr(span, "instrumentation_scope", None)
    if scope is not None and scope.name in _raw_scopes:
        return attributes, 0
    system = str(attributes.get(DB_SYSTEM_NAME) or attributes.get(DB_SYSTEM) or "")
    changed: dict[str, Any] | None = None
    count = 0
    for key in _STATEMENT_KEYS:
        value = attributes.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            sanitized, removed = ERROR_TEXT, 1  # not a statement text: never pass it on
        elif system == "redis":
            sanitized = "; ".join(sanitize_redis(command.split()) for command in value.split("; "))
            removed = int(sanitized != value)
        else:
            sanitized, removed = sanitized_count(value, system)
        if sanitized != value:
            if changed is None:
                changed = dict(attributes)
            changed[key] = sanitized
            count += max(removed, 1)
    return (attributes, 0) if changed is None else (changed, count)
