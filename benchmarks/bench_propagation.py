"""Cost of one W3C Trace Context extraction: veil's propagator against OpenTelemetry's.

Run: python benchmarks/bench_propagation.py [--calls 2000] [--rounds 15]

One process, one run; every round measures both propagators in turn (interleaved), and the table shows the
median over rounds of the time per `extract()`. Logging is disabled, so OpenTelemetry's per-request warning
on a bad `tracestate` costs nothing here (it does in a service).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import timeit

from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from veil.propagation.tracecontext import TraceContextPropagator

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
CASES = {
    "traceparent only": None,
    "with a 2-member tracestate": "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
    "with a 32-member tracestate": ",".join(f"k{index}=v{index}" for index in range(32)),
    "100 KB of 'a=1,' in tracestate": "a=1," * 25_000,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=15)
    arguments = parser.parse_args()
    logging.disable(logging.CRITICAL)
    propagators: dict[str, TextMapPropagator] = {
        "veil": TraceContextPropagator(),
        "opentelemetry": TraceContextTextMapPropagator(),
    }
    print(f"{'input':34} {'veil µs':>9} {'otel µs':>9} {'ratio':>6}")
    for name, tracestate in CASES.items():
        carrier = {"traceparent": TRACEPARENT}
        if tracestate is not None:
            carrier["tracestate"] = tracestate
        samples: dict[str, list[float]] = {key: [] for key in propagators}
        for _ in range(arguments.rounds):
            for key, propagator in propagators.items():
                seconds = timeit.timeit(lambda p=propagator, c=carrier: p.extract(c), number=arguments.calls)
                samples[key].append(seconds / arguments.calls * 1e6)
        veil, otel = (statistics.median(samples[key]) for key in propagators)
        print(f"{name:34} {veil:9.1f} {otel:9.1f} {veil / otel:6.2f}")


if __name__ == "__main__":
    main()
