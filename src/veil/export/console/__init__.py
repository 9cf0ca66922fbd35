"""Human-readable console exporters for local development: traces as trees, logs as lines, metrics summed up.

`ConsoleSpanExporter` buffers the spans of each trace (children end, and are exported, before their parents)
and prints the tree once the local root span has ended; spans whose parent never arrives are printed as
orphans after `flush_after_seconds`, on `force_flush()` or on `shutdown()`. `ConsoleLogExporter` prints one
line per log record and `ConsoleMetricExporter` one line per metric data point.

Everything printed comes from the telemetry itself (redaction runs before any exporter): values are shown as
they are, except that control and bidirectional-override characters are escaped, so that a hostile value (a
URL path, a header) cannot move the cursor, rewrite earlier lines or recolour the terminal, and very long
values are cut. Colour (ANSI) is used when the stream is a terminal and `NO_COLOR` is unset, or on request
with `color=True`.

One module per concern: `spans` (the trace tree, its buffer, sweeper and fork reset), `logs`, `metrics`, and
`_terminal` (escaping, colour and the one output lock the three share).
"""

from __future__ import annotations

from veil.export.console.logs import ConsoleLogExporter
from veil.export.console.metrics import ConsoleMetricExporter
from veil.export.console.spans import ConsoleSpanExporter

__all__ = ["ConsoleLogExporter", "ConsoleMetricExporter", "ConsoleSpanExporter"]
