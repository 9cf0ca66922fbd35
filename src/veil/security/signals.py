"""Request-level attack signals: a `RequestObserver` on veil's server instrumentation (no middleware to add).

Per request, cheap checks first and the detailed ones only when a cheap one fires (a benign request costs a
set lookup, a lower-casing, a few substring tests):

* `VEIL-REQ-SCANNER`: a known scanner's user agent (sqlmap, Nikto, Nuclei, ...). Benign agents are cached,
  and so are targets (path and query) that passed the cheap tests: a known agent on a known target costs two
  set lookups.
* `VEIL-REQ-PROBE`: a path scanners probe for (`/.env`, `/.git/config`, `/wp-admin`, `/actuator`, ...).
* `VEIL-REQ-TRAVERSAL`, `VEIL-REQ-SQLI`, `VEIL-REQ-XSS`: traversal, SQL-injection and script-injection markers
  in the path or query, after percent-decoding (twice, for double encoding).
* `VEIL-REQ-HEADER`: oversized or malformed headers (control characters, invalid names, too many, conflicting
  Content-Length / Transfer-Encoding); headers are read only for requests with no or a first-seen user agent
  or with another signal, so a browser's hundredth request does not pay for it.

Each is a low-severity finding through `veil.security.emit` (noise control aggregates repeats). Two aggregates:

* `VEIL-REQ-ATTACK-WAVE`: N suspicious requests from one client within a window (default 15 in 60 s, as Aikido)
  become one finding with the count and sample routes; that client is then quiet for 20 minutes.
* `VEIL-REQ-AUTH-BURST`: many authentication failures (401/403 answers, `veil.audit(..., outcome="failure")`,
  failed logins captured from Django or Flask-Login) for one client or one user within a window (default 10 in
  60 s) become one finding; one request is counted once.

The client is the socket peer. X-Forwarded-For is believed only from `VEIL_SECURITY_TRUSTED_PROXIES`, read from
the right, skipping trusted hops, and only when a finding needs the client (never on a benign request).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes.enduser_attributes import ENDUSER_ID
from opentelemetry.semconv.attributes.client_attributes import CLIENT_ADDRESS
from opentelemetry.semconv.attributes.http_attributes import HTTP_REQUEST_METHOD, HTTP_ROUTE
from opentelemetry.semconv.attributes.url_attributes import URL_PATH
from opentelemetry.semconv.attributes.user_agent_attributes import USER_AGENT_ORIGINAL
from opentelemetry.util.types import AttributeValue

from veil.security.findings import Finding, emit
from veil.security.findings import _mark_server_span as mark_server_span  # emit() finds no scope yet at start
from veil.security.request import MAX_HEADER_VALUE, MAX_HEADERS, RequestScope, current_request
from veil.security.windows import WindowCounter

COOLDOWN_SECONDS = 1200.0
MAX_CLEAN_AGENTS = 4096
MAX_CLEAN_TARGETS = 4096  # benign targets remembered (each at most MAX_CLEAN_TARGET_LENGTH characters)
MAX_CLEAN_TARGET_LENGTH = 512
OVERSIZED_TARGET = 8192
AUTH_FAILURE_STATUS = frozenset({401, 403})
REFERENCE = "https://veil.dev/security/events/#request-signals"

_SCANNER_AGENTS = (
    "sqlmap", "nikto", "nmap", "masscan", "zgrab", "acunetix", "nessus", "openvas", "wpscan", "dirbuster",
    "gobuster", "feroxbuster", "ffuf", "nuclei", "whatweb", "w3af", "arachni", "netsparker", "jaeles", "wfuzz",
    "commix", "xsstrike", "havij", "appscan", "burpcollaborator", "dirsearch", "hydra", "zmeu", "morfeus",
    "fimap", "skipfish", "qualys", "jorgee", "sqlninja", "paros", "webinspect",
)  # fmt: skip
_PROBES = (
    r"\.env", r"\.git(?:/|$)", r"\.svn", r"\.hg/", r"\.aws/", r"\.ssh/", r"\.htaccess", r"\.htpasswd", r"\.ds_store",
    r"\.docker", r"\.kube", r"\.npmrc", r"wp-admin", r"wp-login\.php", r"wp-content", r"wp-includes", r"wp-config",
    r"xmlrpc\.php", r"phpmyadmin", r"pma/", r"myadmin", r"adminer", r"actuator", r"server-status", r"server-info",
    r"cgi-bin/", r"vendor/phpunit", r"solr/admin", r"manager/html", r"boaform", r"hnap1", r"jmx-console",
    r"web-console", r"invoker/", r"console/login", r"telescope", r"_ignition", r"\.well-known/security\.txt\.bak",
    r"config\.json", r"config\.ya?ml", r"backup\.(?:zip|sql|tar)", r"dump\.sql", r"database\.sql", r"id_rsa",
    r"etc/passwd",
)  # fmt: skip
_PROBE_PREFIX = re.compile(r"/(?:" + "|".join(_PROBES) + ")")
# Each probe starts with two literal characters: a path whose first two after the slash start none of them
# cannot match at its start, and skips the regular expression (tests/security/test_signals.py checks the set).
_PROBE_STARTS = frozenset(re.sub(r"\\(.)", r"\1", probe)[:2] for probe in _PROBES)
_PROBE_SUFFIXES = (".php", ".asp", ".aspx", ".jsp", ".cgi", ".bak", ".old", ".sql", ".swp", "~", ".env")
_MARKER_CHARACTERS = frozenset("<>'\"%;()\\`")
_TRAVERSAL = re.compile(r"(?:^|[/\\])\.\.(?:[/\\]|$)|/etc/(?:passwd|shadow)|\\windows\\|\x00")
_SQLI = re.compile(
    r"'\s*(?:or|and)\s*'?\d|'\s*(?:or|and)\s+'|\bunion\b(?:\s+all)?\s+select\b|\bselect\b.+\bfrom\b"
    r"|;\s*(?:drop|delete|insert|update|shutdown)\b|\b(?:sleep|benchmark|pg_sleep)\s*\(|\bwaitfor\s+delay\b"
    r"|'\s*--|'\s*#|/\*!?\d*|\bor\s+1\s*=\s*1\b|\binformation_schema\b|\bxp_cmdshell\b"
)
_XSS = re.compile(
    r"<\s*/?\s*(?:script|iframe|svg|img|body|object|embed|math|details)\b|javascript\s*:|\bon(?:error|load"
    r"|mouseover|focus|click|toggle|begin)\s*=|\balert\s*\(|document\.cookie|<\s*\w+[^>]*\bsrc\s*=|%3cscript"
)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9a-z]+$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True)
class Rule:
    """The fixed part of a request-level finding."""

    id: str
    name: str
    category: str
    priority: str
    technique: str | None

    def finding(
        self, message: str, fields: dict[str, AttributeValue], scope: RequestScope | None, count: int = 1
    ) -> Finding:
        # The request's SERVER span is not yet the current span when a request starts: stamp its ids here.
        context = scope.server_span.get_span_context() if scope is not None and scope.server_span else None
        return Finding(
            trace_id=context.trace_id if context is not None and context.is_valid else 0,
            span_id=context.span_id if context is not None and context.is_valid else 0,
            rule_id=self.id,
            rule_name=self.name,
            category=self.category,
            priority=self.priority,
            message=message,
            source="request",
            technique=self.technique,
            reference=REFERENCE,
            fields=fields,
            count=count,
        )


SCANNER = Rule("VEIL-REQ-SCANNER", "Scanner user agent", "scanner", "NOTICE", "T1595")
PROBE = Rule("VEIL-REQ-PROBE", "Probe for a sensitive path", "probe", "NOTICE", "T1595.003")
TRAVERSAL = Rule("VEIL-REQ-TRAVERSAL", "Path traversal marker", "path-traversal", "NOTICE", "T1190")
SQLI = Rule("VEIL-REQ-SQLI", "SQL injection marker", "injection", "NOTICE", "T1190")
XSS = Rule("VEIL-REQ-XSS", "Script injection marker", "injection", "NOTICE", "T1190")
HEADER = Rule("VEIL-REQ-HEADER", "Oversized or malformed request", "protocol-anomaly", "NOTICE", None)
ATTACK_WAVE = Rule("VEIL-REQ-ATTACK-WAVE", "Attack wave from one client", "attack-wave", "WARNING", "T1595")
AUTH_BURST = Rule("VEIL-REQ-AUTH-BURST", "Authentication failure burst", "auth-burst", "WARNING", "T1110")
RULES = (SCANNER, PROBE, TRAVERSAL, SQLI, XSS, HEADER, ATTACK_WAVE, AUTH_BURST)


class ClientResolver:
    """The client of a request: the socket peer, or X-Forwarded-For's first untrusted hop from the right when
    the peer is a trusted proxy."""

    def __init__(self, trusted: Sequence[str]) -> None:
        self.networks = tuple(ipaddress.ip_network(item, strict=False) for item in trusted)

    def _trusted(self, address: str) -> bool:
        try:
            parsed = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(parsed in network for network in self.networks)

    def client(self, scope: RequestScope) -> str | None:
        peer = scope.client_address
        if not self.networks or peer is None or not self._trusted(peer):
            return peer
        forwarded = scope.headers.get("x-forwarded-for", "")
        hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else peer


class RequestSignals:
    """The observer: per-request checks, attack waves and auth-failure bursts (see the module docstring)."""

    def __init__(
        self,
        *,
        trusted_proxies: Sequence[str] = (),
        wave_threshold: int = 15,
        wave_window: float = 60.0,
        burst_threshold: int = 10,
        burst_window: float = 60.0,
        report: Callable[[Finding], None] = emit,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = ClientResolver(trusted_proxies)
        self.waves = WindowCounter(wave_threshold, wave_window, COOLDOWN_SECONDS)
        self.bursts = WindowCounter(burst_threshold, burst_window, COOLDOWN_SECONDS)
        self.report = report
        self.clock = clock
        self._clean_agents: set[str] = set()
        self._clean_targets: set[str] = set()

    # -- the observer --------------------------------------------------------------------------------------

    def skips_start(self, target: str, user_agent: str | None) -> bool:
        """A known agent on a target that passed every cheap test before: they would pass again (no scope is
        built for such a request unless something else asks for it)."""
        return target in self._clean_targets and user_agent is not None and user_agent in self._clean_agents

    def skips_end(self, status_code: int | None) -> bool:
        """Only an authentication failure matters at the end (the burst rule)."""
        return status_code not in AUTH_FAILURE_STATUS

    def on_request_start(self, scope: RequestScope) -> None:
        agent = scope.user_agent
        target = scope.target
        if self.skips_start(target, agent):
            return
        lowered = target.lower()
        path = lowered.partition("?")[0]
        cheap = (
            (agent is None or agent not in self._clean_agents)
            or not _MARKER_CHARACTERS.isdisjoint(target)
            or ".." in target
            or "--" in target
            or "union" in lowered
            or "select" in lowered
            or "/." in path
            or path.endswith(_PROBE_SUFFIXES)
            or (path[1:3] in _PROBE_STARTS and _PROBE_PREFIX.match(path) is not None)
            or len(target) > OVERSIZED_TARGET
        )
        if cheap:
            self._inspect(scope, agent, target, path)
        elif len(self._clean_targets) < MAX_CLEAN_TARGETS and len(target) <= MAX_CLEAN_TARGET_LENGTH:
            self._clean_targets.add(target)  # the tests above read the target alone: their answer holds for it

    def on_request_end(self, scope: RequestScope) -> None:
        if scope.status_code in AUTH_FAILURE_STATUS and not scope.auth_failure_counted:
            self._auth_failure(scope, scope.enduser_id)

    # -- per-request detail ----------------------------------------------------------------------------------

    def _inspect(self, scope: RequestScope, agent: str | None, target: str, path: str) -> None:
        hits: list[tuple[Rule, str]] = []
        first_seen = agent is None or agent not in self._clean_agents
        if agent is not None and first_seen:
            lowered_agent = agent.lower()
            scanner = next((word for word in _SCANNER_AGENTS if word in lowered_agent), None)
            if scanner is not None:
                hits.append((SCANNER, f"scanner {scanner}"))
            elif len(self._clean_agents) < MAX_CLEAN_AGENTS:
                self._clean_agents.add(agent)
        probe = _PROBE_PREFIX.match(path) or _PROBE_PREFIX.search(path)
        if probe is not None or (path.endswith(_PROBE_SUFFIXES) and not path.endswith("/")):
            matched = probe.group(0) if probe is not None else path.rsplit("/", 1)[-1]
            hits.append((PROBE, f"probe {matched}"))
        decoded = _decoded(target)
        for pattern, rule in ((_TRAVERSAL, TRAVERSAL), (_SQLI, SQLI), (_XSS, XSS)):
            found = pattern.search(decoded)
            if found is not None:
                hits.append((rule, f"{rule.name.lower()} {found.group(0)[:64]!r}"))
        if first_seen or hits or len(target) > OVERSIZED_TARGET:
            problem = _header_problem(scope, target)
            if problem:
                hits.append((HEADER, problem))
        if not hits:
            return
        client = self.resolver.client(scope)
        fields = _request_fields(scope, client)
        for rule, detail in hits:
            where = f"{scope.method} {target.partition('?')[0][:200]}"
            self._report(rule.finding(f"{detail} from {client} on {where}", fields, scope), scope)
        self._suspicious(scope, client)

    def _report(self, finding: Finding, scope: RequestScope | None) -> None:
        """Report on the request's SERVER span. At request start (and end) that span is not the current one and
        `current_request()` does not find the scope yet, so the span is made current around `emit` (which adds
        the span event there) and marked as carrying findings here."""
        span = scope.server_span if scope is not None else None
        if span is None or current_request() is scope:
            self.report(finding)
            return
        with trace.use_span(span, end_on_exit=False):
            self.report(finding)
        if self.report is emit:
            mark_server_span(scope, finding)

    # -- aggregates ----------------------------------------------------------------------------------------

    def _suspicious(self, scope: RequestScope, client: str | None) -> None:
        if client is None:
            return
        route = scope.resolve_route() or scope.target.partition("?")[0][:200]
        for crossing in self.waves.add((f"client:{client}",), f"{scope.method} {route}", self.clock()):
            fields = _request_fields(scope, client)
            fields["veil.security.sample_routes"] = list(crossing.routes)
            fields["veil.security.window_seconds"] = int(self.waves.window)
            message = (
                f"attack wave: {crossing.count} suspicious requests from {client} within "
                f"{int(self.waves.window)} s ({', '.join(crossing.routes[:5])})"
            )
            self._report(ATTACK_WAVE.finding(message, fields, scope, crossing.count), scope)

    def note_audit_failure(self, user: str | None) -> None:
        """A failed authentication reported by `veil.audit()` (runs on the caller's thread, inside its request)."""
        scope = current_request()
        if scope is not None:
            if scope.auth_failure_counted:
                return
            scope.auth_failure_counted = True
        self._auth_failure(scope, user)

    def _auth_failure(self, scope: RequestScope | None, user: str | None) -> None:
        client = self.resolver.client(scope) if scope is not None else None
        keys = [key for key in (f"client:{client}" if client else None, f"user:{user}" if user else None) if key]
        if not keys:
            return
        route = None
        if scope is not None:
            route = f"{scope.method} {scope.resolve_route() or scope.target.partition('?')[0][:200]}"
        for crossing in self.bursts.add(keys, route, self.clock())[:1]:
            fields: dict[str, AttributeValue] = _request_fields(scope, client) if scope is not None else {}
            if client:
                fields[CLIENT_ADDRESS] = client
            if user:
                fields[ENDUSER_ID] = user
            fields["veil.security.sample_routes"] = list(crossing.routes)
            fields["veil.security.window_seconds"] = int(self.bursts.window)
            who = crossing.key.replace(":", " ", 1)
            message = f"authentication failures: {crossing.count} for {who} within {int(self.bursts.window)} s"
            self._report(AUTH_BURST.finding(message, fields, scope, crossing.count), scope)


def _decoded(target: str) -> str:
    """Lower-cased, percent-decoded twice (double encoding), `+` as space."""
    once = unquote_plus(target)
    twice = unquote_plus(once) if "%" in once else once
    return twice.lower()


def _header_problem(scope: RequestScope, target: str) -> str | None:
    if len(target) > OVERSIZED_TARGET:
        return f"request target of {len(target)} characters"
    headers = scope.headers
    if len(headers) >= MAX_HEADERS:
        return f"{len(headers)} or more headers"
    for name, value in headers.items():
        if not _HEADER_NAME.match(name):
            return f"invalid header name {name[:40]!r}"
        if len(value) >= MAX_HEADER_VALUE:
            return f"header {name} of {len(value)} or more characters"
        if _CONTROL.search(value):
            return f"control character in header {name}"
    length = headers.get("content-length")
    if length is not None and ("," in length or not length.strip().isdigit()):
        return "malformed or repeated Content-Length"
    if length is not None and "transfer-encoding" in headers:
        return "both Content-Length and Transfer-Encoding"
    return None


def _request_fields(scope: RequestScope | None, client: str | None) -> dict[str, AttributeValue]:
    fields: dict[str, AttributeValue] = {}
    if scope is None:
        return fields
    fields[HTTP_REQUEST_METHOD] = scope.method
    fields[URL_PATH] = scope.target.partition("?")[0][:1024]
    route = scope.resolve_route()
    if route:
        fields[HTTP_ROUTE] = route
    if client:
        fields[CLIENT_ADDRESS] = client
    if scope.user_agent:
        fields[USER_AGENT_ORIGINAL] = scope.user_agent[:512]
    if scope.enduser_id:
        fields[ENDUSER_ID] = scope.enduser_id
    return fields


def from_settings(settings: Any) -> RequestSignals:
    return RequestSignals(
        trusted_proxies=settings.security_trusted_proxies,
        wave_threshold=settings.security_wave_threshold,
        wave_window=float(settings.security_wave_window_seconds),
        burst_threshold=settings.security_auth_burst_threshold,
        burst_window=float(settings.security_auth_burst_window_seconds),
    )
