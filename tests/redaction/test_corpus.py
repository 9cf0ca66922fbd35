"""Floors on the labelled corpus (tests/redaction/corpus): recall and false positives per category.

`python benchmarks/score_redaction.py --failures` prints the same figures and every failing case.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.redaction.corpus import NEW_NEGATIVE, NEW_SENSITIVE
from tests.redaction.corpus.generated import cases
from tests.redaction.corpus.scoring import Tally, score, totals
from veil.redaction import Redactor
from veil.redaction.scan import Scanner

# Categories the engine handled before issue 17: nothing may regress there (every case passed before).
EXISTING_FLAWLESS = (
    "vendor_token",
    "assignment",
    "secret_key",
    "header",
    "url_credential",
    "sql_literal",
    "payment_card",
    "iban",
    "us_ssn",
    "email",
    "identifier",
    "number",
    "benign_key",
    "benign_url",
    "benign_sql",
    "benign_text",
)
NEW_RECALL_FLOOR = 0.97
FALSE_POSITIVE_CEILING = 0.02


@pytest.fixture(scope="module")
def tallies() -> dict[str, Tally]:
    return score(cases(), Redactor.default(), Scanner())


def _failures(tally: Tally) -> str:
    return "\n".join(
        f"{'MISS' if case.sensitive else 'FP'} {case.key!r}: {case.value!r} -> {output!r}"
        for case, output in tally.failures[:10]
    )


def test_the_corpus_is_broad(tallies: dict[str, Tally]) -> None:
    total = totals(tallies)
    assert total.sensitive >= 500 and total.negatives >= 300
    for category in NEW_SENSITIVE:
        assert tallies[category].sensitive >= 40 and tallies[category].negatives >= 20, category
    for category in NEW_NEGATIVE:
        assert tallies[category].negatives >= 30, category


def test_overall_recall_and_false_positive_rate(tallies: dict[str, Tally]) -> None:
    total = totals(tallies)
    assert total.recall is not None and total.recall >= 0.99
    assert total.false_positive_rate is not None and total.false_positive_rate <= FALSE_POSITIVE_CEILING


@pytest.mark.parametrize("category", NEW_SENSITIVE + NEW_NEGATIVE)
def test_new_categories_meet_their_floors(tallies: dict[str, Tally], category: str) -> None:
    tally = tallies[category]
    if tally.sensitive:
        assert tally.recall is not None and tally.recall >= NEW_RECALL_FLOOR, _failures(tally)
    assert tally.false_positive_rate is not None and tally.false_positive_rate <= FALSE_POSITIVE_CEILING, _failures(
        tally
    )


@pytest.mark.parametrize("category", EXISTING_FLAWLESS)
def test_no_regression_on_existing_categories(tallies: dict[str, Tally], category: str) -> None:
    assert not tallies[category].failures, _failures(tallies[category])


def test_redaction_is_idempotent_on_the_corpus() -> None:
    """A redacted value is clean: redacting it again changes nothing (markers are never taken for secrets)."""
    redactor = Redactor.default()
    for case in cases():
        if case.mode == "redact":
            once = redactor.redact(case.key, case.value)
            assert redactor.redact(case.key, once) == once, (case.key, case.value, once)


_PASSWORDS = st.text(alphabet=string.ascii_letters + string.digits + "!#%+_.^", min_size=8, max_size=24).filter(
    lambda value: value[0].isalnum() and any(char.isdigit() for char in value)
)
_WORDS = st.sampled_from(
    ["shop", "db.internal", "--verbose", "-h", "cache", "orders", "-e", "'select 1'", "<", "x.sql"]
)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(["mysql -u root -p{pw}", "docker login -u ci -p {pw}", "redis-cli -a {pw}", "curl -u ci:{pw}"]),
    _PASSWORDS,
    st.lists(_WORDS, max_size=4),
    st.lists(_WORDS, max_size=3),
)
def test_command_line_passwords_are_replaced_and_everything_else_kept(
    template: str, password: str, before: list[str], after: list[str]
) -> None:
    command = template.format(pw=password)
    text = " ".join(["running", *before, command, *after]) if not before else " ".join([*after, command])
    redacted = Redactor.default().redact(None, text)
    assert redacted == text.replace(password, "[REDACTED:password]")
