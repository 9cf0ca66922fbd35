"""Makes spans, prints when it is about to exit, then exits: the collector may be black-holing."""

from __future__ import annotations

import sys
import time

import veil

telemetry = veil.configure(auto_instrument=False)
tracer = telemetry.tracer_provider.get_tracer("exit")  # type: ignore[union-attr]
for index in range(int(sys.argv[1])):
    with tracer.start_as_current_span(f"span-{index}"):
        pass
time.sleep(0.3)  # let the first batch leave, so it is stuck in flight at exit
print(f"exiting {time.monotonic():.6f}", flush=True)
