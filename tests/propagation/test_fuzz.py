"""Hypothesis: no header makes extraction raise, and valid headers survive extract → inject unchanged."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace

from veil.propagation import PROPAGATOR_NAMES, build_propagator
from veil.propagation.tracecontext import MAX_TRACESTATE_LENGTH, TraceContextPropagator

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

propagator = TraceContextPropagator()
everything = build_propagator(list(PROPAGATOR_NAMES[:-1]))

HEX = "0123456789abcdef"
hex_id = st.text(alphabet=HEX, min_size=32, max_size=32).filter(lambda value: value.strip("0") != "")
span_hex = st.text(alphabet=HEX, min_size=16, max_size=16).filter(lambda value: value.strip("0") != "")
flags = st.sampled_from(["00", "01", "02", "03"])

key_first = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789")
key_rest = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-*/@", max_size=20)
keys = st.builds(lambda first, rest: first + rest, key_first, key_rest)
value_char = st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters=",=")
values = st.text(alphabet=value_char, min_size=1, max_size=30).filter(lambda value: not value.endswith(" "))
members = st.lists(st.tuples(keys, values), max_size=32, unique_by=lambda member: member[0])

traceparent_like = st.one_of(
    st.text(max_size=80),
    st.text(alphabet=HEX + "-ABCDEFxX \t", max_size=70),
    st.builds(
        lambda v, t, s, f, tail: f"{v}-{t}-{s}-{f}{tail}",
        st.text(HEX, min_size=2, max_size=2),
        hex_id,
        span_hex,
        st.text(HEX, min_size=2, max_size=2),
        st.text(max_size=10),
    ),
)
header_value = st.one_of(
    st.none(),
    st.text(max_size=200),
    st.binary(max_size=100),
    st.integers(),
    st.lists(st.one_of(st.text(max_size=60), st.binary(max_size=30), st.none()), max_size=4),
)
header_names = st.sampled_from(
    [
        "traceparent",
        "tracestate",
        "baggage",
        "b3",
        "x-b3-traceid",
        "x-b3-spanid",
        "x-b3-sampled",
        "x-b3-flags",
        "uber-trace-id",
        "uberctx-user",
        "uberctx-",
        "TraceParent",
    ]
)


@pytest.fixture(autouse=True)
def quiet_logs() -> Iterator[None]:
    # The upstream baggage propagator logs a warning per malformed member; keep the fuzz output readable.
    logger = logging.getLogger("opentelemetry")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@FAST
@given(traceparent_like, st.text(max_size=300))
def test_tracecontext_extract_never_raises_on_text(traceparent: str, tracestate: str) -> None:
    context = propagator.extract({"traceparent": traceparent, "tracestate": tracestate})
    span_context = trace.get_current_span(context).get_span_context()
    if span_context.is_valid:
        carrier: dict[str, str] = {}
        propagator.inject(carrier, context)
        assert len(carrier["traceparent"]) == 55
        assert len(carrier.get("tracestate", "")) <= MAX_TRACESTATE_LENGTH


@FAST
@given(st.dictionaries(header_names, header_value, max_size=8))
def test_every_propagator_together_never_raises(carrier: dict[str, object]) -> None:
    context = everything.extract(carrier)
    out: dict[str, str] = {}
    everything.inject(out, context)


@FAST
@given(hex_id, span_hex, flags, members, st.sampled_from(["", " ", "\t", " \t"]))
def test_valid_headers_round_trip(
    trace_id: str, span_id: str, flag: str, state: list[tuple[str, str]], ows: str
) -> None:
    traceparent = f"00-{trace_id}-{span_id}-{flag}"
    tracestate = ",".join(f"{key}={value}" for key, value in state)
    received = {
        "traceparent": f"{ows}{traceparent}{ows}",
        "tracestate": f"{ows},{ows}".join(f"{key}={value}" for key, value in state),
    }
    carrier: dict[str, str] = {}
    propagator.inject(carrier, propagator.extract(received))
    assert carrier["traceparent"] == traceparent
    assert carrier.get("tracestate", "") == tracestate
