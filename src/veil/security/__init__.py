"""veil.security: runtime threat detection and security events, tied to the trace of the request.

Public API: `Finding`, `emit`, `add_listener` (findings), `RequestScope`, `RequestObserver`, `current_request`,
`add_request_observer` (the inbound request as security sees it) and `Blocked` (what block mode raises).
The audit-hook sensor, the rule language and the default pack live in their own modules and are loaded by
`veil.configure()` only when VEIL_SECURITY is not `off`.
"""

from veil.security.findings import Blocked, Finding, add_listener, emit
from veil.security.request import RequestObserver, RequestScope, add_request_observer, current_request

__all__ = [
    "Blocked",
    "Finding",
    "RequestObserver",
    "RequestScope",
    "add_listener",
    "add_request_observer",
    "current_request",
    "emit",
]
