"""`veil scan PATH...`: look for secrets and personal data in log files and telemetry dumps.

Plain text lines are scanned as free text; lines holding JSON (NDJSON logs, OTLP/JSON exports, console
exporter output) are parsed so key names count too (`{"password": "..."}`, OTLP `{"key": ..., "value": ...}`
attributes); a file that is one JSON document is walked whole. Findings print as `file:line: category` (with
the key when there is one), never the secret itself. Exit status: 0 clean, 1 findings, 2 unreadable input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from veil.redaction.config import RedactionConfig
from veil.redaction.engine import Redactor

_MAX_LINE = 1 << 20
_ANY_VALUE_KEYS = ("stringValue", "intValue", "doubleValue", "boolValue", "bytesValue", "arrayValue", "kvlistValue")


@dataclass(frozen=True)
class Finding:
    """One secret found: where (file, line, optional key or JSON path) and of which category."""

    path: str
    line: int
    category: str
    key: str | None = None

    def __str__(self) -> str:
        where = f" (key {self.key})" if self.key else ""
        return f"{self.path}:{self.line}: {self.category}{where}"


def _otlp_value(value: dict[str, Any]) -> Any:
    for name in _ANY_VALUE_KEYS:
        if name in value:
            inner = value[name]
            if name == "arrayValue" and isinstance(inner, dict):
                return [_otlp_value(item) for item in inner.get("values", []) if isinstance(item, dict)]
            return inner
    return None


def walk_json(node: Any, key: str | None, emit: Callable[[str | None, Any], None]) -> None:
    """Call `emit(key, value)` for every scalar in a JSON document, with OTLP attributes seen as key → value."""
    stack: list[tuple[Any, str | None]] = [(node, key)]
    while stack:
        current, current_key = stack.pop()
        if isinstance(current, dict):
            name = current.get("key")
            value = current.get("value")
            if isinstance(name, str) and isinstance(value, dict) and any(k in value for k in _ANY_VALUE_KEYS):
                inner = _otlp_value(value)
                if isinstance(inner, (dict, list)):
                    stack.append((inner, name))
                else:
                    emit(name, inner)
                continue
            for inner_key, inner_value in current.items():
                stack.append((inner_value, str(inner_key)))
        elif isinstance(current, list):
            stack.extend((item, current_key) for item in current)
        elif current is not None:
            emit(current_key, current)


class Scanner:
    """Applies the redaction detectors to text and JSON, reporting categories instead of redacting."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor(RedactionConfig(max_scan_length=_MAX_LINE))

    def scan_value(self, key: str | None, value: Any) -> list[str]:
        return self.redactor.findings(key, value)

    def scan_text_line(self, path: str, number: int, line: str) -> Iterator[Finding]:
        stripped = line.strip()
        if not stripped:
            return
        document = _json_container(stripped) if stripped[0] in "{[" else None
        if document is not None:
            yield from self._scan_document(path, number, document)
            return
        for category in self.scan_value(None, line):
            yield Finding(path, number, category)

    def _scan_document(self, path: str, number: int, document: Any) -> Iterator[Finding]:
        found: list[Finding] = []

        def emit(key: str | None, value: Any) -> None:
            for category in self.scan_value(key, value):
                found.append(Finding(path, number, category, key))

        walk_json(document, None, emit)
        yield from found

    def scan_stream(self, path: str, stream: TextIO) -> Iterator[Finding]:
        text = stream.read()
        stripped = text.lstrip()
        document = _json_container(text) if stripped[:1] in ("{", "[") and "\n" in stripped.strip() else None
        if document is not None:
            yield from self._scan_pretty_document(path, text, document)
            return
        for number, line in enumerate(text.splitlines(), start=1):
            yield from self.scan_text_line(path, number, line)

    def _scan_pretty_document(self, path: str, text: str, document: Any) -> Iterator[Finding]:
        # A multi-line JSON document: findings are reported on the first line that holds the key.
        lines = text.splitlines()
        for finding in self._scan_document(path, 0, document):
            line = 0
            if finding.key:
                needle = json.dumps(finding.key)
                line = next((index for index, content in enumerate(lines, start=1) if needle in content), 0)
            yield Finding(path, line, finding.category, finding.key)


def scan_paths(
    paths: Iterable[str], scanner: Scanner | None = None, stdin: TextIO | None = None
) -> tuple[list[Finding], list[str]]:
    """Findings for every path ('-' is standard input) and the errors for paths that could not be read."""
    scanner = scanner or Scanner()
    findings: list[Finding] = []
    errors: list[str] = []
    for path in paths:
        if path == "-":
            findings.extend(scanner.scan_stream("<stdin>", stdin or sys.stdin))
            continue
        try:
            with open(path, encoding="utf-8", errors="replace") as stream:
                findings.extend(scanner.scan_stream(path, stream))
        except OSError as error:
            errors.append(f"{path}: {error.strerror or error}")
    return findings, errors


def main(argv: list[str]) -> int:
    """Entry point of `veil scan PATH...`; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="veil scan",
        description="Find secrets and personal data in log files and telemetry dumps (never prints them).",
    )
    parser.add_argument("paths", nargs="*", default=["-"], help="files to scan; '-' or nothing reads stdin")
    parser.add_argument("--json", action="store_true", help="print findings as JSON lines")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_:
        return 2 if exit_.code else 0
    findings, errors = scan_paths(arguments.paths)
    for error in errors:
        print(f"veil scan: cannot read {error}", file=sys.stderr)
    if not arguments.quiet:
        for finding in findings:
            if arguments.json:
                print(
                    json.dumps(
                        {"path": finding.path, "line": finding.line, "category": finding.category, "key": finding.key}
                    )
                )
            else:
                print(finding)
    categories = sorted({finding.category for finding in findings})
    summary = f"veil scan: {len(findings)} finding(s)" + (f" ({', '.join(categories)})" if categories else "")
    print(summary, file=sys.stderr)
    if errors:
        return 2
    return 1 if findings else 0


def _json_container(text: str) -> dict[str, Any] | list[Any] | None:
    """`text` parsed as JSON when it is an object or an array; None otherwise."""
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, (dict, list)) else None
