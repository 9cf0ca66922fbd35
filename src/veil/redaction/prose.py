"""Credentials quoted in a human sentence, with no key/value syntax around them.

`my api key is <key>`, `use token <token>`, `the new password is <pw>`, `your verification code is 482913`: a
credential word, at most a few linking words (`is`, `was`, `is now`, `set to`, `:`), then one candidate. The
candidate is replaced only when it looks like a credential, so the sentences that mention credentials without
holding one stay (`the token is invalid`, `password is too short`, `token count is 128`, `cache key is
user:123`, `idempotency key is <uuid>`):

* after key, token, secret or credential: 12+ characters with letters and digits (or mixed case from 16),
  not a path and not made of plain words;
* after password, passphrase or pwd: 6+ characters with a digit, a symbol or mixed case, or 6+ digits;
* after pin, passcode, OTP, one-time / verification / security code: 4 to 10 digits.

A qualifier before the word that names something other than a credential (cache, primary, foreign, routing,
partition, idempotency, public, page ... key or token) turns the rule off.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from veil.redaction.rules import Match

_PROSE = re.compile(
    r"""
    (?<![\w-])
    (?P<word>api[ _-]?key|access[ _-]?key|secret[ _-]?key|private[ _-]?key|key|token|secret|credential
        |password|passwd|passphrase|pwd|pin|passcode|otp|one[ -]time[ ](?:pass)?code|verification[ ]code
        |security[ ]code|one[ -]time[ ]password)
    (?![\w-])
    (?P<link>(?:[ \t]{1,3}(?:is|was|are|now|to|set[ ]to|changed[ ]to|reset[ ]to|has[ ]been[ ]reset[ ]to
        |will[ ]be|should[ ]be|here|below|of|for[ ]you|for(?:[ ][\w.-]{1,24}){1,4}[ ]is)(?![\w-])|[ \t]{0,3}[:=])){0,3}
    [ \t]{1,3}(?P<quote>[`'"]?)
    (?P<value>[a-z0-9][a-z0-9_+/=.!@#$%^&*~-]{3,255})
    """,
    re.VERBOSE,
)
_QUALIFIER_WORDS = (
    "cache primary foreign partition sort routing idempotency public object s3 page next continuation registry "
    "hot unique composite lookup bucket map dict hash cursor request sharding shard row join index api-id "
    "input output max total prompt completion session license ssh gpg pgp"
)
_QUALIFIERS = frozenset(_QUALIFIER_WORDS.split())
_CODE_WORDS = ("pin", "passcode", "otp", "one", "verification", "security")
_PASSWORD_WORDS = ("password", "passwd", "passphrase", "pwd")
_PATH = re.compile(r"[\w.-]*/[\w./-]*\.\w{1,5}|(?:[a-z0-9_.-]+/){2,}[a-z0-9_.-]*")
_WORDS_ONLY = re.compile(r"[A-Za-z]+(?:[_.-][A-Za-z]+)*")


def _entropy_like(value: str) -> bool:
    letters = any(char.isalpha() for char in value)
    digits = any(char.isdigit() for char in value)
    mixed = any(char.islower() for char in value) and any(char.isupper() for char in value)
    if letters and digits:
        return True
    return mixed and len(value) >= 16 and not _WORDS_ONLY.fullmatch(value)


def credential_like(word: str, value: str) -> bool:
    """Whether `value`, following the credential word `word` in a sentence, looks like the credential itself."""
    value = value.rstrip(".,;:!?)")
    lowered = word.lower()
    if lowered.startswith(_CODE_WORDS):
        return value.isdigit() and 4 <= len(value) <= 10
    if lowered.startswith(_PASSWORD_WORDS):
        if len(value) < 6 or _WORDS_ONLY.fullmatch(value):
            return False
        return value.isdigit() or any(not char.isalnum() for char in value) or _entropy_like(value)
    if len(value) < 12 or _PATH.fullmatch(value) or _WORDS_ONLY.fullmatch(value):
        return False
    return _entropy_like(value)


def _qualified(text: str, start: int) -> bool:
    """Whether the word before position `start` names a non-credential kind of key or token."""
    before = text[max(0, start - 24) : start].rstrip().rsplit(None, 1)
    return bool(before) and before[-1].lower() in _QUALIFIERS


class ProseDetector:
    """Credentials quoted in sentences: `my key is ...`, `use token ...`, `the password is ...`."""

    name = "prose"

    def find(self, text: str, lowered: str | None = None) -> Iterable[Match]:
        """`lowered`: the text in lower case, same length (the pattern runs on it; values come from `text`)."""
        if lowered is None or len(lowered) != len(text):
            lowered = text.lower()
            if len(lowered) != len(text):
                return ()
        if not (
            "key" in lowered
            or "token" in lowered
            or "pass" in lowered
            or "secret" in lowered
            or "credential" in lowered
            or "pwd" in lowered
            or "pin" in lowered
            or "otp" in lowered
            or "code" in lowered
        ):
            return ()  # every credential word holds one of these
        return list(self._find(text, lowered))

    def _find(self, text: str, lowered: str) -> Iterator[Match]:
        for match in _PROSE.finditer(lowered):
            word = match.group("word")
            value = text[match.start("value") : match.end("value")]
            quote = match.group("quote")
            end = match.end("value")
            if quote:
                closing = text.find(quote, match.start("value"), match.start("value") + 257)
                if closing < 0:
                    continue
                end, value = closing, text[match.start("value") : closing]
            else:
                trimmed = value.rstrip(".,;:!?)")
                end -= len(value) - len(trimmed)
                value = trimmed
            if _qualified(text, match.start("word")) or not credential_like(word, value):
                continue
            yield Match(match.start("value"), end, "secret" if not word.lower().startswith("pass") else "password")
