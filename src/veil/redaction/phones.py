"""Phone numbers in free text: international (E.164) and common national formats.

A candidate is a run of digits, blanks, dots, dashes and parentheses that starts like a phone number (`+`, a
trunk `0`, a parenthesised area code, or a North American area code); a validator then decides by shape:

* `+` and 8 to 15 digits (E.164), in any grouping: `+1 415 555 2671`, `+44 (0)20 7946 0958`, `+14155552671`;
* a national number with a trunk `0`, 9 to 12 digits in groups of at least two: `020 7946 0958`, `06 12 34 56 78`,
  `090-1234-5678`, `(030) 12345678`;
* North American `NXX-NXX-XXXX` with one kind of separator, optionally after `1-` or as `(NXX) NXX-XXXX`;
* Indian mobile numbers `9XXXX XXXXX`.

Dates, times, versions, IP addresses, ISBNs and ids do not pass: they have too few digits, a colon, a year in
front, groups of one digit, or no separator at all. A bare run of digits is never taken for a phone number in
text (it is one under a key that names a phone: `user.phone`, `msisdn`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from veil.redaction.rules import Match

_CANDIDATE = re.compile(
    r"(?:\+|\((?=0?\d{1,4}\))|\d)(?<![\w+/.:#$€£-].)[\d ().-]{6,24}\d(?![\w-]|[.:/]\d)",
)
_GROUPS = re.compile(r"\d+")
_NANP = re.compile(r"(?:1([ .-]))?(?:\(([2-9]\d\d)\)[ ]?|([2-9]\d\d)([ .-]))([2-9]\d\d)([ .-])\d{4}")
_INDIA = re.compile(r"[6-9]\d{4} \d{5}")
_DATE_START = re.compile(r"(?:19|20)\d\d[ ./-]\d")


def _e164(candidate: str) -> bool:
    digits = sum(char.isdigit() for char in candidate)
    if not 8 <= digits <= 15 or ".." in candidate:
        return False
    groups = _GROUPS.findall(candidate)
    # `+1.2.3.4`-like runs of one-digit groups are versions, not numbers
    return sum(len(group) == 1 for group in groups) <= 2


def _national(candidate: str) -> bool:
    groups = _GROUPS.findall(candidate)
    digits = sum(len(group) for group in groups)
    if not 9 <= digits <= 12 or len(groups) < 2:
        return False
    if any(len(group) < 2 for group in groups):
        return False
    return len(groups[0]) <= 5 and len({char for char in candidate if char in " .-"}) <= 2


def is_phone_number(candidate: str) -> bool:
    """Whether a candidate run (see `_CANDIDATE`) has the shape of a phone number."""
    candidate = candidate.strip()
    if candidate.count("(") != candidate.count(")"):
        return False
    if candidate.startswith("+"):
        return _e164(candidate)
    if candidate.startswith("00") and candidate[2:3] not in ("", "0"):
        return _e164(candidate[2:])  # 0049 30 ...: the international prefix dialled
    if _DATE_START.match(candidate):
        return False
    if candidate.startswith(("0", "(0")):
        return _national(candidate)
    match = _NANP.fullmatch(candidate)
    if match is not None:
        separators = {match.group(1), match.group(4), match.group(6)} - {None}
        return len(separators) == 1 or (match.group(2) is not None and match.group(6) in "-. ")
    return _INDIA.fullmatch(candidate) is not None


class PhoneDetector:
    """Phone numbers in free text, JSON, SQL literals and log lines."""

    name = "phone"

    def find(self, text: str) -> Iterator[Match]:
        for match in _CANDIDATE.finditer(text):
            candidate = match.group()
            end = match.end()
            while candidate and candidate[-1] in " .-(":
                candidate, end = candidate[:-1], end - 1
            if is_phone_number(candidate):
                yield Match(match.start(), end, "phone")
