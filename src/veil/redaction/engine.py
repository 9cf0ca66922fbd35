"""The redaction engine: one `Redactor`, built once from the configuration, applied to one attribute at a time.

Per attribute the key chooses the treatment (cached per key): a key the user allowed is left alone; HTTP
headers, URLs, query strings and SQL statements get their structural handler; a key that names a secret has its
value replaced whole; everything else is free text, in which URLs are rewritten and value detectors replace
only the sensitive substrings. The same object comes back when nothing is sensitive, and any exception turns
the value into `[REDACTED:error]`: the raw value is never passed on by a failing rule.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.semconv._incubating.attributes.db_attributes import DB_STATEMENT
from opentelemetry.semconv._incubating.attributes.http_attributes import HTTP_TARGET, HTTP_URL
from opentelemetry.semconv._incubating.attributes.url_attributes import URL_ORIGINAL
from opentelemetry.semconv.attributes.db_attributes import DB_QUERY_TEXT
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_HEADER_TEMPLATE,
    HTTP_RESPONSE_HEADER_TEMPLATE,
)
from opentelemetry.semconv.attributes.url_attributes import URL_FRAGMENT, URL_FULL, URL_QUERY

from veil._cache import remember
from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.redaction import sql
from veil.redaction.commands import CommandLineDetector, DatastoreAuthDetector
from veil.redaction.config import RedactionConfig, config_from_settings
from veil.redaction.keys import KeyClassifier, key_words
from veil.redaction.patterns import compile_patterns
from veil.redaction.personal import NUMBER_RUN, PersonalDataDetector, card_number_valid
from veil.redaction.phones import PhoneDetector
from veil.redaction.prose import ProseDetector
from veil.redaction.rules import (
    MIN_PHONE_DIGITS,
    AssignmentDetector,
    Detector,
    Match,
    could_be_credential,
    digit_count,
    is_mask,
)
from veil.redaction.url import (
    REDACTED,
    is_sensitive_header,
    redact_header_value,
    redact_query,
    redact_url,
)
from veil.redaction.vendors import VendorTokenDetector

REDACTION_COUNT_ATTRIBUTE = "veil.redaction.count"
REDACTION_KEYS_ATTRIBUTE = "veil.redaction.keys"
ERROR_MARKER = "[REDACTED:error]"

_MIN_HASH_KEY_BYTES = 16
_HASH_HEX_DIGITS = 16

_HEADER_PREFIXES = (
    HTTP_REQUEST_HEADER_TEMPLATE + ".",
    HTTP_RESPONSE_HEADER_TEMPLATE + ".",
    "rpc.grpc.request.metadata.",
    "rpc.grpc.response.metadata.",
    "rpc.request.metadata.",
    "rpc.response.metadata.",
)
_URL_KEYS = frozenset({URL_FULL, HTTP_URL, URL_ORIGINAL, HTTP_TARGET})
_QUERY_KEYS = frozenset({URL_QUERY, URL_FRAGMENT})
_SQL_KEYS = frozenset({DB_QUERY_TEXT, DB_STATEMENT})
_URL_WORDS = frozenset({"url", "uri", "href", "link", "dsn", "location", "redirect", "referer", "referrer"})
_ID_WORDS = frozenset(
    {"id", "ids", "uuid", "guid", "ts", "timestamp", "time", "epoch", "seq", "sequence", "offset", "nanos"}
)
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{1,30}://[^\s\"'<>\\`]{1,4096}")
_CARD_INT_FLOOR = 10**12
_SHORT_WORD = re.compile(r"[^\s@=:'\"`]{0,19}")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_MIN_TEXT = 5

_ALLOWED, _HEADER, _URL, _QUERY, _SQL, _SECRET, _TEXT = range(7)
_FREE_TEXT: tuple[int, str | None, bool] = (_TEXT, None, False)
_CLEAN_CACHE_MAX_LENGTH = 256
_CLEAN_CACHE_SIZE = 8192
_DISPATCH_CACHE_SIZE = 4096


class Redactor:
    """Removes secrets and personal data from attribute values; thread-safe, rules compiled once."""

    def __init__(self, config: RedactionConfig | None = None) -> None:
        config = config or RedactionConfig()
        if config.email not in ("redact", "hash", "keep"):
            raise ConfigurationError("VEIL_REDACTION_EMAILS", config.email, ("redact", "hash", "keep"))
        if config.sql not in ("sensitive", "all", "off"):
            raise ConfigurationError("VEIL_REDACTION_SQL", config.sql, ("sensitive", "all", "off"))
        if config.mode not in ("mark", "hash"):
            raise ConfigurationError("VEIL_REDACTION_MODE", config.mode, ("mark", "hash"))
        needs_key = config.mode == "hash" or config.email == "hash"
        if needs_key and (config.hash_key is None or len(config.hash_key) < _MIN_HASH_KEY_BYTES):
            raise ConfigurationError(
                "VEIL_REDACTION_HASH_KEY",
                "<hidden>",
                f"a secret of at least {_MIN_HASH_KEY_BYTES} bytes",
                "hash mode (or e-mail policy hash) needs a key",
            )
        self.config = config
        self.enabled = config.enabled
        self._classifier = KeyClassifier(config.extra_sensitive_keys, config.allowed_keys)
        self._params = frozenset(config.sensitive_query_parameters)
        self._vendor = VendorTokenDetector()
        self._assignment = AssignmentDetector(self._classifier)
        self._command_line = CommandLineDetector(self._classifier)
        self._datastore = DatastoreAuthDetector()
        self._phones = PhoneDetector()
        self._prose = ProseDetector()
        self._personal = PersonalDataDetector(emails=config.email != "keep")
        self._extra: tuple[Detector, ...] = (
            *compile_patterns(dict(config.extra_patterns)),
            *config.extra_detectors,
        )
        self._hash_key = config.hash_key if needs_key else None
        self._hash_all = config.mode == "hash"
        self._hash_emails = config.email == "hash"
        self._dispatch: dict[str, tuple[int, str | None, bool]] = {}
        # Short values already found clean, per route: repeated benign values (methods, routes, hosts) are free.
        self._clean: dict[tuple[tuple[int, str | None, bool], str], None] = {}

    @classmethod
    def default(cls) -> Redactor:
        """The built-in rules with default policies (mark mode, e-mails redacted, sensitive SQL literals)."""
        return cls()

    @classmethod
    def from_settings(cls, settings: Any) -> Redactor:
        """A redactor configured from veil's Settings (the `# --- redaction ---` options)."""
        return cls(config_from_settings(settings))

    # ---------------------------------------------------------------------------------------- public API

    def redact(self, key: str | None, value: Any) -> Any:
        """The value with secrets replaced; `value` itself when nothing is sensitive. `key` None: free text."""
        return self.redact_counted(key, value)[0]

    def redact_counted(self, key: str | None, value: Any) -> tuple[Any, int]:
        """`redact`, plus how many secrets were replaced."""
        found: list[str] = []
        try:
            return self._value(key, value, found), len(found)
        except Exception:
            log_once(
                "redaction.rule-error",
                "veil: a redaction rule raised; the value was replaced by %s",
                ERROR_MARKER,
                exc_info=True,
            )
            return ERROR_MARKER, 1

    def findings(self, key: str | None, value: Any) -> list[str]:
        """The categories of the secrets `value` holds (empty when clean); 'error' when a rule raised."""
        found: list[str] = []
        try:
            self._value(key, value, found)
        except Exception:
            return ["error"]
        return found

    def marker(self, category: str, secret: str) -> str:
        """The text that replaces `secret`: `[REDACTED:category]`, or with an HMAC in hash mode."""
        if self._hash_key is not None and (self._hash_all or (category == "email" and self._hash_emails)):
            digest = hmac.new(self._hash_key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
            return f"[REDACTED:{category}:{digest.hexdigest()[:_HASH_HEX_DIGITS]}]"
        return f"[REDACTED:{category}]"

    # ------------------------------------------------------------------------------------------- dispatch

    def _route(self, key: str) -> tuple[int, str | None, bool]:
        route = self._dispatch.get(key)
        if route is not None:
            return route
        words = key_words(key)
        id_like = bool(words) and words[-1] in _ID_WORDS
        if self._classifier.is_allowed(key):
            route = (_ALLOWED, None, False)
        elif key.startswith(_HEADER_PREFIXES):
            route = (_HEADER, _header_name(key), False)
        elif key in _URL_KEYS:
            route = (_URL, None, False)
        elif key in _QUERY_KEYS:
            route = (_QUERY, None, False)
        elif key in _SQL_KEYS:
            route = (_SQL, None, False)
        else:
            category, holds = self._classifier.judge(key)
            if category is not None:
                route = (_SECRET, category, holds)  # the third field: whether the key holds the secret
            elif words and words[-1] in _URL_WORDS:
                route = (_URL, None, False)
            else:
                route = (_TEXT, None, id_like)
        return remember(self._dispatch, key, route, _DISPATCH_CACHE_SIZE)

    def _value(self, key: str | None, value: Any, found: list[str]) -> Any:
        if value is None or isinstance(value, bool):
            return value
        route = self._route(key) if key is not None else _FREE_TEXT
        kind, detail, id_like = route
        if kind == _ALLOWED:
            return value
        if isinstance(value, str):
            if len(value) > _CLEAN_CACHE_MAX_LENGTH or kind == _SECRET:
                return self._string(kind, detail, id_like, value, found)
            entry = (route, value)
            if entry in self._clean:
                return value
            before = len(found)
            redacted = self._string(kind, detail, id_like, value, found)
            if redacted is value and len(found) == before:
                remember(self._clean, entry, None, _CLEAN_CACHE_SIZE)
            return redacted
        if isinstance(value, int):
            if kind == _SECRET and _replaces_number(detail, id_like, value):
                found.append(detail or "secret")
                return self.marker(detail or "secret", str(value))
            if not id_like and abs(value) >= _CARD_INT_FLOOR and card_number_valid(str(abs(value))):
                found.append("payment_card")
                return self.marker("payment_card", str(value))
            return value
        if isinstance(value, float):
            if kind == _SECRET and id_like and detail != "phone":
                found.append(detail or "secret")
                return self.marker(detail or "secret", repr(value))
            return value
        if isinstance(value, (bytes, bytearray)):
            text = bytes(value).decode("latin-1")
            redacted = self._string(kind, detail, id_like, text, found)
            return value if redacted is text else redacted.encode("latin-1", "replace")
        if isinstance(value, Mapping):
            return self._mapping(value, found)
        if isinstance(value, (list, tuple)):
            return self._sequence(key, value, found)
        text = str(value)
        redacted = self._string(kind, detail, id_like, text, found)
        return value if redacted is text else redacted

    def _mapping(self, value: Mapping[Any, Any], found: list[str]) -> Any:
        changed: dict[Any, Any] | None = None
        for inner_key, inner_value in value.items():
            redacted = self._value(str(inner_key), inner_value, found)
            if redacted is not inner_value:
                if changed is None:
                    changed = dict(value)
                changed[inner_key] = redacted
        return value if changed is None else changed

    def _sequence(self, key: str | None, value: Sequence[Any], found: list[str]) -> Any:
        items: list[Any] | None = None
        for index, item in enumerate(value):
            redacted = self._value(key, item, found)
            if redacted is not item:
                if items is None:
                    items = list(value)
                items[index] = redacted
        if items is None:
            return value
        if any(isinstance(item, str) for item in items) and not all(isinstance(item, str) for item in items):
            items = [item if isinstance(item, str) else str(item) for item in items]  # attributes are homogeneous
        return tuple(items) if isinstance(value, tuple) else items

    def _string(self, kind: int, detail: str | None, id_like: bool, value: str, found: list[str]) -> str:
        if kind == _SECRET:
            if is_mask(value):
                return value
            category = detail or "secret"
            if category == "phone" and digit_count(value) < MIN_PHONE_DIGITS:
                return self._text(value, found)
            if category != "phone" and not id_like and not could_be_credential(value):
                return self._text(value, found)  # `password_complexity: high`: a setting, not a secret
            found.append(category)
            return self.marker(category, value)
        if kind == _HEADER and detail is not None and is_sensitive_header(detail):
            redacted = redact_header_value(detail, value, self._header_marker)
            if redacted is not value and redacted != value:
                found.append("authorization")
                return redacted
            return value
        extra: list[Match] = []
        if kind == _URL:
            value = self._counted_url(redact_url(value, self._params), value, found)
        elif kind == _QUERY:
            value = self._counted_url(redact_query(value, self._params), value, found)
        elif kind == _SQL and self.config.sql != "off":
            if self.config.sql == "all":
                value, count = sql.replace_all_literals(value)
                found.extend(["sql_literal"] * count)
            else:
                extra.extend(sql.find_sensitive_literals(value, self._classifier))
        return self._text(value, found, id_like, extra, sql_text=kind == _SQL)

    def _header_marker(self, secret: str) -> str:
        if self._hash_all:
            return self.marker("authorization", secret)
        return "[REDACTED]"

    @staticmethod
    def _counted_url(redacted: str, original: str, found: list[str]) -> str:
        if redacted is not original:
            added = redacted.count(REDACTED) - original.count(REDACTED)
            found.extend(["url_credential"] * max(added, 1))
        return redacted

    # ----------------------------------------------------------------------------------------- free text

    def _text(
        self, text: str, found: list[str], id_like: bool = False, extra: Iterable[Match] = (), sql_text: bool = False
    ) -> str:
        spans = list(extra)
        if len(text) < _MIN_TEXT and not spans:
            return text
        tail = ""
        limit = self.config.max_scan_length
        if len(text) > limit:
            text, tail = text[:limit], "[REDACTED:unscanned]"
            found.append("unscanned")
        # Shorter than any vendor token, and no blank, quote, `@`, `=` or `:`: no key=value pair, command option,
        # sentence, address or URL can be in it; only a number (SSN, phone) is left to check.
        short_word = not spans and not self._extra and _SHORT_WORD.fullmatch(text) is not None
        if short_word and NUMBER_RUN.search(text) is None:
            return text + tail if tail else text
        if "://" in text:
            text = _URL_IN_TEXT.sub(lambda match: self._url_in_text(match, found), text)
        # Shared by the detectors' gates: a lowercase copy of the same length; whether a run of digits long
        # enough for a card, an SSN, an IBAN or a phone number is there at all.
        lowered = text.lower() if text.isascii() else text.translate(_ASCII_LOWER)
        spans.extend(self._vendor.find(text))
        spans.extend(self._assignment.find(text, bind_parameters=sql_text, lowered=lowered))
        spans.extend(self._command_line.find(text))
        spans.extend(self._datastore.find(text, lowered, statement=sql_text))
        if NUMBER_RUN.search(text) is not None:
            digits_only = id_like and text.isdigit()
            spans.extend(PersonalDataDetector.find_numbers(text, cards=not digits_only))
            if not digits_only:
                spans.extend(self._phones.find(text))
        spans.extend(self._personal.find_emails(text))
        spans.extend(self._prose.find(text, lowered))
        for detector in self._extra:
            spans.extend(detector.find(text))
        if not spans:
            return text + tail if tail else text
        return self._replace(text, spans, found) + tail

    def _url_in_text(self, match: re.Match[str], found: list[str]) -> str:
        url = match.group()
        return self._counted_url(redact_url(url, self._params), url, found)

    def _replace(self, text: str, matches: list[Match], found: list[str]) -> str:
        matches.sort(key=lambda match: (match.start, -match.end))
        pieces: list[str] = []
        position = 0
        current: Match | None = None
        current_end = -1
        for match in matches:
            if match.end <= match.start:
                continue
            if current is not None and match.start < current_end:
                current_end = max(current_end, match.end)
                continue
            if current is not None:
                pieces.append(self._wrap(current, text[current.start : current_end]))
                position = current_end
            pieces.append(text[position : match.start])
            current, current_end = match, match.end
            found.append(match.category)
        if current is None:
            return text
        pieces.append(self._wrap(current, text[current.start : current_end]))
        pieces.append(text[current_end:])
        return "".join(pieces)

    def _wrap(self, match: Match, secret: str) -> str:
        marker = self.marker(match.category, secret)
        return f"{match.quote}{marker}{match.quote}" if match.quote else marker


def _replaces_number(category: str | None, holds: bool, value: int) -> bool:
    """A number under a secret's key: a PIN under a key that holds one, a phone number under a phone key."""
    if category == "phone":
        return len(str(abs(value))) >= MIN_PHONE_DIGITS
    return holds


def _header_name(key: str) -> str:
    for prefix in _HEADER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key
