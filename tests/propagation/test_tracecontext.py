"""TraceContextPropagator against W3C Trace Context Level 2, and where it departs from OpenTelemetry."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.context.context import Context
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanContext, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.trace.span import TraceState

from veil import _guard
from veil.propagation.tracecontext import (
    MAX_TRACESTATE_LENGTH,
    MAX_TRACESTATE_MEMBERS,
    Level2TraceState,
    TraceContextPropagator,
    parse_tracestate,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
VALID = f"00-{TRACE_ID}-{SPAN_ID}-01"

propagator = TraceContextPropagator()


def extracted(carrier: object, context: Context | None = None) -> SpanContext:
    return trace.get_current_span(propagator.extract(carrier, context)).get_span_context()


def injected(context: Context) -> dict[str, str]:
    carrier: dict[str, str] = {}
    propagator.inject(carrier, context)
    return carrier


def remote(flags: int = 1, trace_state: TraceState | None = None) -> Context:
    span_context = SpanContext(
        int(TRACE_ID, 16),
        int(SPAN_ID, 16),
        is_remote=True,
        trace_flags=TraceFlags(flags),
        trace_state=trace_state,
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


@pytest.fixture
def tracer() -> Iterator[trace.Tracer]:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    yield provider.get_tracer("tests.propagation")
    provider.shutdown()


# ---------------------------------------------------------------------------------------------- traceparent


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        (f"00-{TRACE_ID}-{SPAN_ID}-01", 0x01),  # the specification's "sampled" example
        (f"00-{TRACE_ID}-{SPAN_ID}-00", 0x00),  # the "not sampled" example
        (f"00-{TRACE_ID}-{SPAN_ID}-02", 0x02),  # random-trace-id, not sampled
        (f"00-{TRACE_ID}-{SPAN_ID}-03", 0x03),
        (f"00-{TRACE_ID}-{SPAN_ID}-09", 0x09),  # an undefined bit is kept as received on extract
    ],
)
def test_valid_traceparent_is_extracted(header: str, flags: int) -> None:
    span_context = extracted({"traceparent": header})
    assert span_context.trace_id == int(TRACE_ID, 16)
    assert span_context.span_id == int(SPAN_ID, 16)
    assert span_context.trace_flags == flags
    assert span_context.is_remote
    assert span_context.trace_flags.sampled is bool(flags & 1)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "00",
        f"00-{TRACE_ID}-{SPAN_ID}",  # no flags
        f"00-{TRACE_ID}-{SPAN_ID}-1",  # short flags
        f"00-{TRACE_ID}-{SPAN_ID}-011",  # long flags
        f"00-{TRACE_ID}-{SPAN_ID}-01-",  # version 00 admits nothing after the flags
        f"00-{TRACE_ID}-{SPAN_ID}-01-extra",
        f"00-{TRACE_ID[:-1]}-{SPAN_ID}-01",  # short trace-id
        f"00-{TRACE_ID}0-{SPAN_ID}-01",  # long trace-id
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}-01",
        f"00-{TRACE_ID}-{SPAN_ID}0-01",
        f"00-{TRACE_ID.upper()}-{SPAN_ID}-01",  # uppercase hex
        f"00-{TRACE_ID}-{SPAN_ID.upper()}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-0A",
        f"0A-{TRACE_ID}-{SPAN_ID}-01",
        f"00-{'0' * 32}-{SPAN_ID}-01",  # all-zero ids
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-{SPAN_ID}-01",  # forbidden version
        f"ff-{TRACE_ID}-{SPAN_ID}-01-future",
        f"00-{TRACE_ID[:-1]}g-{SPAN_ID}-01",  # non-hex
        f"00-{TRACE_ID}-{SPAN_ID[:-1]}x-01",
        f"00-{TRACE_ID}-{SPAN_ID}-0x",
        f"00_{TRACE_ID}_{SPAN_ID}_01",  # wrong delimiters
        f"00-{TRACE_ID[:-1]}+-{SPAN_ID}-01",
        f"00-{TRACE_ID[:30]}__-{SPAN_ID}-01",  # int(..., 16) would accept underscores
        f"00-{TRACE_ID[:-1]}٣-{SPAN_ID}-01",  # a non-ASCII digit
        f"00- {TRACE_ID[1:]}-{SPAN_ID}-01",
        f"00-{TRACE_ID}-{SPAN_ID}-01\n",
        f"\x0000-{TRACE_ID}-{SPAN_ID}-01",
        f"cc-{TRACE_ID}-{SPAN_ID}-01.what-the-future-will-not-be-like",  # future: a dash must follow
        f"cc-{TRACE_ID}-{SPAN_ID}",  # future version, shorter than 55 characters
        f"1-{TRACE_ID}-{SPAN_ID}-01",
    ],
)
def test_invalid_traceparent_restarts_the_trace_and_drops_tracestate(header: str) -> None:
    context = propagator.extract({"traceparent": header, "tracestate": "rojo=00f067aa0ba902b7"})
    assert context == Context()
    assert not trace.get_current_span(context).get_span_context().is_valid


def test_invalid_traceparent_leaves_the_given_context_unchanged() -> None:
    start = remote(flags=1)
    assert propagator.extract({"traceparent": "garbage", "tracestate": "a=b"}, start) is start


def test_missing_traceparent_ignores_tracestate() -> None:
    assert propagator.extract({"tracestate": "rojo=1"}) == Context()


@pytest.mark.parametrize(
    ("header", "flags"),
    [
        (f"cc-{TRACE_ID}-{SPAN_ID}-01", 0x01),
        (f"cc-{TRACE_ID}-{SPAN_ID}-01-what-the-future-will-be-like", 0x01),
        (f"01-{TRACE_ID}-{SPAN_ID}-09-", 0x09),
        (f"fe-{TRACE_ID}-{SPAN_ID}-ff-{'a' * 500}", 0xFF),
    ],
)
def test_future_versions_are_parsed_from_their_first_55_characters(header: str, flags: int) -> None:
    span_context = extracted({"traceparent": header, "tracestate": "congo=t61rcWkgMzE"})
    assert f"{span_context.trace_id:032x}" == TRACE_ID
    assert f"{span_context.span_id:016x}" == SPAN_ID
    assert span_context.trace_flags == flags  # taken as received
    assert dict(span_context.trace_state) == {"congo": "t61rcWkgMzE"}


def test_future_version_is_downgraded_to_00_on_inject() -> None:
    carrier = injected(propagator.extract({"traceparent": f"cc-{TRACE_ID}-{SPAN_ID}-01-more"}))
    assert carrier["traceparent"] == f"00-{TRACE_ID}-{SPAN_ID}-01"


@pytest.mark.parametrize("padding", [" ", "\t", " \t ", "\t\t"])
def test_optional_whitespace_around_traceparent_is_trimmed(padding: str) -> None:
    assert extracted({"traceparent": f"{padding}{VALID}{padding}"}).is_valid


def test_identical_repeated_traceparent_values_are_accepted() -> None:
    assert extracted({"traceparent": [VALID, f" {VALID}"]}).is_valid
    assert extracted({"traceparent": f"{VALID}, {VALID}"}).is_valid  # a server that joined the repeats


def test_different_repeated_traceparent_values_restart_the_trace() -> None:
    other = f"00-{TRACE_ID}-b7ad6b7169203331-01"
    assert propagator.extract({"traceparent": [VALID, other], "tracestate": "a=b"}) == Context()
    assert propagator.extract({"traceparent": f"{VALID},{other}"}) == Context()


def test_bytes_values_are_decoded_as_ascii() -> None:
    class BytesGetter(Getter[dict[str, bytes]]):
        def get(self, carrier: dict[str, bytes], key: str) -> list[str] | None:
            value = carrier.get(key)
            return None if value is None else [value]  # type: ignore[list-item]

        def keys(self, carrier: dict[str, bytes]) -> list[str]:
            return list(carrier)

    carrier = {"traceparent": VALID.encode(), "tracestate": b"rojo=1"}
    span_context = trace.get_current_span(propagator.extract(carrier, getter=BytesGetter())).get_span_context()
    assert span_context.is_valid
    assert dict(span_context.trace_state) == {"rojo": "1"}
    assert not extracted({"traceparent": [b"\xff" + VALID.encode()[1:]]}).is_valid


# ----------------------------------------------------------------------------------------------- tracestate


def tracestate_of(*headers: str) -> dict[str, str]:
    return dict(extracted({"traceparent": VALID, "tracestate": list(headers)}).trace_state)


def test_specification_tracestate_examples() -> None:
    assert tracestate_of("rojo=00f067aa0ba902b7") == {"rojo": "00f067aa0ba902b7"}
    assert tracestate_of("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE") == {
        "rojo": "00f067aa0ba902b7",
        "congo": "t61rcWkgMzE",
    }


def test_tracestate_order_is_preserved_on_inject() -> None:
    header = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE,a=1,zz=2"
    assert injected(propagator.extract({"traceparent": VALID, "tracestate": header}))["tracestate"] == header


def test_repeated_key_keeps_the_first_occurrence_and_the_other_members() -> None:
    assert tracestate_of("congo=new,rojo=1,congo=old") == {"congo": "new", "rojo": "1"}
    otel = TraceContextTextMapPropagator().extract({"traceparent": VALID, "tracestate": "congo=new,rojo=1,congo=old"})
    assert dict(trace.get_current_span(otel).get_span_context().trace_state) == {}  # what veil improves on


def test_valid_members_keep_their_spaces_inside_and_lose_them_outside() -> None:
    assert tracestate_of("e=ok,f=trailing ,g= leading") == {"e": "ok", "f": "trailing", "g": " leading"}


# Each of these makes the whole header invalid: the W3C suite (strict mode) expects it discarded, not salvaged.
INVALID_MEMBERS = [
    "Upper=2",  # uppercase key
    "k=",  # empty value
    "=v",  # empty key
    "no-equals",
    "b=x=y",  # '=' in the value (test_tracestate_value_illegal_characters)
    "c=tab\there",
    "d=ünï",
    "foo =1",  # space before '=' (test_tracestate_key_illegal_characters)
    "foo.bar=1",
    "@foo=1",  # a key may not start with '@' (test_tracestate_key_illegal_vendor_format)
    "z" * 257 + "=1",  # a key of 257 characters (test_tracestate_key_length_limit)
    "k=" + "v" * 257,  # a value of 257 characters
]


@pytest.mark.parametrize("member", INVALID_MEMBERS)
@pytest.mark.parametrize("place", ["alone", "first", "last", "own header"])
def test_one_invalid_member_discards_the_whole_tracestate(member: str, place: str) -> None:
    headers = {
        "alone": [member],
        "first": [f"{member},bar=2"],
        "last": [f"foo=1,bar=2,{member}"],
        "own header": ["foo=1", member],
    }[place]
    assert tracestate_of(*headers) == {}
    span_context = extracted({"traceparent": VALID, "tracestate": headers})
    assert span_context.is_valid  # the trace continues, only the tracestate is dropped
    assert "tracestate" not in injected(trace.set_span_in_context(trace.NonRecordingSpan(span_context)))


def test_keys_with_at_signs_are_kept_with_the_other_members() -> None:
    """The valid cases of test_tracestate_key_illegal_vendor_format and test_tracestate_key_length_limit."""
    assert tracestate_of("foo@=1,bar=2") == {"foo@": "1", "bar": "2"}
    assert tracestate_of("foo@@bar=1,bar=2") == {"foo@@bar": "1", "bar": "2"}
    assert tracestate_of("foo@bar@baz=1,bar=2") == {"foo@bar@baz": "1", "bar": "2"}
    for key in ("z" * 256, "t" * 241 + "@" + "v" * 14, "t" * 242 + "@v", "t@" + "v" * 15):
        assert tracestate_of("foo=1", f"{key}=1") == {"foo": "1", key: "1"}


@pytest.mark.parametrize(
    "key",
    [
        "1vendor",  # Level 2 keys may start with a digit
        "tenant@system",
        "1tenant@system",
        "a@b@c",
        "foo@",
        "foo@@bar",
        "t" * 242 + "@v",  # beyond the old 241-character tenant limit
        "t@" + "v" * 15,  # beyond the old 14-character system limit
        "a_-*/@9",
        "z" * 256,
    ],
)
def test_level_2_keys_are_accepted(key: str) -> None:
    assert tracestate_of(f"{key}=value,other=1") == {key: "value", "other": "1"}


@pytest.mark.parametrize("key", ["@foo", "_a", "-a", "*a", "/a", "A", "aB", "a b", "a.b", "a:b", "z" * 257, "é"])
def test_keys_outside_the_level_2_grammar_discard_the_header(key: str) -> None:
    assert tracestate_of(f"{key}=value,other=1") == {}
    assert tracestate_of(f"other=1,{key}=value") == {}


def test_value_rules() -> None:
    printable = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in ",=").strip()
    assert tracestate_of(f"k={printable}") == {"k": printable}
    assert tracestate_of("k=" + "v" * 256) == {"k": "v" * 256}
    assert tracestate_of("k=" + "v" * 257) == {}
    assert tracestate_of("k=   ") == {}  # a value needs one non-space character


def test_optional_whitespace_and_empty_members() -> None:
    assert tracestate_of(" \t a=1 \t,, ,\t,b=2\t") == {"a": "1", "b": "2"}
    assert tracestate_of("") == {}
    assert tracestate_of(" , ,") == {}


def test_multiple_tracestate_values_are_joined_with_commas() -> None:
    assert tracestate_of("a=1,b=2", "c=3", "a=4") == {"a": "1", "b": "2", "c": "3"}  # a repeated key: the first
    carrier = {"traceparent": VALID, "tracestate": ["rojo=1", "congo=2"]}
    assert injected(propagator.extract(carrier))["tracestate"] == "rojo=1,congo=2"


def test_32_members_are_kept_and_33_discard_the_header() -> None:
    """test_tracestate_member_count_limit: 32 members over four headers are kept, a 33rd voids them all."""
    members = [f"bar{index:02}={index:02}" for index in range(1, 34)]
    headers = [",".join(members[start : start + 10]) for start in (0, 10, 20)]
    state = tracestate_of(*headers, ",".join(members[30:32]))
    assert len(state) == MAX_TRACESTATE_MEMBERS
    assert list(state) == [f"bar{index:02}" for index in range(1, 33)]
    assert tracestate_of(*headers, ",".join(members[30:33])) == {}


def test_empty_members_and_repeated_keys_do_not_count_towards_the_limit() -> None:
    members = [f"k{index}=v" for index in range(32)]
    assert len(tracestate_of(",,".join(members))) == 32  # 31 empty members between them
    assert len(tracestate_of(",".join([*members, "k0=again"]))) == 32  # a repeated key keeps the first


def test_long_tracestate_is_truncated_by_whole_members_long_ones_first() -> None:
    long_members = [f"long{index}={'x' * 200}" for index in range(16)]
    short_members = [f"s{index}={'y' * 100}" for index in range(16)]
    members = [item for pair in zip(long_members, short_members, strict=True) for item in pair]
    state = tracestate_of(",".join(members))
    header = injected(propagator.extract({"traceparent": VALID, "tracestate": ",".join(members)}))["tracestate"]
    assert len(header) <= MAX_TRACESTATE_LENGTH
    assert all(f"s{index}" in state for index in range(16))  # members of up to 128 characters survive
    kept_long = [key for key in state if key.startswith("long")]
    assert kept_long == [f"long{index}" for index in range(len(kept_long))]  # long ones go from the right
    for member in header.split(","):
        assert member in members  # never a shortened member


def test_oversized_tracestate_is_discarded_unexamined() -> None:
    huge_value = "k=" + "v" * 100_000
    assert tracestate_of(huge_value) == {}
    assert tracestate_of("a=1," + huge_value + ",b=2") == {}
    assert tracestate_of("a=1", "," * 100_000, "b=2") == {}  # longer than any valid header


def test_work_on_a_tracestate_is_bounded_to_128_pieces() -> None:
    assert tracestate_of("a=1" + ",b=2" * 126 + ",c=3") == {"a": "1", "b": "2", "c": "3"}  # 128 pieces
    assert tracestate_of("a=1" + "," * 200 + "c=3") == {}  # more pieces than a valid header can have


def test_too_many_traceparent_values_are_malformed() -> None:
    assert extracted({"traceparent": [VALID] * 8}).is_valid
    assert not extracted({"traceparent": [VALID] * 9}).is_valid


def test_tracestate_header_that_is_not_a_string_is_ignored() -> None:
    assert extracted({"traceparent": VALID, "tracestate": 7}).is_valid
    assert tracestate_of() == {}


# ------------------------------------------------------------------------------------------ Level2TraceState


def test_level2_tracestate_construction_skips_invalid_pairs_unlike_the_header_parser() -> None:
    # Built in code (a sampler), invalid pairs are skipped as OpenTelemetry's TraceState does; a received
    # header with an invalid member is discarded whole (test_one_invalid_member_discards_the_whole_tracestate).
    state = Level2TraceState([("1vendor", "a"), ("BAD", "b"), ("1vendor", "c"), ("x@y@z", "d")])
    assert list(state.items()) == [("1vendor", "a"), ("x@y@z", "d")]
    assert state == parse_tracestate(["1vendor=a,1vendor=c,x@y@z=d"])
    assert len(parse_tracestate(["1vendor=a,BAD=b,x@y@z=d"])) == 0
    assert len(Level2TraceState([(f"k{index}", "v") for index in range(40)])) == 32  # not emptied


def test_otel_tracestate_rejects_level_2_keys_that_veil_keeps() -> None:
    assert len(TraceState([("1vendor", "a"), ("a@b@c", "b")])) == 0
    assert len(Level2TraceState([("1vendor", "a"), ("a@b@c", "b")])) == 2


def test_level2_tracestate_mutations_keep_level_2_rules() -> None:
    state = parse_tracestate(["1vendor=a,x@y@z=b"])
    added = state.add("2nd", "c")
    assert isinstance(added, Level2TraceState)
    assert added.to_header() == "2nd=c,1vendor=a,x@y@z=b"
    assert state.add("1vendor", "other") is state
    assert state.add("BAD", "x") is state
    updated = added.update("x@y@z", "new")
    assert isinstance(updated, Level2TraceState)
    assert updated.to_header() == "x@y@z=new,2nd=c,1vendor=a"
    assert updated.update("Bad", "x") is updated
    deleted = updated.delete("2nd")
    assert isinstance(deleted, Level2TraceState)
    assert deleted.to_header() == "x@y@z=new,1vendor=a"
    assert deleted.delete("absent") is deleted


def test_adding_a_33rd_member_removes_the_rightmost() -> None:
    state = Level2TraceState([(f"k{index}", "v") for index in range(32)])
    added = state.add("new", "v")
    assert len(added) == 32
    assert next(iter(added)) == "new"
    assert "k31" not in added
    assert "k30" in added
    assert len(state.update("other", "v")) == 32


def test_from_header_uses_level_2_rules() -> None:
    assert dict(Level2TraceState.from_header(["1a=b, 2c=d", "d@e@f=g"])) == {"1a": "b", "2c": "d", "d@e@f": "g"}
    assert dict(Level2TraceState.from_header(["1a=b, BAD=c", "d@e@f=g"])) == {}


# ------------------------------------------------------------------------------------------------- inject


def test_inject_writes_traceparent_and_tracestate() -> None:
    context = remote(flags=1, trace_state=Level2TraceState([("rojo", "1"), ("congo", "2")]))
    assert injected(context) == {"traceparent": VALID, "tracestate": "rojo=1,congo=2"}


def test_inject_without_tracestate_writes_only_traceparent() -> None:
    assert injected(remote(flags=0)) == {"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"}


@pytest.mark.parametrize(("flags", "sent"), [(0x00, "00"), (0x01, "01"), (0x02, "02"), (0x03, "03"), (0xFF, "03")])
def test_inject_keeps_defined_flags_and_clears_undefined_ones(flags: int, sent: str) -> None:
    assert injected(remote(flags=flags))["traceparent"].endswith(f"-{sent}")


def test_inject_of_an_invalid_context_writes_nothing() -> None:
    assert injected(Context()) == {}
    invalid = trace.set_span_in_context(trace.NonRecordingSpan(SpanContext(0, 1, is_remote=True)))
    assert injected(invalid) == {}


def test_inject_bounds_a_tracestate_built_elsewhere() -> None:
    members = [(f"k{index}", "v" * 250) for index in range(30)]
    carrier = injected(remote(trace_state=TraceState(members)))
    assert len(carrier["tracestate"]) <= MAX_TRACESTATE_LENGTH
    assert carrier["tracestate"].startswith("k0=")


def test_fields() -> None:
    assert propagator.fields == {"traceparent", "tracestate"}


# ------------------------------------------------------------------------------- with the real SDK tracer


@pytest.mark.parametrize("flags", ["00", "01", "02", "03"])
def test_sdk_child_of_an_extracted_context_injects_the_same_flags(tracer: trace.Tracer, flags: str) -> None:
    parent = propagator.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-{flags}", "tracestate": "1v=a,t@s@x=b"})
    with (
        tracer.start_as_current_span("server", context=parent),
        tracer.start_as_current_span("client") as child,
    ):
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
        child_context = child.get_span_context()
    version, trace_id, span_id, sent_flags = carrier["traceparent"].split("-")
    assert (version, trace_id, sent_flags) == ("00", TRACE_ID, flags)
    assert span_id == f"{child_context.span_id:016x}" != SPAN_ID
    # the Level 2 members survive the SDK's sampler and reach the grandchild's outbound request
    assert carrier["tracestate"] == "1v=a,t@s@x=b"


def test_sdk_root_span_sets_the_random_trace_id_flag(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("root"):
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
    assert carrier["traceparent"].endswith("-03")  # sampled, and the SDK's trace ids are random


def test_sampled_out_parent_propagates_unsampled() -> None:
    provider = TracerProvider(sampler=ParentBased(ALWAYS_OFF))
    tracer = provider.get_tracer("tests")
    parent = propagator.extract({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00"})
    with tracer.start_as_current_span("server", context=parent) as span:
        assert not span.is_recording()
        carrier: dict[str, str] = {}
        propagator.inject(carrier)
    assert carrier["traceparent"].startswith(f"00-{TRACE_ID}-")
    assert carrier["traceparent"].endswith("-00")


def test_exported_span_carries_the_level_2_tracestate(tracer: trace.Tracer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    parent = propagator.extract({"traceparent": VALID, "tracestate": "1v=a,t@s@x=b"})
    provider.get_tracer("tests").start_span("server", context=parent).end()
    (span,) = exporter.get_finished_spans()
    assert span.context.trace_state.to_header() == "1v=a,t@s@x=b"
    assert span.parent is not None
    assert span.parent.span_id == int(SPAN_ID, 16)


# ---------------------------------------------------------------------------------------------- robustness


class RaisingGetter(Getter[object]):
    def get(self, carrier: object, key: str) -> list[str] | None:
        raise RuntimeError("broken getter")

    def keys(self, carrier: object) -> list[str]:
        raise RuntimeError("broken getter")


class RaisingSetter(Setter[object]):
    def set(self, carrier: object, key: str, value: str) -> None:
        raise RuntimeError("broken setter")


def test_extract_never_raises_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    _guard.reset_for_tests()
    start = remote()
    with caplog.at_level(logging.WARNING, logger="veil"):
        for _ in range(3):
            assert propagator.extract({}, start, getter=RaisingGetter()) is start
    assert len([r for r in caplog.records if "extraction failed" in r.getMessage()]) == 1


def test_inject_never_raises() -> None:
    _guard.reset_for_tests()
    propagator.inject(object(), remote(), setter=RaisingSetter())
    broken = trace.set_span_in_context(
        trace.NonRecordingSpan(SpanContext(1, 1, is_remote=True, trace_state="not a TraceState"))  # type: ignore[arg-type]
    )
    carrier: dict[str, str] = {}
    propagator.inject(carrier, broken)
    assert carrier == {"traceparent": f"00-{1:032x}-{1:016x}-00"}


@pytest.mark.parametrize(
    "carrier",
    [
        {"traceparent": "x" * 100_000, "tracestate": "a=" + "b" * 100_000},
        {"traceparent": VALID, "tracestate": "a=" + "b" * 100_000},
        {"traceparent": VALID + "é"},
        {"traceparent": "ü" * 55},
        {"traceparent": [VALID] * 1000},
        {"traceparent": None},
        {"traceparent": 12},
        {"traceparent": [None, 3, b"\x00"]},
        {"TRACEPARENT": VALID},
    ],
)
def test_hostile_headers_never_raise(carrier: dict[str, object]) -> None:
    propagator.extract(carrier)
