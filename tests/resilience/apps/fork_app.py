"""multiprocessing with fork after veil.configure(): every child exports its own spans, at its exit."""

from __future__ import annotations

import multiprocessing
import os

import veil

SPANS_PER_CHILD = 20
CHILDREN = 3


def work(index: int) -> None:
    tracer = veil.telemetry.installed().tracer_provider.get_tracer("child")  # type: ignore[union-attr]
    for number in range(SPANS_PER_CHILD):
        with tracer.start_as_current_span(f"child-{index}-{number}") as span:
            span.set_attribute("test.pid", os.getpid())


if __name__ == "__main__":
    telemetry = veil.configure(auto_instrument=False)
    tracer = telemetry.tracer_provider.get_tracer("parent")  # type: ignore[union-attr]
    with tracer.start_as_current_span("before-fork") as span:
        span.set_attribute("test.pid", os.getpid())
    context = multiprocessing.get_context("fork")
    processes = [context.Process(target=work, args=(index,)) for index in range(CHILDREN)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(30)
        assert process.exitcode == 0, process.exitcode
    with tracer.start_as_current_span("after-fork") as span:
        span.set_attribute("test.pid", os.getpid())
    print("done", flush=True)
