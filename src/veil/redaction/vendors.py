"""Vendor tokens: credentials whose shape alone identifies them (AWS, GitHub, Slack, Stripe, JWT, PEM ...), and
bearer/basic credentials in free text. A cheap gate (a long run of token characters, or a special keyword) comes
before the keyword search, and a pattern runs only when its keyword occurs. Every pattern is linear or bounded.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from veil.redaction.rules import Match, is_placeholder

# (category, keyword, pattern) for credentials whose shape alone identifies them: a distinctive prefix, a fixed alphabet
# and a minimum length, so a match is a secret with near certainty. The keyword (a literal the secret always
# contains) is searched first; a pattern runs only when its keyword occurs.
VENDOR_PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "aws_access_key",
        r"AKIA|ASIA|ABIA|ACCA|A3T",
        r"(?<![A-Za-z0-9])(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z2-7]{16}(?![A-Za-z0-9])",
    ),
    (
        "github_token",
        r"gh[pousr]_",
        r"(?<![A-Za-z0-9_])gh[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9])",
    ),
    (
        "github_token",
        r"github_pat_",
        r"(?<![A-Za-z0-9_])github_pat_[A-Za-z0-9_]{50,255}",
    ),
    (
        "slack_token",
        r"xox[abposre]",
        r"(?<![A-Za-z0-9])xox[abposre](?:\.xox[a-z])?-[A-Za-z0-9-]{10,255}",
    ),
    (
        "slack_token",
        r"xapp-",
        r"(?<![A-Za-z0-9])xapp-\d-[A-Za-z0-9-]{10,255}",
    ),
    (
        "slack_webhook",
        r"hooks\.slack\.com/",
        r"(?<=hooks\.slack\.com/services/)[A-Za-z0-9/_+-]{10,255}",
    ),
    (
        "slack_webhook",
        r"hooks\.slack\.com/",
        r"(?<=hooks\.slack\.com/workflows/)[A-Za-z0-9/_+-]{10,255}",
    ),
    (
        "slack_webhook",
        r"hooks\.slack\.com/",
        r"(?<=hooks\.slack\.com/triggers/)[A-Za-z0-9/_+-]{10,255}",
    ),
    (
        "discord_webhook",
        r"/api/webhooks/",
        r"(?<=discord\.com/api/webhooks/)\d{5,30}/[A-Za-z0-9_-]{20,255}",
    ),
    (
        "discord_webhook",
        r"/api/webhooks/",
        r"(?<=discordapp\.com/api/webhooks/)\d{5,30}/[A-Za-z0-9_-]{20,255}",
    ),
    (
        "stripe_key",
        r"[sr]k_(?:live|test|prod)_",
        r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test|prod)_[A-Za-z0-9]{10,247}",
    ),
    (
        "stripe_key",
        r"whsec_",
        r"(?<![A-Za-z0-9_])whsec_[A-Za-z0-9+/=]{20,255}",
    ),
    (
        "google_api_key",
        r"AIza",
        r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-])",
    ),
    (
        "google_oauth_token",
        r"ya29\.",
        r"(?<![A-Za-z0-9_-])ya29\.[0-9A-Za-z_-]{20,2048}",
    ),
    (
        "google_oauth_secret",
        r"GOCSPX-",
        r"(?<![A-Za-z0-9_-])GOCSPX-[0-9A-Za-z_-]{20,64}",
    ),
    (
        "anthropic_key",
        r"sk-ant-",
        r"(?<![A-Za-z0-9_-])sk-ant-[a-z]{2,10}\d{2}-[A-Za-z0-9_-]{32,255}",
    ),
    (
        "openai_key",
        r"sk-",
        r"(?<![A-Za-z0-9_-])sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{32,255}",
    ),
    (
        "openai_key",
        r"sk-",
        r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}(?![A-Za-z0-9])",
    ),
    (
        "openai_key",
        r"sk-",
        r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9]{48}(?![A-Za-z0-9_-])",
    ),
    (
        "npm_token",
        r"npm_",
        r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])",
    ),
    (
        "pypi_token",
        r"pypi-AgE",
        r"(?<![A-Za-z0-9_-])pypi-AgE[A-Za-z0-9_-]{50,2048}",
    ),
    (
        "sendgrid_key",
        r"SG\.",
        r"(?<![A-Za-z0-9_-])SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{30,64}",
    ),
    (
        "vault_token",
        r"hv[sbr]\.",
        r"(?<![A-Za-z0-9_-])hv[sbr]\.[A-Za-z0-9_-]{24,255}",
    ),
    (
        "huggingface_token",
        r"hf_",
        r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{34,64}(?![A-Za-z0-9])",
    ),
    (
        "digitalocean_token",
        r"do[opr]_v1_",
        r"(?<![A-Za-z0-9_])do[opr]_v1_[a-f0-9]{64}",
    ),
    (
        "shopify_token",
        r"shp(?:at|ca|pa|ss)_",
        r"(?<![A-Za-z0-9_])shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}",
    ),
    (
        "databricks_token",
        r"dapi",
        r"(?<![A-Za-z0-9_])dapi[a-f0-9]{32}(?:-\d)?(?![A-Za-z0-9])",
    ),
    (
        "mailgun_key",
        r"key-",
        r"(?<![A-Za-z0-9_-])key-[a-f0-9]{32}(?![A-Za-z0-9])",
    ),
    (
        "atlassian_token",
        r"ATATT3",
        r"(?<![A-Za-z0-9_-])ATATT3[A-Za-z0-9_=-]{100,255}",
    ),
    (
        "telegram_bot_token",
        r":AA",
        r"(?<!\d)\d{8,10}:AA[A-Za-z0-9_-]{33}(?![A-Za-z0-9_-])",
    ),
    (
        "twilio_key",
        r"SK",
        r"(?<![A-Za-z0-9])SK[0-9a-fA-F]{32}(?![A-Za-z0-9])",
    ),
    (
        "jwt",
        r"eyJ",
        r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,4096}\.eyJ[A-Za-z0-9_-]{8,8192}(?:\.[A-Za-z0-9_-]{0,4096}){1,3}",
    ),
    (
        "gitlab_token",
        r"gl(?:pat|dt|rt|ptt|cbt|imt|soat|ft|agent)-",
        r"(?<![A-Za-z0-9_-])(?:glpat|gldt|glrt|glptt|glcbt|glimt|glsoat|glft|glagent)-[A-Za-z0-9_-]{20,255}",
    ),
    (
        "private_key",
        r"-----BEGIN",
        r"-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----"
        r"[\s\S]*?(?:-----END[ A-Z0-9]{0,30}PRIVATE KEY(?: BLOCK)?-----|\Z)",
    ),
    (
        "private_key",
        r"AGE-SECRET-KEY-1",
        r"(?<![A-Za-z0-9_])AGE-SECRET-KEY-1[0-9A-Z]{58}",
    ),
)

# `Bearer <credential>` / `Basic <credential>` in free text: the scheme is kept, the credential replaced.
_SCHEME_CREDENTIAL = re.compile(
    r"\b(?:[Bb]earer|BEARER|[Bb]asic|BASIC)[ \t]{1,8}([A-Za-z0-9._~+/-]{8,4096}=*)(?![A-Za-z0-9._~+/=-])"
)


def _looks_like_credential(value: str) -> bool:
    """A bearer/basic credential has digits or mixed case; plain words (`Basic authentication`) do not."""
    if any(char.isdigit() for char in value):
        return True
    return len(value) >= 16 and not value.islower() and not value.isupper()


_LONG_RUN = re.compile(r"[A-Za-z0-9_.-]{20,}")
_HEXISH = re.compile(r"[0-9a-fA-F.-]+")
_SPECIAL_KEYWORDS = ("-----BEGIN", "hooks.slack.com", "/api/webhooks/", ":AA")


def _has_candidate(text: str) -> bool:
    """Cheap gate: a long run of token characters that is not just hex (ids, digests), or a special keyword."""
    for match in _LONG_RUN.finditer(text):
        if not _HEXISH.fullmatch(match.group()):
            return True
    return any(keyword in text for keyword in _SPECIAL_KEYWORDS)


class VendorTokenDetector:
    """Credentials with unambiguous shapes (AWS, GitHub, Slack, Stripe, JWT, PEM ...) and bearer credentials."""

    name = "vendor"
    _MIN_LENGTH = 20

    def __init__(self) -> None:
        keywords: dict[str, str] = {}
        self._rules: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
        for category, keyword, pattern in VENDOR_PATTERNS:
            group = keywords.setdefault(keyword, f"k{len(keywords)}")
            self._rules.setdefault(group, []).append((category, re.compile(pattern)))
        self._keywords = re.compile("|".join(f"(?P<{group}>{keyword})" for keyword, group in keywords.items()))

    def find(self, text: str) -> Iterable[Match]:
        if len(text) < self._MIN_LENGTH:
            return ()
        scheme = "earer" in text or "asic" in text or "EARER" in text or "ASIC" in text
        candidate = _has_candidate(text)
        if not scheme and not candidate:
            return ()
        return list(self._find(text, candidate, scheme))

    def _find(self, text: str, candidate: bool, scheme: bool) -> Iterator[Match]:
        if candidate:
            groups = {match.lastgroup for match in self._keywords.finditer(text)}
            for group in groups:
                for category, pattern in self._rules.get(group or "", ()):
                    for match in pattern.finditer(text):
                        yield Match(match.start(), match.end(), category)
        if scheme:
            for match in _SCHEME_CREDENTIAL.finditer(text):
                credential = match.group(1)
                if _looks_like_credential(credential) and not is_placeholder(credential):
                    yield Match(match.start(1), match.end(1), "authorization")
