"""Scoring a redactor against the corpus: recall on sensitive cases and false positives on negatives."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tests.redaction.corpus import Case


@dataclass
class Tally:
    """One category's counts, and the cases that failed (for the report)."""

    sensitive: int = 0
    caught: int = 0
    negatives: int = 0
    touched: int = 0
    failures: list[tuple[Case, Any]] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.caught / self.sensitive if self.sensitive else None

    @property
    def false_positive_rate(self) -> float | None:
        return self.touched / self.negatives if self.negatives else None


def _leaks(case: Case, output: Any) -> bool:
    text = repr(output) if not isinstance(output, str) else output
    return any(secret in text for secret in case.secrets)


def judge(case: Case, redactor: Any, scanner: Any) -> tuple[bool, Any]:
    """(passed, output) for one case."""
    if case.mode == "scan":
        findings = list(scanner.scan_text_line("corpus", 1, case.value))
        return (bool(findings) if case.sensitive else not findings), [str(f) for f in findings]
    output = redactor.redact(case.key, case.value)
    if case.sensitive:
        passed = not _leaks(case, output) and (case.expected is None or output == case.expected)
        if not case.secrets:
            passed = passed and output != case.value
        return passed, output
    return output == case.value, output


def score(cases: list[Case], redactor: Any, scanner: Any) -> dict[str, Tally]:
    tallies: dict[str, Tally] = defaultdict(Tally)
    for case in cases:
        tally = tallies[case.category]
        passed, output = judge(case, redactor, scanner)
        if case.sensitive:
            tally.sensitive += 1
            tally.caught += passed
        else:
            tally.negatives += 1
            tally.touched += not passed
        if not passed:
            tally.failures.append((case, output))
    return dict(tallies)


def totals(tallies: dict[str, Tally]) -> Tally:
    total = Tally()
    for tally in tallies.values():
        total.sensitive += tally.sensitive
        total.caught += tally.caught
        total.negatives += tally.negatives
        total.touched += tally.touched
    return total
