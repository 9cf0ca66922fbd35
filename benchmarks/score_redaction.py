"""Recall and false-positive rate of the redaction engine per category, on the corpus in tests/redaction/corpus.

    python benchmarks/score_redaction.py            # the table
    python benchmarks/score_redaction.py --failures # plus every case that failed (category, key, output)

A sensitive case counts as caught when none of its secrets survives (and, where the corpus gives the exact
expected output, when the output is exactly that); a negative counts as a false positive when its value
changes, or, for `scan` cases, when `veil scan` reports anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redaction.corpus import NEW_NEGATIVE, NEW_SENSITIVE
from tests.redaction.corpus.generated import cases
from tests.redaction.corpus.scoring import score, totals

from veil.redaction import Redactor
from veil.redaction.scan import Scanner


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--failures", action="store_true", help="print every failed case")
    arguments = parser.parse_args()
    corpus = cases()
    tallies = score(corpus, Redactor.default(), Scanner())
    order = [*NEW_SENSITIVE, *NEW_NEGATIVE, *sorted(set(tallies) - set(NEW_SENSITIVE) - set(NEW_NEGATIVE))]
    print(f"{'category':<28} {'sensitive':>9} {'recall':>8} {'negatives':>9} {'FP rate':>8}")
    for category in order:
        tally = tallies.get(category)
        if tally is None:
            continue
        print(
            f"{category:<28} {tally.sensitive:>9} {_percent(tally.recall):>8} "
            f"{tally.negatives:>9} {_percent(tally.false_positive_rate):>8}"
        )
    total = totals(tallies)
    print(
        f"{'all':<28} {total.sensitive:>9} {_percent(total.recall):>8} "
        f"{total.negatives:>9} {_percent(total.false_positive_rate):>8}"
    )
    if arguments.failures:
        for category in order:
            for case, output in tallies.get(category, None).failures if category in tallies else ():
                kind = "MISS" if case.sensitive else "FP"
                print(f"{kind} {category} key={case.key!r}\n   in : {case.value!r}\n   out: {output!r}")


if __name__ == "__main__":
    main()
