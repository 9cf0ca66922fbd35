"""Fake credentials of every category, built at run time so no token-shaped literal sits in the repository."""

from __future__ import annotations

import random
import string

ALNUM = string.ascii_letters + string.digits
UPPER32 = string.ascii_uppercase + "234567"


def _pick(rng: random.Random, alphabet: str, size: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(size))


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        candidate = body + check
        total = 0
        for index, char in enumerate(reversed(candidate)):
            digit = int(char)
            if index % 2:
                digit = digit * 2 - 9 if digit > 4 else digit * 2
            total += digit
        if total % 10 == 0:
            return candidate
    raise AssertionError("unreachable")


def iban(rng: random.Random, country: str = "DE", length: int = 22) -> str:
    bban = "".join(rng.choice(string.digits) for _ in range(length - 4))
    numeric = "".join(str(int(char, 36)) for char in bban + country + "00")
    check = 98 - int(numeric) % 97
    return f"{country}{check:02d}{bban}"


def ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def make(category: str, rng: random.Random) -> str:
    """One fake secret of `category` (the category names the engine reports)."""
    if category == "aws_access_key":
        return "AKIA" + _pick(rng, UPPER32, 16)
    if category == "github_token":
        return "gh" + rng.choice("pousr") + "_" + _pick(rng, ALNUM, 36)
    if category == "gitlab_token":
        return "glpat" + "-" + _pick(rng, ALNUM, 20)
    if category == "slack_token":
        return "xox" + "b-" + "".join(rng.choice(string.digits) for _ in range(12)) + "-" + _pick(rng, ALNUM, 24)
    if category == "stripe_key":
        return "sk" + "_live_" + _pick(rng, ALNUM, 24)
    if category == "google_api_key":
        return "AI" + "za" + _pick(rng, ALNUM + "_-", 35)
    if category == "openai_key":
        return "sk-" + "proj-" + _pick(rng, ALNUM, 48)
    if category == "anthropic_key":
        return "sk-" + "ant-api03-" + _pick(rng, ALNUM, 90)
    if category == "npm_token":
        return "npm" + "_" + _pick(rng, ALNUM, 36)
    if category == "pypi_token":
        return "pypi-" + "AgEIcHlwaS5vcmc" + _pick(rng, ALNUM, 60)
    if category == "jwt":
        return "eyJ" + _pick(rng, ALNUM, 20) + ".eyJ" + _pick(rng, ALNUM, 40) + "." + _pick(rng, ALNUM, 30)
    if category == "private_key":
        body = "\n".join(_pick(rng, ALNUM + "+/", 64) for _ in range(4))
        return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"
    if category == "payment_card":
        prefix, length = rng.choice([("4", 16), ("51", 16), ("37", 15), ("6011", 16), ("4", 19)])
        return luhn_complete(prefix, length, rng)
    if category == "iban":
        return iban(rng)
    if category == "us_ssn":
        return ssn(rng)
    if category == "email":
        return _pick(rng, string.ascii_lowercase, 8) + "@" + _pick(rng, string.ascii_lowercase, 6) + ".com"
    raise KeyError(category)


VALUE_CATEGORIES = (
    "aws_access_key",
    "github_token",
    "gitlab_token",
    "slack_token",
    "stripe_key",
    "google_api_key",
    "openai_key",
    "anthropic_key",
    "npm_token",
    "pypi_token",
    "jwt",
    "private_key",
    "payment_card",
    "iban",
    "us_ssn",
    "email",
)
