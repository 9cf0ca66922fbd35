"""The sensor's prefilter for `open`: whether a file name could match any rule, decided by a few string tests.

Most files a service opens (templates, static files, its own modules) match no rule. The prefilter lets the
sensor drop such an `open` event before it builds the event's fields or looks up the request. It is derived once
per configuration from the rules' parsed conditions (not their closures), reading each condition as a test the
file name must pass for the condition to hold. Every step can only admit more, never less:

* `fd.name`, `fd.path` or `fd.basename` compared with `=`, `in`, `startswith`, `endswith` or `contains` is
  kept as it is (the comparisons of veil.security.expression on text, exactly);
* `evt.name` compared with names that exclude `open` admits nothing (that branch cannot hold for `open`);
* `a and b ...` holds only if its first term that has a test holds: that test;
* `a or b ...`: the union of the terms' tests, or no test (admit everything) when one term has none;
* anything else (`not`, other fields, other comparisons, `exists`) has no test.

So a name the prefilter rejects matches no rule (tests/security/test_prefilter.py checks it against the full
evaluation). The answer for an absolute name depends on the name alone and is remembered (MAX_REMEMBERED names).
A rule without a test on `open`, or a Python rule (which has no condition to read), turns the prefilter off and
every `open` event is evaluated in full, as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from veil.security.events import normal_path, open_name
from veil.security.expression import Node

PATH_FIELDS: Final = ("fd.name", "fd.path", "fd.basename")
MAX_REMEMBERED: Final = 1024  # absolute names whose answer is kept (each at most MAX_REMEMBERED_LENGTH long)
MAX_REMEMBERED_LENGTH: Final = 1024
Tests = Mapping[str, "TextTest"]  # by field; an empty mapping admits nothing


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class TextTest:
    """Passes a text equal to one of `exact`, starting or ending with one of `prefixes` / `suffixes`, or
    containing one of `parts`."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    suffixes: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()

    def __or__(self, other: TextTest) -> TextTest:
        return TextTest(
            self.exact | other.exact,
            _unique((*self.prefixes, *other.prefixes)),
            _unique((*self.suffixes, *other.suffixes)),
            _unique((*self.parts, *other.parts)),
        )

    def passes(self, text: str) -> bool:
        if text in self.exact or text.startswith(self.prefixes) or text.endswith(self.suffixes):
            return True
        for part in self.parts:  # noqa: SIM110 - a loop, not a generator: this runs for every open()
            if part in text:
                return True
        return False


def _union(first: Tests, second: Tests) -> Tests:
    merged = dict(first)
    for key, test in second.items():
        merged[key] = merged[key] | test if key in merged else test
    return merged


def _comparison(node: Node, event: str) -> Tests | None:
    comparison, value = node.comparison, node.value
    if node.field == "evt.name":
        if comparison == "=" and str(value) != event:
            return {}
        if comparison == "in" and event not in {str(item) for item in value}:
            return {}
        return None
    if node.field not in PATH_FIELDS:
        return None
    if comparison == "=":
        test = TextTest(exact=frozenset({str(value)}))
    elif comparison == "in":
        test = TextTest(exact=frozenset(str(item) for item in value))
    elif comparison == "startswith":
        test = TextTest(prefixes=(str(value),))
    elif comparison == "endswith":
        test = TextTest(suffixes=(str(value),))
    elif comparison == "contains":
        test = TextTest(parts=(str(value),))
    else:
        return None
    return {node.field: test}


def necessary(node: Node, macros: Mapping[str, Node], event: str = "open") -> Tests | None:
    """Tests on the path fields that `event` must pass for the condition to hold; None when there are none."""
    op = node.op
    if op == "macro":
        return necessary(macros[node.field], macros, event)
    if op == "cmp":
        return _comparison(node, event)
    if op == "and":
        for child in node.children:
            found = necessary(child, macros, event)
            if found is not None:
                return found
        return None
    if op == "or":
        union: Tests = {}
        for child in node.children:
            found = necessary(child, macros, event)
            if found is None:
                return None
            union = _union(union, found)
        return union
    return None


def _on_path(tests: Tests) -> TextTest | None:
    """The `fd.path` and `fd.basename` tests as one test on the path. A normalized path always holds a `/` and its
    basename is what follows the last one, so `basename = b` is `path endswith /b` and `basename endswith s` is
    `path endswith s` when b and s hold no `/` (a basename never does: such a test cannot pass)."""
    path, basename = tests.get("fd.path"), tests.get("fd.basename")
    if basename is not None:
        if basename.prefixes or basename.parts:
            return None  # kept as a separate test on the basename
        suffixes = [f"/{item}" for item in sorted(basename.exact) if "/" not in item]
        suffixes += [item for item in basename.suffixes if "/" not in item]
        path = (path or TextTest()) | TextTest(suffixes=tuple(suffixes))
    return path


def _open_prefilter(tests: Tests) -> Callable[[tuple[Any, ...]], bool]:
    # One closure over locals, no calls on the common path and no test of an empty set: it runs for every
    # open() the process makes.
    empty = TextTest()
    name = tests.get("fd.name") or empty
    name_exact, name_prefixes, name_suffixes, name_parts = name.exact, name.prefixes, name.suffixes, name.parts
    on_path = _on_path(tests)
    path = (on_path if on_path is not None else tests.get("fd.path")) or empty
    path_exact, path_prefixes, path_suffixes, path_parts = path.exact, path.prefixes, path.suffixes, path.parts
    basename = (tests.get("fd.basename") if on_path is None else None) or empty
    base_exact, base_prefixes, base_suffixes, base_parts = (
        basename.exact, basename.prefixes, basename.suffixes, basename.parts
    )  # fmt: skip
    any_path = "fd.path" in tests or "fd.basename" in tests
    any_basename = basename is not empty
    # A name already absolute and normal holds no "/." and no "//": parts holding one cannot be in it.
    normal_parts = tuple(part for part in path_parts if "/." not in part and "//" not in part)
    # Path suffixes by their last character: one dictionary lookup picks the few worth an endswith.
    always = "" in path_suffixes
    by_last: dict[str, tuple[str, ...]] = {}
    for suffix in path_suffixes:
        by_last[suffix[-1:]] = (*by_last.get(suffix[-1:], ()), suffix)

    def decide(text: str) -> bool:
        for part in name_parts:
            if part in text:
                return True
        if (
            (name_exact and text in name_exact)
            or (name_prefixes and text.startswith(name_prefixes))
            or (name_suffixes and text.endswith(name_suffixes))
        ):
            return True
        if not any_path:
            return False
        if text[:1] == "/" and "/." not in text and "//" not in text:
            full = text  # normal_path's own fast path: absolute and normal already
            parts = normal_parts
        else:
            normal = normal_path(text)
            if normal is None:
                return False
            full, parts = normal, path_parts
        for part in parts:
            if part in full:
                return True
        if (path_exact and full in path_exact) or (path_prefixes and full.startswith(path_prefixes)) or always:
            return True
        ending = by_last.get(full[-1:])
        if ending is not None and full.endswith(ending):
            return True
        if not any_basename:
            return False
        last = full.rpartition("/")[2]
        for part in base_parts:
            if part in last:
                return True
        return (
            (bool(base_exact) and last in base_exact)
            or (bool(base_prefixes) and last.startswith(base_prefixes))
            or (bool(base_suffixes) and last.endswith(base_suffixes))
        )

    # An absolute name's answer depends on the name alone (its normal form ignores the working directory and
    # the home directory), so it is remembered: a service opens the same few files again and again.
    decisions: dict[str, bool] = {}

    def admits(args: tuple[Any, ...]) -> bool:
        """False when no rule on `open` can match an event with these arguments."""
        text = args[0]
        if type(text) is not str:
            text = open_name(args)
            if text is None:
                return False  # a file descriptor: the event has no fields, no rule sees it
        decided = decisions.get(text)
        if decided is not None:
            return decided
        decided = decide(text)
        if text[:1] == "/" and len(text) <= MAX_REMEMBERED_LENGTH and len(decisions) < MAX_REMEMBERED:
            decisions[text] = decided
        return decided

    return admits


def open_prefilter(tests: Sequence[Tests | None]) -> Callable[[tuple[Any, ...]], bool] | None:
    """The prefilter for the rules on `open` (their `open_tests`); None when one of them has no test."""
    union: Tests = {}
    for found in tests:
        if found is None:
            return None
        union = _union(union, found)
    return _open_prefilter(union)
