"""Personal data with a checkable shape: payment cards (brand + Luhn), IBANs (mod-97), US SSNs (issuance rules)
and e-mail addresses.

Each shape is confirmed by its validator before it becomes a finding, so numbers that only look like one
(timestamps, ids, numbers failing their checksum) stay.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from veil.redaction.rules import Match, is_mask

# Every number-shaped category (card, SSN, IBAN, phone) has a run of at least seven digits, blanks, dots,
# dashes, slashes or parentheses that starts and ends with a digit: a text without one skips them all.
NUMBER_RUN = re.compile(r"\d[\d .()/-]{5,}\d")


# Number patterns start with their first character and check the one before it afterwards (`\d(?<!X.)`): a
# leading lookbehind would run at every position, a leading class lets the engine skip to candidates.
_CARD = re.compile(r"\d(?<![A-Za-z0-9_.+\-].)(?:[ -]?\d){11,18}(?![A-Za-z0-9_]|[.:]\d|-\d)")
_CARD_GROUPINGS = ((4, 4, 4, 4), (4, 6, 5), (4, 6, 4), (4, 4, 4, 4, 3), (4, 4, 4, 4, 2), (4, 4, 4, 1), (4, 4, 4, 4, 1))


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) checksum every payment card number carries."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        if index % 2:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


def card_brand_plausible(digits: str) -> bool:
    """Whether the issuer prefix (IIN) and length belong to a real card scheme."""
    length = len(digits)
    first = digits[0]
    two = int(digits[:2])
    four = int(digits[:4])
    if first == "4":
        return length in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return length == 16
    if two in (34, 37):
        return length == 15
    if 2200 <= four <= 2204:
        return length == 16
    if four == 6011 or two == 65 or 644 <= int(digits[:3]) <= 649 or two == 62:
        return 16 <= length <= 19
    if 3528 <= four <= 3589:
        return 16 <= length <= 19
    if 300 <= int(digits[:3]) <= 305 or two in (36, 38, 39):
        return 14 <= length <= 19
    if two == 50 or 56 <= two <= 69:
        return 16 <= length <= 19  # Maestro; 13-15 digit Maestro numbers are rare and collide with IMEIs
    return False


def card_number_valid(candidate: str) -> bool:
    """A card number: plausible brand and length, Luhn, consistent grouping, not one repeated digit."""
    separators = {char for char in candidate if char in " -"}
    if len(separators) > 1:
        return False
    if separators:
        groups = tuple(len(part) for part in re.split(r"[ -]", candidate))
        if groups not in _CARD_GROUPINGS:
            return False
    digits = candidate.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    return card_brand_plausible(digits) and luhn_valid(digits)


_SSN = re.compile(r"(\d(?<![A-Za-z0-9_.\-].)\d\d)([- ])(\d{2})\2(\d{4})(?![A-Za-z0-9_]|[.\-/:]\d)")


def ssn_valid(area: str, group: str, serial: str) -> bool:
    """US SSN issuance rules: area not 000, 666 or 900-999; group not 00; serial not 0000."""
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _items(text: str) -> list[str]:
    return text.split()


IBAN_LENGTHS: dict[str, int] = {
    code: int(length)
    for code, length in (
        item.split(":")
        for item in _items(
            """
        AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 CY:28 CZ:24 DE:22 DK:18
        DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 IE:22 IL:23
        IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 ME:22 MK:19 MR:27
        MT:31 MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 SE:24 SI:19 SK:24 SM:27
        ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20
        """
        )
    )
}
_IBAN = re.compile(
    r"[A-Z](?<![A-Za-z0-9_].)[A-Z]\d{2}(?:[A-Z0-9]{11,30}|(?: [A-Z0-9]{4}){2,7}(?: [A-Z0-9]{1,3})?)(?![A-Za-z0-9_])"
)


def iban_valid(candidate: str) -> bool:
    """Country-specific length and the ISO 13616 mod-97 check."""
    compact = candidate.replace(" ", "")
    if IBAN_LENGTHS.get(compact[:2]) != len(compact):
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(char, 36)) for char in rearranged)
    return int(number) % 97 == 1


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,63})@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,8}[A-Za-z]{2,24}(?![A-Za-z0-9_-])"
)
# `redacted` is the URL marker left in userinfo (`https://REDACTED:REDACTED@host/`): an already-masked value.
_NOT_PERSONAL_LOCAL_PARTS = frozenset({"git", "noreply", "no-reply", "donotreply", "do-not-reply", "redacted"})


class PersonalDataDetector:
    """Payment cards (brand + Luhn), IBANs (mod-97), US SSNs (issuance rules) and, by policy, e-mail addresses."""

    name = "personal"

    def __init__(self, emails: bool) -> None:
        self._emails = emails

    def find(self, text: str) -> Iterator[Match]:
        if NUMBER_RUN.search(text) is not None:
            yield from self.find_numbers(text, cards=True)
        yield from self.find_emails(text)

    def find_emails(self, text: str) -> Iterable[Match]:
        """E-mail addresses (nothing when the policy keeps them)."""
        if not self._emails or "@" not in text:
            return ()
        return list(self._find_emails(text))

    def _find_emails(self, text: str) -> Iterator[Match]:
        for match in _EMAIL.finditer(text):
            local = match.group().split("@", 1)[0].lower()
            if local not in _NOT_PERSONAL_LOCAL_PARTS and not is_mask(local):
                yield Match(match.start(), match.end(), "email")

    @staticmethod
    def find_numbers(text: str, cards: bool) -> Iterator[Match]:
        """Cards, SSNs and IBANs; callers skip texts where NUMBER_RUN finds nothing."""
        if cards:
            for match in _CARD.finditer(text):
                if card_number_valid(match.group()):
                    yield Match(match.start(), match.end(), "payment_card")
        for match in _SSN.finditer(text):
            if ssn_valid(match.group(1), match.group(3), match.group(4)):
                yield Match(match.start(), match.end(), "us_ssn")
        for match in _IBAN.finditer(text):
            start = match.start()
            if (start == 0 or not _is_word_char(text[start - 1])) and iban_valid(match.group()):
                yield Match(start, match.end(), "iban")


def _is_word_char(char: str) -> bool:
    return char.isalnum() or char == "_"
