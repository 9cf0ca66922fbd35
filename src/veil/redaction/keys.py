"""Deciding from an attribute's key alone whether its value is a secret.

Keys are split into words (on punctuation, camelCase and digits) and judged word by word, never by substring:
`password` and `client_secret` are secrets, `author`, `secretary`, `max_tokens`, `oauth_provider` and
`browserSessionId` are not. A key whose last word says it describes the secret rather than holds it
(`password_policy`, `token_count`, `api_key_id`, `secret_name`) is never a secret.

Decisions are cached per key: keys are low-cardinality, so classification costs one dict lookup after the
first time a key is seen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from veil._cache import remember


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that, found anywhere in the key, make its value a secret.  Value: the category named in the marker.
SECRET_WORDS: dict[str, str] = {
    "password": "password",
    "passwd": "password",
    "passphrase": "password",
    "pwd": "password",
    "secret": "secret",
    "secrets": "secret",
    "clientsecret": "secret",
    "credential": "credential",
    "credentials": "credential",
    "creds": "credential",
    "apikey": "api_key",
    "privatekey": "private_key",
    "secretkey": "secret_key",
    "accesskey": "secret_key",
    "accesstoken": "token",
    "refreshtoken": "token",
    "authtoken": "token",
    "idtoken": "token",
    "sessiontoken": "token",
    "csrftoken": "token",
    "xsrftoken": "token",
    "sessionid": "session",
    "sessionkey": "session",
    "authorization": "authorization",
    "bearer": "authorization",
    "jwt": "token",
    "ssn": "us_ssn",
    "cvv": "payment_card",
    "cvc": "payment_card",
}

# Words that are secrets only as the key's last word (`db_pass`, `basic_auth`, `flask_session`, `cookie`).
SECRET_LAST_WORDS: dict[str, str] = {
    "pass": "password",
    "auth": "authorization",
    "session": "session",
    "cookie": "session",
    "cookies": "session",
    "signature": "signature",
    "token": "token",
}

# Adjacent word pairs that make a key a secret wherever they occur.
SECRET_BIGRAMS: dict[tuple[str, str], str] = {
    ("api", "key"): "api_key",
    ("subscription", "key"): "api_key",
    ("function", "key"): "api_key",
    ("functions", "key"): "api_key",
    ("admin", "key"): "api_key",
    ("service", "key"): "api_key",
    ("license", "key"): "api_key",
    ("private", "key"): "private_key",
    ("signing", "key"): "private_key",
    ("encryption", "key"): "secret_key",
    ("hmac", "key"): "secret_key",
    ("master", "key"): "secret_key",
    ("access", "key"): "secret_key",
    ("secret", "key"): "secret_key",
    ("account", "key"): "secret_key",
    ("storage", "key"): "secret_key",
    ("shared", "key"): "secret_key",
    ("session", "key"): "session",
    ("session", "cookie"): "session",
    ("auth", "key"): "authorization",
    ("auth", "header"): "authorization",
    ("auth", "string"): "authorization",
    ("auth", "value"): "authorization",
    ("card", "number"): "payment_card",
    ("card", "num"): "payment_card",
    ("cc", "number"): "payment_card",
    ("credit", "card"): "payment_card",
    ("security", "code"): "payment_card",
    ("security", "answer"): "password",
    ("social", "security"): "us_ssn",
}

# A key ending in one of these words describes a secret (its policy, size, name, id ...) rather than holding one.
METADATA_SUFFIXES: frozenset[str] = _word_set(
    """
    count counts tokens max min type types kind name names id ids uuid policy policies strength length len size
    expires expiry expiration expired ttl age at on path paths file filename dir directory algorithm alg algo
    issuer provider providers method methods mode enabled disabled required optional version versions scope
    scopes source region alias hint requested verified brand last4 bin url uri urls endpoint endpoints field
    fields label labels format prefix suffix changed updated reset rotation rotated created valid invalid error
    errors status state manager service env location ref reference arn fingerprint present exists missing
    configured used ok success failed failure attempts retries usage limit limits rate quota timeout duration
    header headers hint hints template pattern rule rules strategy backend store lifetime budget remaining
    total index stdin fd prompt cmd command
    """
)

# Words that, anywhere in a key, say its value is a masked or partial fragment of a secret (`card_last4`,
# `masked_pan`, `ssn_last_four`, `card.bin`): kept, since the fragment alone identifies nothing. Digits are
# dropped from keys, so `last4` reads `last` and `first6` reads `first`.
FRAGMENT_WORDS: frozenset[str] = _word_set("last first masked mask truncated partial redacted obfuscated bin iin")

# Words naming a phone number: the value is replaced when it holds a number (at least 7 digits).
PHONE_WORDS: frozenset[str] = _word_set("phone phones telephone mobile msisdn fax cellphone tel whatsapp")

# Last words that make a key hold the secret its earlier words name (`password_value`, `secret_text`).
_HOLDING_LAST_WORDS: frozenset[str] = _word_set(
    "value val text str string plain plaintext raw data b64 base64 hex encoded input key token"
)

# Words that, right before `token`, name a harmless token (pagination, LLM accounting, lexers ...).
BENIGN_TOKEN_QUALIFIERS: frozenset[str] = _word_set(
    """
    page next prev previous continuation pagination sync cancel cancellation resume cursor idempotency request
    input output prompt completion total max min cached cache reasoning num first last special eos bos pad unk
    stop start end lexer parse parser csv
    """
)

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+")
_CACHE_LIMIT = 4096


def key_words(key: str) -> tuple[str, ...]:
    """Split a key into lowercase words: `browserSessionId` → (browser, session, id); digits are dropped."""
    return tuple(word.lower() for word in _WORD.findall(key))


def classify_words(words: tuple[str, ...]) -> str | None:
    """The secret category a key made of `words` denotes, or None when its value is not a secret by name."""
    return judge_words(words)[0]


def judge_words(words: tuple[str, ...]) -> tuple[str | None, bool]:
    """(category, holds): the category of secret the key names, and whether the key *holds* it.

    A key holds its secret when the secret's word or word pair ends the key (`db_password`, `api_key`,
    `password_value`); a key that only mentions it (`password_history`, `secret_scanning`, `jwt_leeway_seconds`)
    may hold a setting instead, and its value is replaced only when it could be a credential itself.
    """
    if not words or words[-1] in METADATA_SUFFIXES or not FRAGMENT_WORDS.isdisjoint(words):
        return None, False
    last_index = len(words) - 1
    for index, word in enumerate(words):
        category = SECRET_WORDS.get(word)
        if category is None and word.endswith(("password", "passwd")):
            category = "password"  # PGPASSWORD, MYSQLPASSWORD: one word
        if category is not None:
            return category, index == last_index or words[-1] in _HOLDING_LAST_WORDS
        if index < last_index:
            category = SECRET_BIGRAMS.get((word, words[index + 1]))
            if category is not None:
                return category, index + 1 == last_index or words[-1] in _HOLDING_LAST_WORDS
    if not PHONE_WORDS.isdisjoint(words):
        return "phone", True
    return _last_word_category(words), True


def _last_word_category(words: tuple[str, ...]) -> str | None:
    last_index = len(words) - 1
    last = words[-1]
    category = SECRET_LAST_WORDS.get(last)
    if category is None:
        return None
    if last == "token" and last_index > 0 and words[-2] in BENIGN_TOKEN_QUALIFIERS:
        return None
    return category


class KeyClassifier:
    """Classifies attribute keys by name, with the user's extra sensitive keys and allowed keys; cached."""

    __slots__ = ("_allowed_exact", "_allowed_prefixes", "_cache", "_extra")

    def __init__(self, extra_sensitive_keys: Iterable[str] = (), allowed_keys: Iterable[str] = ()) -> None:
        self._extra: tuple[tuple[str, ...], ...] = tuple(
            words for words in (key_words(entry) for entry in extra_sensitive_keys) if words
        )
        allowed = [entry.strip().lower() for entry in allowed_keys if entry.strip()]
        self._allowed_exact = frozenset(entry for entry in allowed if not entry.endswith("*"))
        self._allowed_prefixes = tuple(entry[:-1] for entry in allowed if entry.endswith("*"))
        self._cache: dict[str, tuple[str | None, bool]] = {}

    def stems(self) -> tuple[str, ...]:
        """Lowercase substrings of which every secret key contains at least one (a prefilter for free text)."""
        words = set(SECRET_WORDS) | set(SECRET_LAST_WORDS) | {first for first, _ in SECRET_BIGRAMS} | PHONE_WORDS
        words |= {word for entry in self._extra for word in entry}
        minimal = {word for word in words if not any(other != word and other in word for other in words)}
        return tuple(sorted(minimal))

    def is_allowed(self, key: str) -> bool:
        """Whether the user listed `key` (exactly, case-insensitively, or by a `prefix*` entry) as never redacted."""
        lowered = key.lower()
        return lowered in self._allowed_exact or lowered.startswith(self._allowed_prefixes)

    def classify(self, key: str) -> str | None:
        """The category of secret `key` names, or None."""
        return self.judge(key)[0]

    def judge(self, key: str) -> tuple[str | None, bool]:
        """(category, holds) for `key`: see `judge_words`; user keys always hold."""
        try:
            return self._cache[key]
        except KeyError:
            pass
        words = key_words(key)
        decision = judge_words(words)
        if decision[0] is None and self._extra:
            category = self._classify_extra(words)
            decision = (category, category is not None)
        return remember(self._cache, key, decision, _CACHE_LIMIT)

    def _classify_extra(self, words: tuple[str, ...]) -> str | None:
        for entry in self._extra:
            if words == entry:
                return "sensitive_key"
            if words and words[-1] in METADATA_SUFFIXES:
                continue
            size = len(entry)
            for start in range(len(words) - size + 1):
                if words[start : start + size] == entry:
                    return "sensitive_key"
        return None
