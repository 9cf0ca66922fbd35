"""Block mode at the HTTP edge: the 403 answer veil's server instrumentation gives a request whose handler let
`veil.security.Blocked` propagate (the finding on the SERVER span already says which rule blocked it)."""

from __future__ import annotations

from typing import Final

from veil.security.request import RequestScope

FORBIDDEN_BODY: Final = b"403 Forbidden: the request was blocked by a veil security rule\n"
FORBIDDEN_STATUS: Final = "403 Forbidden"
FORBIDDEN_HEADERS: Final = (
    ("Content-Type", "text/plain; charset=utf-8"),
    ("Content-Length", str(len(FORBIDDEN_BODY))),
)
ASGI_FORBIDDEN_HEADERS: Final = [(name.lower().encode(), value.encode()) for name, value in FORBIDDEN_HEADERS]


def was_blocked(scope: RequestScope | None) -> bool:
    """Whether the sensor blocked a call of this request (so an error answer becomes 403)."""
    return scope is not None and scope.blocked_by is not None
