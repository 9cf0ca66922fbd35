"""W3C Trace Context Level 2 (`traceparent` / `tracestate`) for OpenTelemetry Python.

`TraceContextPropagator` replaces OpenTelemetry's `TraceContextTextMapPropagator`. The differences, all
deliberate and documented in docs/propagation.md:

* an inbound `tracestate` with any invalid member (a key outside the grammar or longer than 256 characters, a
  value with a character outside the grammar such as ``=``, an empty value, no ``=`` at all) or with more than
  32 members is discarded as a whole, as the W3C test suite expects in strict mode; empty members (``a=1,,b=2``)
  are not list members and are ignored. For a repeated key the first (leftmost) occurrence wins, because the
  leftmost entry is the most recently written one.
* keys follow the current Level 2 grammar, ``(lcalpha / DIGIT) 0*255(keychar)`` where keychar includes ``@``:
  keys may start with a digit and carry any number of ``@`` (OpenTelemetry's `TraceState` still enforces the
  older ``tenant@system`` split with its 241/14 character limits and silently rejects such keys). Parsed
  state is held in `Level2TraceState`, a `TraceState` subclass that keeps these rules through
  `add` / `update` / `delete`, so samplers and SDK children do not lose members.
* the propagated header is bounded to `MAX_TRACESTATE_LENGTH` characters using the specification's
  truncation order (members longer than 128 characters first, then from the right); OpenTelemetry drops
  everything above 8192 characters.
* several `traceparent` values are accepted only when they are identical; several `tracestate` values are
  joined with ``,``; bytes values are decoded as ASCII; anything else is ignored.
* on inject the trace-flags byte keeps the bits Level 2 defines (sampled 0x01, random-trace-id 0x02) and
  clears the undefined ones, as the specification requires ("Vendors MUST set those to zero").
* extract and inject never raise: an internal error is logged once (rate-limited) and the carrier or context
  is left as it was.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence

from opentelemetry import trace
from opentelemetry.context.context import Context
from opentelemetry.propagators import textmap
from opentelemetry.trace.span import TraceState

from veil._guard import log_once
from veil._sdk import set_trace_state_members

__all__ = [
    "MAX_TRACESTATE_LENGTH",
    "MAX_TRACESTATE_MEMBERS",
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "Level2TraceState",
    "TraceContextPropagator",
    "parse_tracestate",
]

_logger = logging.getLogger(__name__)

TRACEPARENT_HEADER = "traceparent"
TRACESTATE_HEADER = "tracestate"

#: The specification's cap on list members.
MAX_TRACESTATE_MEMBERS = 32
#: The longest `tracestate` veil keeps and sends, in characters (the specification asks for at least 512 and
#: for the limit to be documented). 4096 keeps the header well under the 8 KiB per-header-line limit of common
#: servers and proxies (nginx, Apache), which answer 400/431 to larger lines.
MAX_TRACESTATE_LENGTH = 4096
# Members longer than this are the first to go when the header must be truncated (specification guidance).
_LONG_MEMBER_LENGTH = 128
# How much of an inbound `tracestate` is examined at all: the longest valid header (32 members of 513
# characters and their commas) plus room for optional whitespace, so hostile input costs bounded work.
_MAX_SCAN_LENGTH = 17408
# How many comma-separated pieces (members, empty ones included) are examined. The grammar allows 32 list
# members; empty ones are tolerated, but a header with more pieces than this is not Trace Context.
_MAX_SCAN_PIECES = 128
# How many `traceparent` values are compared before the header is declared malformed.
_MAX_TRACEPARENT_VALUES = 8

_FLAG_SAMPLED = 0x01
_FLAG_RANDOM_TRACE_ID = 0x02
_DEFINED_FLAGS = _FLAG_SAMPLED | _FLAG_RANDOM_TRACE_ID

_OWS = " \t"
_TRACEPARENT_LENGTH = 55
_HEX_ID = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}", re.ASCII)
_ZERO_TRACE_ID = "0" * 32
_ZERO_SPAN_ID = "0" * 16

_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/@]{0,255}", re.ASCII)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]", re.ASCII)


def _is_valid_member(key: object, value: object) -> bool:
    return (
        isinstance(key, str)
        and isinstance(value, str)
        and _KEY.fullmatch(key) is not None
        and _VALUE.fullmatch(value) is not None
    )


def _member_length(key: str, value: str) -> int:
    return len(key) + 1 + len(value)


def _fit(members: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Keep at most 32 members within `MAX_TRACESTATE_LENGTH`, dropping whole members in the spec's order."""
    del members[MAX_TRACESTATE_MEMBERS:]
    total = sum(_member_length(key, value) for key, value in members) + max(len(members) - 1, 0)
    if total <= MAX_TRACESTATE_LENGTH:
        return members
    # First the members longer than 128 characters, from the right.
    for index in range(len(members) - 1, -1, -1):
        if total <= MAX_TRACESTATE_LENGTH:
            break
        length = _member_length(*members[index])
        if length > _LONG_MEMBER_LENGTH:
            del members[index]
            total -= length + (1 if members else 0)
    # Then from the right.
    while members and total > MAX_TRACESTATE_LENGTH:
        key, value = members.pop()
        total -= _member_length(key, value) + (1 if members else 0)
    return members


def _valid_members(entries: Iterable[tuple[object, object]]) -> list[tuple[str, str]]:
    """Valid members in order, first occurrence of a key kept, bounded by the Level 2 limits."""
    members: dict[str, str] = {}
    for key, value in entries:
        if not isinstance(key, str) or not isinstance(value, str) or not _is_valid_member(key, value):
            _logger.debug("tracestate member %r=%r skipped: not valid Level 2 syntax", key, value)
            continue
        if key in members:
            continue
        members[key] = value
        if len(members) == MAX_TRACESTATE_MEMBERS:
            break
    return _fit(list(members.items()))


class Level2TraceState(TraceState):
    """A `TraceState` validated with the W3C Trace Context Level 2 rules, not OpenTelemetry's older ones.

    Construction never raises and never drops valid members because of invalid ones: invalid pairs are
    skipped, a repeated key keeps its first occurrence, more than 32 members keep the leftmost 32, and the
    whole list is bounded to `MAX_TRACESTATE_LENGTH` characters. `add`, `update` and `delete` return a
    `Level2TraceState`, so the Level 2 keys survive mutation by samplers; when adding would exceed 32 members
    the rightmost member is removed, as the specification asks.
    """

    def __init__(self, entries: Sequence[tuple[str, str]] | None = None) -> None:
        super().__init__(None)
        if entries:
            set_trace_state_members(self, dict(_valid_members(entries)))

    @classmethod
    def _from_valid(cls, members: list[tuple[str, str]]) -> Level2TraceState:
        state = cls()
        set_trace_state_members(state, dict(_fit(members)))
        return state

    def add(self, key: str, value: str) -> TraceState:
        """A copy with `key=value` added on the left; unchanged if the pair is invalid or the key exists."""
        if not _is_valid_member(key, value) or key in self:
            return self
        return self._from_valid([(key, value), *self.items()])

    def update(self, key: str, value: str) -> TraceState:
        """A copy with `key` set to `value` and moved to the left (added if absent, like OpenTelemetry)."""
        if not _is_valid_member(key, value):
            return self
        rest = [(k, v) for k, v in self.items() if k != key]
        return self._from_valid([(key, value), *rest])

    def delete(self, key: str) -> TraceState:
        """Return a copy without `key`; unchanged if it is absent."""
        if key not in self:
            return self
        return self._from_valid([(k, v) for k, v in self.items() if k != key])

    @classmethod
    def from_header(cls, header_list: list[str]) -> TraceState:
        """Parse one or more `tracestate` header values (see `parse_tracestate`)."""
        return parse_tracestate(header_list)


_EMPTY_TRACE_STATE = Level2TraceState()


def _header_strings(values: object) -> list[str]:
    """The str values a getter returned: bytes decoded as ASCII, everything else ignored."""
    if values is None:
        return []
    if isinstance(values, list) and len(values) == 1 and isinstance(values[0], str):
        return values  # the common shape, from the default getter
    if isinstance(values, (str, bytes, bytearray)):
        values = [values]
    if not isinstance(values, Iterable):
        return []
    strings: list[str] = []
    for value in values:
        if isinstance(value, str):
            strings.append(value)
        elif isinstance(value, (bytes, bytearray)):
            try:
                strings.append(value.decode("ascii"))
            except UnicodeDecodeError:
                continue
    return strings


def parse_tracestate(values: Iterable[str]) -> Level2TraceState:
    """Parse `tracestate` header values (several values are joined with ``,``) into a `Level2TraceState`.

    Members are split on ``,`` and trimmed of spaces and tabs; empty members are skipped and a repeated key
    keeps its first occurrence. Any invalid member, or more than 32 members, makes the whole header invalid:
    the result is empty. Work is bounded: a header longer than 17408 characters or with more than 128
    comma-separated pieces cannot be valid and is discarded unexamined.
    """
    combined = ",".join(_header_strings(values))
    if not combined:
        return _EMPTY_TRACE_STATE
    if len(combined) > _MAX_SCAN_LENGTH:
        return _discarded("longer than %d characters", _MAX_SCAN_LENGTH)
    pieces = combined.split(",", _MAX_SCAN_PIECES)
    if len(pieces) > _MAX_SCAN_PIECES:
        return _discarded("more than %d comma-separated pieces", _MAX_SCAN_PIECES)
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in pieces:
        member = raw.strip(_OWS)
        if not member:
            continue
        key, separator, value = member.partition("=")
        if not separator or not _is_valid_member(key, value):
            return _discarded("member %r is not valid Level 2 syntax", member[:300])
        if key in seen:
            continue
        seen.add(key)
        pairs.append((key, value))
        if len(pairs) > MAX_TRACESTATE_MEMBERS:
            return _discarded("more than %d members", MAX_TRACESTATE_MEMBERS)
    return Level2TraceState._from_valid(pairs)


def _discarded(reason: str, detail: object) -> Level2TraceState:
    _logger.debug("inbound tracestate discarded: " + reason, detail)
    return _EMPTY_TRACE_STATE


def _parse_traceparent(value: str) -> tuple[int, int, int] | None:
    """`(trace_id, span_id, flags)` from one trimmed `traceparent` value, or None if it must be ignored."""
    if len(value) < _TRACEPARENT_LENGTH:
        return None
    version = value[:2]
    if version == "00":
        if len(value) != _TRACEPARENT_LENGTH:
            return None
    elif version == "ff":
        return None
    elif len(value) > _TRACEPARENT_LENGTH and value[_TRACEPARENT_LENGTH] != "-":
        # A future version may append fields, each introduced by a dash.
        return None
    head = value[:_TRACEPARENT_LENGTH]
    if _HEX_ID.fullmatch(head) is None:
        return None
    trace_id, span_id, flags = head[3:35], head[36:52], head[53:55]
    if trace_id == _ZERO_TRACE_ID or span_id == _ZERO_SPAN_ID:
        return None
    return int(trace_id, 16), int(span_id, 16), int(flags, 16)


def _single_traceparent(values: object) -> str | None:
    """The one `traceparent` value, or None when absent or when several different values were received."""
    strings = _header_strings(values)
    if len(strings) == 1 and "," not in strings[0]:
        return strings[0].strip(_OWS) or None
    distinct: set[str] = set()
    examined = 0
    for value in strings:
        for part in value.split(",", _MAX_TRACEPARENT_VALUES):
            examined += 1
            if examined > _MAX_TRACEPARENT_VALUES:
                return None
            candidate = part.strip(_OWS)
            if candidate:
                distinct.add(candidate)
                if len(distinct) > 1:
                    return None
    return distinct.pop() if distinct else None


class TraceContextPropagator(textmap.TextMapPropagator):
    """Extracts and injects the W3C `traceparent` and `tracestate` headers (Trace Context Level 2).

    A missing or invalid `traceparent` (wrong length, uppercase or non-hex characters, all-zero ids, version
    ``ff``, several different values) leaves the context unchanged and ignores `tracestate`, so a new trace
    starts. Versions above ``00`` are parsed as the specification describes: the first 55 characters, which
    must be followed by a dash or the end of the value. The flags byte is kept as received on the extracted
    `SpanContext`; inject sends the defined bits (sampled, random-trace-id) and clears the others.
    """

    def extract(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        getter: textmap.Getter[textmap.CarrierT] = textmap.default_getter,
    ) -> Context:
        if context is None:
            context = Context()
        try:
            return self._extract(carrier, context, getter)
        except Exception:
            log_once(
                "propagation.tracecontext.extract",
                "veil: traceparent/tracestate extraction failed; continuing without the inbound trace "
                "(the application is unaffected)",
                exc_info=True,
            )
            return context

    def _extract(
        self,
        carrier: textmap.CarrierT,
        context: Context,
        getter: textmap.Getter[textmap.CarrierT],
    ) -> Context:
        traceparent = _single_traceparent(getter.get(carrier, TRACEPARENT_HEADER))
        if traceparent is None:
            return context
        parsed = _parse_traceparent(traceparent)
        if parsed is None:
            return context
        trace_id, span_id, flags = parsed
        trace_state = parse_tracestate(getter.get(carrier, TRACESTATE_HEADER) or ())
        span_context = trace.SpanContext(
            trace_id=trace_id,
            span_id=span_id,
            is_remote=True,
            trace_flags=trace.TraceFlags(flags),
            trace_state=trace_state,
        )
        return trace.set_span_in_context(trace.NonRecordingSpan(span_context), context)

    def inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None = None,
        setter: textmap.Setter[textmap.CarrierT] = textmap.default_setter,
    ) -> None:
        try:
            self._inject(carrier, context, setter)
        except Exception:
            log_once(
                "propagation.tracecontext.inject",
                "veil: traceparent/tracestate injection failed; the request is sent without them "
                "(the application is unaffected)",
                exc_info=True,
            )

    def _inject(
        self,
        carrier: textmap.CarrierT,
        context: Context | None,
        setter: textmap.Setter[textmap.CarrierT],
    ) -> None:
        span_context = trace.get_current_span(context).get_span_context()
        if not span_context.is_valid:
            return
        flags = int(span_context.trace_flags) & _DEFINED_FLAGS
        setter.set(
            carrier,
            TRACEPARENT_HEADER,
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{flags:02x}",
        )
        trace_state = span_context.trace_state
        if trace_state:
            header = trace_state.to_header()
            if len(header) > MAX_TRACESTATE_LENGTH:
                header = ",".join(f"{key}={value}" for key, value in _fit(list(trace_state.items())))
            if header:
                setter.set(carrier, TRACESTATE_HEADER, header)

    @property
    def fields(self) -> set[str]:
        return {TRACEPARENT_HEADER, TRACESTATE_HEADER}
