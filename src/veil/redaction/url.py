"""URL and header redaction at the source, cheap enough for the request thread.

`redact_url` replaces URL credentials (`https://REDACTED:REDACTED@host/`) and the values of sensitive query and
fragment parameters (`?color=blue&sig=REDACTED`) as the HTTP semantic conventions ask; every other byte of the
URL is kept, blank parameters included, and the very same string object is returned when nothing is sensitive.

Parameter names compare case-insensitively, after percent-decoding, with `-` and `_` treated alike, and a
bracketed name (`user[password]`) is judged by its innermost part; this is stricter than the conventions'
case-sensitive match on purpose (`SIGNATURE`, `Access-Token` are as secret as their canonical spellings).

`redact_header_value` does the same for captured HTTP headers: sensitive headers lose their value but keep
their shape (`Bearer [REDACTED]`, cookie names, Set-Cookie attributes).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import unquote

from veil._cache import remember
from veil.redaction.keys import classify_words, judge_words, key_words

REDACTED = "REDACTED"
HEADER_MARKER = "[REDACTED]"

DEFAULT_SENSITIVE_QUERY_PARAMETERS: frozenset[str] = frozenset(
    {
        # The semantic conventions' list.
        "AWSAccessKeyId",
        "Signature",
        "sig",
        "X-Goog-Signature",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        # veil's additions: credentials commonly passed in query strings and OAuth fragments.
        "X-Goog-Credential",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "session_token",
        "client_secret",
        "client_assertion",
        "api_key",
        "apikey",
        "x-api-key",
        "password",
        "passwd",
        "pwd",
        "pass",
        "secret",
        "auth",
        "authorization",
        "jwt",
        "session",
        "sessionid",
        "private_key",
        "SAMLResponse",
        "sv_signature",
    }
)

# One-time credentials in query strings and fragments (OAuth/OIDC codes, PKCE verifiers, OTPs, CAS tickets,
# device-flow codes), always sensitive in URLs though harmless as attribute keys (`error.code`). Parameters whose
# name holds a secret by the key rules (`reset_token`, `magic_token`, `invite_token`) are sensitive too;
# `state`, `code_challenge`, `nonce` and pagination are not.
ONE_TIME_PARAMETERS: frozenset[str] = frozenset(
    {
        "code",
        "code_verifier",
        "otp",
        "totp",
        "hotp",
        "passcode",
        "one_time_password",
        "onetimepassword",
        "ticket",
        "magic",
        "magic_link",
    }
)
# `<qualifier>_code` is a one-time code (`mfa_code`, `user_code`); `promo_code`, `zip_code`, `error_code` are not.
_CODE_QUALIFIER_WORDS = (
    "auth authorization verification verify confirmation confirm otp mfa login magic device user recovery "
    "backup activation activate invite reset access security sms email pass one time signin"
)
_CODE_QUALIFIERS = frozenset(_CODE_QUALIFIER_WORDS.split())
# In a URL whose path is a password-reset, magic-link or confirmation page, these short names carry the token.
_LINK_PARAMETERS = frozenset({"key", "k", "t", "hash", "h"})
_LINK_PATH_WORDS = ("reset", "password", "magic", "verify", "confirm", "activat", "invite", "login", "signin")

SENSITIVE_HEADERS: frozenset[str] = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-refresh-token",
        "x-session-token",
        "x-csrf-token",
        "x-xsrf-token",
        "private-token",
        "job-token",
        "deploy-token",
        "x-vault-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "x-goog-iap-jwt-assertion",
        "dd-api-key",
        "dd-application-key",
        "x-honeycomb-team",
        "x-functions-key",
        "ocp-apim-subscription-key",
        "x-shopify-access-token",
        "x-hub-signature",
        "x-hub-signature-256",
        "stripe-signature",
        "x-slack-signature",
        "x-twilio-signature",
        "x-figma-token",
        "x-github-token",
        "x-gitlab-token",
        "x-npm-token",
        "x-openai-api-key",
        "x-anthropic-api-key",
        "anthropic-api-key",
    }
)

# Headers that are never sensitive even though a word in their name looks like one.
_SAFE_HEADERS: frozenset[str] = frozenset(
    {"www-authenticate", "proxy-authenticate", "authentication-info", "x-request-id", "traceparent", "tracestate"}
)
_AUTH_HEADERS = frozenset({"authorization", "proxy-authorization"})
_AUTH_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*")

_normalized_sets: dict[frozenset[str], frozenset[str]] = {}
_parameter_decisions: dict[str, bool] = {}
_benign_parameters: set[str] = set()
_header_decisions: dict[str, bool] = {}
_CACHE_LIMIT = 1024


def normalize_parameter_name(name: str) -> str:
    """The form parameter names are compared in: percent-decoded, innermost bracket part, lowercase, `-`→`_`."""
    if "%" in name:
        name = unquote(name)
    if name.endswith("]"):
        start = name.rfind("[")
        if start >= 0:
            name = name[start + 1 : -1]
    name = name.strip().lower()
    if "-" in name:
        name = name.replace("-", "_")
    return name


def _normalized(params: frozenset[str]) -> frozenset[str]:
    normalized = _normalized_sets.get(params)
    if normalized is None:
        normalized = frozenset(normalize_parameter_name(name) for name in params)
        remember(_normalized_sets, params, normalized, _CACHE_LIMIT)
    return normalized


def _secret_parameter(normalized: str) -> bool:
    """Whether a parameter name (normalized) carries a one-time credential or names a secret by the key rules."""
    decision = _parameter_decisions.get(normalized)
    if decision is None:
        words = key_words(normalized)
        category, holds = judge_words(words)
        decision = normalized in ONE_TIME_PARAMETERS or (category is not None and holds)
        if not decision and len(words) > 1 and words[-1] == "code":
            decision = not _CODE_QUALIFIERS.isdisjoint(words[:-1])
        remember(_parameter_decisions, normalized, decision, _CACHE_LIMIT)
    return decision


def _link_page(path: str) -> bool:
    lowered = path.lower()
    return any(word in lowered for word in _LINK_PATH_WORDS)


def _is_mask(value: str) -> bool:
    from veil.redaction.rules import is_mask  # rules imports keys only; imported late to keep this module light

    return is_mask(unquote(value) if "%" in value else value)


def _redact_pairs(text: str, names: frozenset[str], replacement: str, path: str = "") -> str:
    """Replace the value of every `name=value` pair in an `&`-separated text whose name is in `names`, names a
    one-time credential or a secret; values already masked by another tool (`***`) are kept. `path`: the URL's
    path, which makes `key`, `t`, `hash` ... sensitive on reset, magic-link and confirmation pages."""
    parts = text.split("&")
    changed = False
    for index, part in enumerate(parts):
        equals = part.find("=")
        if equals <= 0 or equals == len(part) - 1:
            continue  # no name, no value, or a blank value: nothing to hide
        name = part[:equals]
        lowered = name.lower()
        if lowered not in names:
            if lowered in _benign_parameters:
                continue  # decided before: the common case costs one set lookup, as before one-time codes
            normalized = (
                normalize_parameter_name(name)
                if ("%" in name or "-" in name or "]" in name or " " in name)
                else lowered
            )
            secret = _parameter_decisions.get(normalized)  # the cached decision, inline: this runs per request
            if secret is None:
                secret = _secret_parameter(normalized)
            if not secret and normalized not in names:
                if normalized not in _LINK_PARAMETERS:
                    if normalized is lowered and len(_benign_parameters) < _CACHE_LIMIT:
                        _benign_parameters.add(lowered)
                    continue
                if not _link_page(path):
                    continue
        value = part[equals + 1 :]
        if value == replacement or _is_mask(value):
            continue
        parts[index] = f"{name}={replacement}"
        changed = True
    return "&".join(parts) if changed else text


def redact_query(query: str, sensitive_params: frozenset[str]) -> str:
    """Redact the values of `sensitive_params` in a query string (with or without its leading `?`).

    Returns `query` itself when nothing changed.
    """
    if "=" not in query:
        return query
    return _redact_pairs(query, _normalized(sensitive_params), REDACTED)


def _authority_start(url: str) -> int:
    """Index where the authority of an absolute or scheme-relative URL starts, or -1."""
    if url.startswith("//"):
        return 2
    separator = url.find("://")
    if separator <= 0:
        return -1
    scheme = url[:separator]
    if not (scheme[0].isascii() and scheme[0].isalpha()):
        return -1
    for char in scheme:
        if not (char.isascii() and (char.isalnum() or char in "+.-")):
            return -1
    return separator + 3


def _redact_userinfo(url: str) -> str:
    start = _authority_start(url)
    if start < 0:
        return url
    end = len(url)
    for delimiter in "/?":
        position = url.find(delimiter, start, end)
        if position >= 0:
            end = position
    # `#` ends the authority too, unless an `@` follows it there: an unencoded `#` in a password is common.
    at = url.rfind("@", start, end)
    fragment = url.find("#", start, end)
    if fragment >= 0 and at < fragment:
        at = url.rfind("@", start, fragment)
    if at <= start:
        return url
    userinfo = url[start:at]
    replacement = f"{REDACTED}:{REDACTED}" if ":" in userinfo else REDACTED
    if userinfo == replacement or (":" in userinfo and _is_mask(userinfo.partition(":")[2])):
        return url
    return f"{url[:start]}{replacement}{url[at:]}"


def redact_url(url: str, sensitive_params: frozenset[str]) -> str:
    """Redact credentials and sensitive query/fragment values in a URL, keeping every other byte.

    Works on absolute URLs, scheme-relative URLs and request targets (`/path?query`). Returns `url` itself
    when there is no userinfo and no sensitive parameter.
    """
    if "@" not in url and "=" not in url:
        return url
    result = _redact_userinfo(url) if "@" in url else url
    if "=" not in result:
        return result
    names = _normalized(sensitive_params)
    hash_at = result.find("#")
    query_at = result.find("?", 0, hash_at if hash_at >= 0 else len(result))
    if query_at >= 0:
        query_end = hash_at if hash_at >= 0 else len(result)
        query = result[query_at + 1 : query_end]
        redacted = _redact_pairs(query, names, REDACTED, result[:query_at]) if "=" in query else query
        if redacted is not query:
            result = f"{result[: query_at + 1]}{redacted}{result[query_end:]}"
            hash_at = result.find("#", query_at + 1 + len(redacted))
    if hash_at >= 0:
        fragment = result[hash_at + 1 :]
        if "=" in fragment:
            redacted = _redact_pairs(fragment, names, REDACTED)
            if redacted is not fragment:
                result = f"{result[: hash_at + 1]}{redacted}"
    return result


def is_sensitive_header(name: str) -> bool:
    """Whether a header's value must not be recorded: the built-in list, or a secret word in its name."""
    lowered = name.lower()
    decision = _header_decisions.get(lowered)
    if decision is None:
        if lowered in SENSITIVE_HEADERS:
            decision = True
        elif lowered in _SAFE_HEADERS:
            decision = False
        else:
            decision = classify_words(key_words(lowered)) is not None
        remember(_header_decisions, lowered, decision, _CACHE_LIMIT)
    return decision


def _redact_cookie_pairs(value: str, marker: str, first_only: bool) -> str:
    pieces = value.split(";")
    for index, piece in enumerate(pieces):
        if first_only and index > 0:
            break  # Set-Cookie attributes (Path, Expires, HttpOnly ...) are not secret
        equals = piece.find("=")
        if equals < 0:
            if not first_only and piece.strip():
                pieces[index] = f" {marker}" if index else marker
            continue
        if piece[equals + 1 :].strip():
            pieces[index] = f"{piece[: equals + 1]}{marker}"
    return ";".join(pieces)


def redact_header_value(name: str, value: str, replace: Callable[[str], str] | None = None) -> str:
    """The value to record for header `name`: `value` itself when the header is not sensitive.

    Authorization keeps its scheme (`Bearer [REDACTED]`), Cookie keeps cookie names, Set-Cookie keeps the
    cookie name and its attributes. `replace(secret)` may supply a different marker (the engine's hash mode).
    """
    if not value or not is_sensitive_header(name):
        return value
    lowered = name.lower()
    marker = replace(value) if replace is not None else HEADER_MARKER
    if lowered in _AUTH_HEADERS:
        stripped = value.strip()
        space = stripped.find(" ")
        if space > 0 and _AUTH_SCHEME.fullmatch(stripped, 0, space):
            if stripped[space:].strip() == marker:
                return value
            return f"{stripped[:space]} {marker}"
        return value if value == marker else marker
    if lowered == "cookie":
        return _redact_cookie_pairs(value, marker, first_only=False)
    if lowered == "set-cookie":
        return _redact_cookie_pairs(value, marker, first_only=True)
    return value if value == marker else marker
