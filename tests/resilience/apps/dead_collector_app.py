"""Makes spans, a log record and a metric point for a collector that is not there, then exits.

argv: seconds to run before exiting (with a short batch delay, exports are then backing off at exit).
"""

from __future__ import annotations

import logging
import sys
import time

import veil

telemetry = veil.configure(auto_instrument=False)
veil.instrument("logging")
tracer = telemetry.tracer_provider.get_tracer("dead")  # type: ignore[union-attr]
counter = telemetry.meter_provider.get_meter("dead").create_counter("dead.count")  # type: ignore[union-attr]
for index in range(5):
    with tracer.start_as_current_span(f"span-{index}"):
        counter.add(1)
        logging.getLogger("dead").warning("record %d", index)
time.sleep(float(sys.argv[1]))
print(f"exiting {time.monotonic():.6f}", flush=True)
