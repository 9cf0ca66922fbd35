"""veil rule files: Falco-shaped YAML (`rule`, `list`, `macro`) loaded into a `RuleSet` indexed by audit event.

A rule: `rule` (title), `id` (stable, e.g. VEIL-RT-SHELL), `desc`, `condition` (veil.security.expression),
`output` (`%field` interpolated), `priority` (Falco's), `tags` (MITRE ATT&CK ids such as T1059), optional
`category`, `reference`, `exceptions` (name, fields, comps, values), `enabled`, `action` (detect | block).
An entry `{rule: <existing title or id>, append: true, exceptions: [...]}` adds exceptions to an earlier rule;
`{rule: ..., enabled: false}` turns one off. Any mistake raises one `RuleFileError` (a ConfigurationError)
naming the file, the line and the problem. Python rules (`python_rule`) are the escape hatch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

from veil.errors import ConfigurationError
from veil.security.events import FIELDS, KNOWN_EVENTS, Event
from veil.security.expression import (
    COMPARISONS,
    ExpressionError,
    Node,
    Predicate,
    compare,
    compile_node,
    event_names,
    fields_of,
    parse,
    requires,
)
from veil.security.findings import PRIORITIES
from veil.security.prefilter import Tests, necessary

DEFAULT_PACK: Final = Path(__file__).with_name("default_rules.yaml")
_LINE: Final = "__line__"
_TECHNIQUE = re.compile(r"^T\d{4}(\.\d{3})?$")
_OUTPUT_FIELD = re.compile(r"%([A-Za-z_][A-Za-z0-9_.]*[A-Za-z0-9_])")
_RULE_KEYS: Final = frozenset(
    {"rule", "id", "desc", "condition", "output", "priority", "tags", "exceptions", "enabled", "action",
     "category", "reference", "append", "source"}
)  # fmt: skip
_EXCEPTION_KEYS: Final = frozenset({"name", "fields", "comps", "values"})
ACTIONS: Final = ("detect", "block")


class RuleFileError(ConfigurationError):
    """A rule file that cannot be loaded: `file`, `line` (0 when unknown) and `problem`."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        where = f"line {line}: " if line else ""
        super().__init__("VEIL_SECURITY_RULES", file, "a veil rules file (see docs/security/rules.md)", where + problem)
        self.file = file
        self.line = line
        self.problem = problem

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.problem} (VEIL_SECURITY_RULES; see docs/security/rules.md)"


@dataclass(frozen=True)
class Rule:
    """One compiled rule."""

    id: str
    name: str
    description: str
    priority: str
    category: str
    output: str
    predicate: Predicate
    events: frozenset[str]
    tags: tuple[str, ...] = ()
    technique: str | None = None
    exceptions: tuple[Predicate, ...] = ()
    enabled: bool = True
    action: str = "detect"
    reference: str | None = None
    ruleset: str = "veil-default"
    condition: str = ""
    file: str = ""
    line: int = 0
    in_request_only: bool = False  # the condition requires in_request: the sensor skips it outside requests
    # what an `open` event's path must pass for the condition to hold (veil.security.prefilter); None: no test
    open_tests: Tests | None = field(default=None, compare=False)

    def matches(self, event: Event) -> bool:
        if not self.predicate(event):
            return False
        return not any(excepted(event) for excepted in self.exceptions)

    def render(self, event: Event) -> str:
        """The output line with every `%field` replaced by the event's value (`<NA>` when absent)."""

        def value(match: re.Match[str]) -> str:
            found = event[match.group(1)]
            return "<NA>" if found is None else str(found)

        return _OUTPUT_FIELD.sub(value, self.output)


@dataclass
class RuleSet:
    """Rules by audit event; `watched` is what the sensor's hook lets through its first test."""

    rules: list[Rule] = field(default_factory=list)
    lists: dict[str, tuple[str, ...]] = field(default_factory=dict)
    macros: dict[str, Node] = field(default_factory=dict)
    macro_predicates: dict[str, Predicate] = field(default_factory=dict)

    def active(self, disabled: Iterable[str] = ()) -> list[Rule]:
        skip = set(disabled)
        return [rule for rule in self.rules if rule.enabled and rule.id not in skip and rule.name not in skip]

    def by_event(self, disabled: Iterable[str] = ()) -> dict[str, tuple[Rule, ...]]:
        index: dict[str, list[Rule]] = {}
        for rule in self.active(disabled):
            for name in rule.events:
                index.setdefault(name, []).append(rule)
        return {name: tuple(rules) for name, rules in index.items()}

    def find(self, key: str) -> Rule | None:
        for rule in self.rules:
            if key in (rule.id, rule.name):
                return rule
        return None


# ---------------------------------------------------------------------------------------------- loading


class _Loader(yaml.SafeLoader):
    """Safe YAML that remembers the line of every mapping."""


def _mapping_with_line(loader: _Loader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[_LINE] = node.start_mark.line + 1
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


# YAML 1.1 reads a bare `=` (as in Falco's `comps: [=, contains]`) as the "value" type: keep it a string.
def _value_as_string(loader: _Loader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


def load_files(paths: Sequence[str | Path], *, include_default: bool = True) -> RuleSet:
    """The default pack (unless excluded), then each file in order; raises RuleFileError."""
    ruleset = RuleSet()
    if include_default:
        load_text(ruleset, DEFAULT_PACK.read_text(encoding="utf-8"), str(DEFAULT_PACK), "veil-default")
    for path in paths:
        name = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise RuleFileError(name, 0, f"cannot read the file ({error.strerror or error})") from None
        except UnicodeDecodeError:
            raise RuleFileError(name, 0, "the file is not UTF-8 text") from None
        load_text(ruleset, text, name, Path(name).stem)
    return ruleset


def load_text(ruleset: RuleSet, text: str, file: str, ruleset_name: str) -> RuleSet:
    """Add the items of one rules document to `ruleset`; raises RuleFileError."""
    try:
        document = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise RuleFileError(file, line, f"not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise RuleFileError(file, 0, f"not valid YAML: {error}") from None
    except RecursionError:
        raise RuleFileError(file, 0, "not valid YAML: nested too deeply") from None
    if document is None:
        return ruleset
    if not isinstance(document, list):
        raise RuleFileError(file, 1, "a rules file is a YAML list of rule, list and macro items")
    for item in document:
        if not isinstance(item, dict):
            raise RuleFileError(file, 0, f"each item must be a mapping, found {type(item).__name__}")
        line = int(item.get(_LINE, 0))
        try:
            _load_item(ruleset, item, file, ruleset_name)
        except ExpressionError as error:
            raise RuleFileError(file, line, f"bad condition: {error}") from None
        except _ItemError as error:
            raise RuleFileError(file, line, str(error)) from None
    return ruleset


class _ItemError(Exception):
    pass


def _string(item: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = item.get(key)
    if value is None:
        if required:
            raise _ItemError(f"'{key}' is required")
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise _ItemError(f"'{key}' must be a string")
    return str(value)


def _load_item(ruleset: RuleSet, item: dict[str, Any], file: str, ruleset_name: str) -> None:
    kinds = [key for key in ("rule", "list", "macro") if key in item]
    if len(kinds) != 1:
        if "required_engine_version" in item and not kinds:
            return
        raise _ItemError("each item needs exactly one of 'rule', 'list' or 'macro'")
    kind = kinds[0]
    if kind == "list":
        name = _string(item, "list")
        items = item.get("items")
        if not isinstance(items, list):
            raise _ItemError(f"list '{name}' needs 'items' as a YAML list")
        expanded: list[str] = []
        for entry in items:
            if isinstance(entry, (dict, list)) or entry is None:
                raise _ItemError(f"list '{name}' items must be scalars")
            text = str(entry)
            expanded.extend(ruleset.lists.get(text, (text,)))
        if item.get("append") and name in ruleset.lists:
            expanded = [*ruleset.lists[name], *expanded]
        ruleset.lists[name] = tuple(expanded)
        return
    if kind == "macro":
        name = _string(item, "macro")
        if name in COMPARISONS or name in FIELDS or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise _ItemError(f"'{name}' cannot be a macro name")
        node = _condition(ruleset, _string(item, "condition"))
        ruleset.macros[name] = node
        ruleset.macro_predicates[name] = compile_node(node, ruleset.macro_predicates)
        return
    _load_rule(ruleset, item, file, ruleset_name)


def _condition(ruleset: RuleSet, text: str) -> Node:
    node = parse(text, ruleset.macros, ruleset.lists)
    for name in fields_of(node, ruleset.macros):
        if name not in FIELDS:
            close = _closest(name, FIELDS)
            hint = f" (did you mean '{close}'?)" if close else ""
            raise _ItemError(f"unknown field or macro '{name}'{hint}")
    return node


def _closest(name: str, choices: Iterable[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(name, list(choices), n=1)
    return found[0] if found else None


def _load_rule(ruleset: RuleSet, item: dict[str, Any], file: str, ruleset_name: str) -> None:
    unknown = sorted(set(item) - _RULE_KEYS - {_LINE})
    if unknown:
        close = _closest(unknown[0], _RULE_KEYS)
        hint = f" (did you mean '{close}'?)" if close else ""
        raise _ItemError(f"unknown key '{unknown[0]}'{hint}")
    name = _string(item, "rule")
    existing = ruleset.find(name)
    if item.get("append") or (existing is not None and "condition" not in item):
        if existing is None:
            raise _ItemError(f"rule '{name}' to change is not defined earlier")
        _change_rule(ruleset, existing, item)
        return
    rule_id = _string(item, "id")
    if ruleset.find(rule_id) is not None:
        raise _ItemError(f"rule id '{rule_id}' is already defined")
    priority = _string(item, "priority").upper()
    if priority == "INFO":
        priority = "INFORMATIONAL"
    if priority not in PRIORITIES:
        raise _ItemError(f"priority '{priority}' is not one of {', '.join(PRIORITIES)}")
    text = _string(item, "condition")
    node = _condition(ruleset, text)
    events = event_names(node, ruleset.macros)
    if events is None:
        raise _ItemError("the condition must name its audit events (evt.name = ... or evt.name in (...))")
    unknown_events = sorted(events - KNOWN_EVENTS)
    if unknown_events:
        raise _ItemError(f"unknown audit event '{unknown_events[0]}'; known: {', '.join(sorted(KNOWN_EVENTS))}")
    output = _string(item, "output")
    for match in _OUTPUT_FIELD.finditer(output):
        if match.group(1) not in FIELDS:
            raise _ItemError(f"output names unknown field '%{match.group(1)}'")
    tags = item.get("tags") or []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _ItemError("'tags' must be a list of strings")
    enabled = item.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _ItemError("'enabled' must be true or false")
    action = _string(item, "action", required=False) or "detect"
    if action not in ACTIONS:
        raise _ItemError(f"action '{action}' is not one of {', '.join(ACTIONS)}")
    technique = next((tag for tag in tags if _TECHNIQUE.match(tag)), None)
    rule = Rule(
        id=rule_id,
        name=name,
        description=_string(item, "desc", required=False),
        priority=priority,
        category=_string(item, "category", required=False) or "runtime",
        output=output,
        predicate=compile_node(node, ruleset.macro_predicates),
        events=events,
        tags=tuple(tags),
        technique=technique,
        exceptions=_exceptions(item.get("exceptions")),
        enabled=enabled,
        action=action,
        reference=_string(item, "reference", required=False) or None,
        ruleset=ruleset_name,
        condition=text,
        file=file,
        line=int(item.get(_LINE, 0)),
        in_request_only=requires(node, ruleset.macros, "in_request"),
        open_tests=necessary(node, ruleset.macros, "open") if "open" in events else None,
    )
    ruleset.rules.append(rule)


def _change_rule(ruleset: RuleSet, existing: Rule, item: Mapping[str, Any]) -> None:
    allowed = {"rule", "append", "exceptions", "enabled", "action", _LINE}
    extra = sorted(set(item) - allowed)
    if extra:
        raise _ItemError(
            f"changing rule '{existing.name}' allows only exceptions, enabled and action, not '{extra[0]}'"
        )
    changes: dict[str, Any] = {}
    if "exceptions" in item:
        changes["exceptions"] = existing.exceptions + _exceptions(item["exceptions"])
    if "enabled" in item:
        if not isinstance(item["enabled"], bool):
            raise _ItemError("'enabled' must be true or false")
        changes["enabled"] = item["enabled"]
    if "action" in item:
        if item["action"] not in ACTIONS:
            raise _ItemError(f"action '{item['action']}' is not one of {', '.join(ACTIONS)}")
        changes["action"] = item["action"]
    index = ruleset.rules.index(existing)
    ruleset.rules[index] = replace(existing, **changes)


def _exceptions(raw: Any) -> tuple[Predicate, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _ItemError("'exceptions' must be a list")
    compiled: list[Predicate] = []
    for entry in raw:
        if not isinstance(entry, dict):
            raise _ItemError("each exception must be a mapping with name, fields, comps and values")
        unknown = sorted(set(entry) - _EXCEPTION_KEYS - {_LINE})
        if unknown:
            raise _ItemError(f"unknown exception key '{unknown[0]}'")
        name = _string(entry, "name")
        fields = entry.get("fields")
        single = isinstance(fields, str)
        field_list = [fields] if single else fields
        if not isinstance(field_list, list) or not field_list or not all(isinstance(f, str) for f in field_list):
            raise _ItemError(f"exception '{name}' needs 'fields' (a field or a list of fields)")
        for field_name in field_list:
            if field_name not in FIELDS:
                raise _ItemError(f"exception '{name}' names unknown field '{field_name}'")
        comps = entry.get("comps", "=" if single else ["="] * len(field_list))
        comp_list = [comps] if isinstance(comps, str) else comps
        if not isinstance(comp_list, list) or len(comp_list) != len(field_list):
            raise _ItemError(f"exception '{name}' needs one comparison per field")
        for comp in comp_list:
            if comp not in COMPARISONS:
                raise _ItemError(f"exception '{name}' has unknown comparison '{comp}'")
        values = entry.get("values") or []
        if not isinstance(values, list):
            raise _ItemError(f"exception '{name}' needs 'values' as a list")
        rows: list[tuple[Any, ...]] = []
        for row in values:
            row_values = [row] if single or not isinstance(row, list) else row
            if len(row_values) != len(field_list):
                raise _ItemError(f"exception '{name}' has a value row of the wrong length")
            rows.append(
                tuple(_exception_value(name, comp, value) for comp, value in zip(comp_list, row_values, strict=True))
            )
        compiled.append(_exception_predicate(tuple(field_list), tuple(comp_list), tuple(rows)))
    return tuple(compiled)


def _exception_value(name: str, comp: str, value: Any) -> Any:
    if comp in ("in", "pmatch"):
        if not isinstance(value, list):
            raise _ItemError(f"exception '{name}': '{comp}' needs a list value")
        return tuple(str(item) for item in value)
    if comp == "matches":
        try:
            return re.compile(str(value))
        except re.error as error:
            raise _ItemError(f"exception '{name}': bad regular expression: {error}") from None
    if isinstance(value, (dict, list)) or value is None:
        raise _ItemError(f"exception '{name}': values must be scalars")
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _exception_predicate(
    fields: tuple[str, ...], comps: tuple[str, ...], rows: tuple[tuple[Any, ...], ...]
) -> Predicate:
    def excepted(event: Mapping[str, Any]) -> bool:
        return any(
            all(compare(comp, event[name], value) for name, comp, value in zip(fields, comps, row, strict=True))
            for row in rows
        )

    return excepted


# ------------------------------------------------------------------------------------------ Python rules

_python_rules: list[Rule] = []


def python_rule(
    rule_id: str,
    name: str,
    *,
    events: Iterable[str],
    predicate: Callable[[Mapping[str, Any]], bool],
    priority: str = "WARNING",
    category: str = "runtime",
    output: str = "",
    technique: str | None = None,
    action: str = "detect",
    description: str = "",
) -> Rule:
    """Register a rule written in Python (the escape hatch); it joins the rules of the next veil.configure()."""
    names = frozenset(events)
    if not names or not names <= KNOWN_EVENTS:
        raise ConfigurationError("python_rule(events=...)", sorted(names), sorted(KNOWN_EVENTS))
    if priority not in PRIORITIES:
        raise ConfigurationError("python_rule(priority=...)", priority, PRIORITIES)
    if action not in ACTIONS:
        raise ConfigurationError("python_rule(action=...)", action, ACTIONS)
    rule = Rule(
        id=rule_id,
        name=name,
        description=description,
        priority=priority,
        category=category,
        output=output or name,
        predicate=predicate,
        events=names,
        technique=technique,
        tags=(technique,) if technique else (),
        action=action,
        ruleset="python",
    )
    _python_rules.append(rule)
    return rule


def python_rules() -> list[Rule]:
    return list(_python_rules)
