"""A labelled redaction corpus: sensitive cases and hard negatives, each tagged with its category.

`cases()` returns every case (generated from a fixed seed, plus hand-written ones); `score()` runs a redactor
over them and returns recall and false-positive rate per category. `benchmarks/score_redaction.py` prints the
table; `tests/redaction/test_corpus.py` holds the floors.

A sensitive case passes when none of its secrets survives redaction (and, when `expected` is given, when the
output is exactly that: the text around the secret is kept byte for byte). A negative passes when the value
comes back unchanged. Cases in `scan` mode are judged by `veil scan`'s findings instead: a masked negative
must give none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Case:
    """One labelled value: where it would appear (key, None for free text) and what must happen to it."""

    category: str
    sensitive: bool
    value: Any
    key: str | None = None
    secrets: tuple[str, ...] = ()
    expected: Any = None
    mode: str = "redact"  # or "scan"


# The categories issue 17 adds (1-5 detected, 6-8 exempted) and the ones the engine had before it.
NEW_SENSITIVE = ("cli_credential", "phone", "prose_token", "url_one_time", "datastore_auth")
NEW_NEGATIVE = ("masked_fragment", "sensitive_word_non_secret", "already_masked")
