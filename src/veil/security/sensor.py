"""The sensor: one process-wide PEP 578 audit hook that turns watched audit events into findings.

Audit hooks cannot be removed, so the hook is installed once per process (by `veil.configure()` / `veil run`
unless VEIL_SECURITY=off) and its work is driven by state that a later configure replaces. For an event no rule
watches it costs one frozenset test; for an `open()` no rule can match, a few string tests
(veil.security.prefilter); it never re-enters itself (veil's own exporters open sockets and files),
never raises except `Blocked` in block mode, and keeps working in forked children. A rule reports once per
request: later matches of the same rule in the same request only count on the SERVER span.

Audit hooks are detection, not a sandbox (PEP 578): code that wants to evade them can.
"""

from __future__ import annotations

import atexit
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from opentelemetry.util.types import AttributeValue

from veil._fork import after_fork
from veil._guard import log_once
from veil.security.events import FINDING_FIELDS, REQUEST_FIELDS, Event, extract, mark_serving
from veil.security.findings import PRIORITIES, Blocked, Finding, emit
from veil.security.prefilter import open_prefilter
from veil.security.request import RequestScope, add_request_observer, current_request, hold_scopes
from veil.security.rules import Rule, RuleSet, load_files, python_rules

MODES: Final = ("off", "detect", "block")
_NOTHING: Final[frozenset[str]] = frozenset()


@dataclass(frozen=True)
class SensorConfig:
    """What the hook works from: the rules by event, the mode, and the rule set they came from."""

    mode: str
    index: Mapping[str, tuple[Rule, ...]]
    ruleset: RuleSet
    request_only: frozenset[str] = frozenset()  # events whose rules all require a request
    # per event, a cheap test of the raw arguments that no rule can match when it fails (veil.security.prefilter)
    prefilters: Mapping[str, Callable[[tuple[Any, ...]], bool]] = field(default_factory=dict)


_watched: frozenset[str] = _NOTHING  # a module global: the hook's first test is one LOAD_GLOBAL and a set lookup
_prefilters: Mapping[str, Callable[[tuple[Any, ...]], bool]] = {}  # SensorConfig.prefilters, as fast to reach


class _State:
    config: SensorConfig | None = None
    installed = False
    busy: set[int] = set()
    release_scopes: Callable[[], None] | None = None
    remove_observer: Callable[[], None] | None = None


_get_ident = threading.get_ident


def _hook(name: str, args: tuple[Any, ...]) -> None:
    if name not in _watched:
        return
    admits = _prefilters.get(name)
    if admits is not None:
        # Before the re-entry guard: a prefilter reads the arguments with a few string operations and triggers
        # no audit event of its own. If it fails, the event is judged in full below, which logs the failure.
        try:
            if not admits(args):
                return
        except Exception:
            pass
    ident = _get_ident()
    busy = _State.busy
    if ident in busy:
        return
    busy.add(ident)
    try:
        _evaluate(name, args)
    except Blocked:
        raise
    except Exception:
        log_once("security.sensor", "veil: the security sensor failed on an audit event (ignored)", exc_info=True)
    finally:
        busy.discard(ident)


def _evaluate(name: str, args: tuple[Any, ...]) -> None:
    config = _State.config
    if config is None:
        return
    rules = config.index.get(name)
    if not rules:
        return
    if name in config.request_only:  # outside a request no rule of this event can match: done
        scope = current_request()
        if scope is None:
            return
        event = extract(name, args)
        if event is None:
            return
        event["_scope"] = scope
        event["in_request"] = True
    else:
        event = extract(name, args)
        if event is None:
            return
    for rule in rules:
        if rule.matches(event):
            _fire(rule, event, config.mode)


def evaluate_event(event: Event, rules: Sequence[Rule]) -> list[Rule]:
    """The rules that match a recorded event (`veil rules test`)."""
    return [rule for rule in rules if event["evt.name"] in rule.events and rule.matches(event)]


def finding_for(rule: Rule, event: Event, mode: str) -> Finding:
    """The finding a matched rule makes of an event: fields, correlation (which raises the priority), action."""
    correlated = bool(event["input.correlated"])
    priority = rule.priority
    if correlated:
        index = PRIORITIES.index(priority)
        priority = PRIORITIES[max(index - 1, PRIORITIES.index("CRITICAL"))] if index > 2 else priority
    fields: dict[str, AttributeValue] = {}
    for key in (*FINDING_FIELDS, "proc.name", *REQUEST_FIELDS):
        value = event[key]
        if value is not None and value != "":
            fields[key] = value if isinstance(value, (str, bool, int, float)) else str(value)
    return Finding(
        rule_id=rule.id,
        rule_name=rule.name,
        category=rule.category,
        priority=priority,
        message=rule.render(event),
        source="runtime",
        technique=rule.technique,
        ruleset=rule.ruleset,
        reference=rule.reference,
        fields=fields,
        correlated=correlated,
        action="block" if mode == "block" or rule.action == "block" else "detect",
    )


def _fire(rule: Rule, event: Event, mode: str) -> None:
    scope: RequestScope | None = event["_scope"] if event["in_request"] else None
    blocking = mode == "block" or rule.action == "block"
    if scope is not None and rule.id in scope.rule_ids:
        _count_repeat(scope)
        if blocking:
            raise Blocked(finding_for(rule, event, mode))
        return
    finding = finding_for(rule, event, mode)
    if blocking and scope is not None:
        scope.blocked_by = rule.id
    emit(finding)
    if blocking:
        raise Blocked(finding)


def _count_repeat(scope: RequestScope) -> None:
    span = scope.server_span
    scope.findings += 1
    if span is not None and span.is_recording():
        span.set_attribute("veil.security.findings", scope.findings)


class _ServingObserver:
    """Marks the end of start-up (the first request) for rules that read `proc.serving`."""

    def on_request_start(self, scope: RequestScope) -> None:
        mark_serving()
        remove = _State.remove_observer
        if remove is not None:
            _State.remove_observer = None
            remove()

    def on_request_end(self, scope: RequestScope) -> None:
        pass


def _after_fork_in_child() -> None:
    _State.busy = set()


def prepare(settings: Any) -> SensorConfig | None:
    """Load and compile the rules Settings asks for (raises RuleFileError); None when VEIL_SECURITY=off."""
    mode = settings.security
    if mode == "off":
        return None
    ruleset = load_files(settings.security_rules)
    ruleset.rules.extend(python_rules())
    index = ruleset.by_event(settings.security_disabled_rules)
    request_only = frozenset(name for name, rules in index.items() if all(rule.in_request_only for rule in rules))
    prefilters = {}
    admits_open = open_prefilter([rule.open_tests for rule in index.get("open", ())])
    if admits_open is not None:
        prefilters["open"] = admits_open
    return SensorConfig(mode, index, ruleset, request_only, prefilters)


def install(config: SensorConfig | None, settings: Any) -> None:
    """Make `config` the sensor's work (None: watch nothing); adds the audit hook the first time."""
    global _watched, _prefilters
    from veil.security import findings

    findings.reset()
    if config is None:
        _watched = _NOTHING
        _prefilters = {}
        _State.config = None
        if _State.release_scopes is not None:
            _State.release_scopes()
            _State.release_scopes = None
        return
    findings.configure_noise(
        window=float(settings.security_aggregation_window),
        rate=float(settings.security_rate_limit),
        burst=int(settings.security_burst),
    )
    _State.config = config
    _prefilters = config.prefilters
    _watched = frozenset(config.index)
    if _State.release_scopes is None:
        _State.release_scopes = hold_scopes()
    if _State.remove_observer is None:
        _State.remove_observer = add_request_observer(_ServingObserver())
    if not _State.installed:
        _State.installed = True
        # registered after telemetry's own exit hook, so it runs first: pending aggregates reach the exporters
        atexit.register(findings.flush)
        after_fork(_after_fork_in_child)
        sys.addaudithook(_hook)


def current() -> SensorConfig | None:
    """The sensor's configuration (None when off or never configured)."""
    return _State.config
