"""`veil rules lint FILE...` and `veil rules test FILE EVENTS.jsonl`.

lint loads the default pack and then each file (so a file may change default rules) and prints one line per
file, `ok` or the error with its line. test replays recorded events — one JSON object of fields per line, as in
a finding's fields (`{"evt.name": "open", "fd.name": "/etc/shadow", "in_request": true}`) — through the default
pack and FILE, and prints which rules fire on which line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from typing import Any

from veil.errors import ConfigurationError


def add_rules_command(commands: Any) -> None:
    rules = commands.add_parser("rules", help="check and test runtime security rule files")
    actions = rules.add_subparsers(dest="rules_action", required=True)
    lint = actions.add_parser("lint", help="validate rule files (with the default pack loaded first)")
    lint.add_argument("files", nargs="+", metavar="FILE")
    lint.set_defaults(handler=_lint)
    test = actions.add_parser("test", help="replay recorded events (JSON lines) and show which rules fire")
    test.add_argument("file", metavar="FILE", help="a rules file ('-' for the default pack alone)")
    test.add_argument("events", metavar="EVENTS.jsonl")
    test.add_argument("--no-default", action="store_true", help="do not load the default pack")
    test.set_defaults(handler=_test)


def _lint(arguments: argparse.Namespace) -> int:
    from pathlib import Path

    from veil.security.rules import DEFAULT_PACK, load_files

    failed = 0
    for name in arguments.files:
        try:
            if Path(name).resolve() == DEFAULT_PACK.resolve():
                ruleset = load_files([name], include_default=False)
            else:
                ruleset = load_files([name])
        except ConfigurationError as error:
            print(f"{error}", file=sys.stderr)
            failed += 1
            continue
        own = [rule for rule in ruleset.rules if rule.file == name]
        print(f"{name}: ok ({len(own)} new rules; {len(ruleset.active())} active with the default pack)")
    return 1 if failed else 0


def _test(arguments: argparse.Namespace) -> int:
    from veil.security.events import KNOWN_EVENTS, Event
    from veil.security.rules import load_files
    from veil.security.sensor import evaluate_event

    files = [] if arguments.file == "-" else [arguments.file]
    try:
        ruleset = load_files(files, include_default=not arguments.no_default)
    except ConfigurationError as error:
        print(f"{error}", file=sys.stderr)
        return 2
    rules = ruleset.active()
    fired: Counter[str] = Counter()
    events = 0
    try:
        handle = open(arguments.events, encoding="utf-8")  # noqa: SIM115 - closed below
    except OSError as error:
        print(f"veil rules test: cannot read {arguments.events}: {error.strerror}", file=sys.stderr)
        return 2
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
            except json.JSONDecodeError as error:
                print(f"{arguments.events}:{number}: not JSON ({error.msg})", file=sys.stderr)
                return 2
            if not isinstance(fields, dict) or fields.get("evt.name") not in KNOWN_EVENTS:
                print(f"{arguments.events}:{number}: needs an object with a known evt.name", file=sys.stderr)
                return 2
            events += 1
            event = Event(fields)
            event.setdefault("_scope", None)
            for rule in evaluate_event(event, rules):
                fired[rule.id] += 1
                print(f"{arguments.events}:{number}: {rule.id} {rule.priority}: {rule.render(event)}")
    summary = ", ".join(f"{rule}={count}" for rule, count in sorted(fired.items())) or "no rule fired"
    print(f"{events} events; {summary}")
    return 0
