"""The console span exporter: each trace printed as an indented tree once its local root span has ended.

Children end, and are exported, before their parents, so spans wait in a bounded buffer per trace until their
local root arrives; spans whose parent never arrives are printed as orphans after `flush_after_seconds` (by a
sweeper thread), on `force_flush()` or on `shutdown()`. A forked child starts with fresh locks, no sweeper and
an empty buffer.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.semconv._incubating.attributes.db_attributes import DB_SYSTEM
from opentelemetry.semconv._incubating.attributes.messaging_attributes import (
    MESSAGING_DESTINATION_NAME,
    MESSAGING_SYSTEM,
)
from opentelemetry.semconv._incubating.attributes.rpc_attributes import RPC_METHOD, RPC_SERVICE, RPC_SYSTEM
from opentelemetry.semconv.attributes.db_attributes import (
    DB_COLLECTION_NAME,
    DB_OPERATION_NAME,
    DB_QUERY_TEXT,
    DB_SYSTEM_NAME,
)
from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
from opentelemetry.semconv.attributes.exception_attributes import EXCEPTION_MESSAGE, EXCEPTION_TYPE
from opentelemetry.semconv.attributes.http_attributes import (
    HTTP_REQUEST_METHOD,
    HTTP_RESPONSE_STATUS_CODE,
    HTTP_ROUTE,
)
from opentelemetry.semconv.attributes.server_attributes import SERVER_ADDRESS, SERVER_PORT
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME
from opentelemetry.semconv.attributes.url_attributes import URL_FULL, URL_PATH, URL_QUERY
from opentelemetry.trace import StatusCode, format_span_id, format_trace_id

from veil._fork import after_fork
from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.export.console._terminal import (
    _OUTPUT_LOCKS,
    _clock,
    _ms,
    _render_and_write,
    _resolve,
    _style_for,
    _text,
    _unicode_ok,
    _value,
    _write,
)

__all__ = ["ConsoleSpanExporter"]

# The attributes shown on a span line, in this order; the others are counted ("+3 attributes").
_KEY_ATTRIBUTES = (
    HTTP_REQUEST_METHOD,
    HTTP_ROUTE,
    URL_FULL,
    URL_PATH,
    URL_QUERY,
    HTTP_RESPONSE_STATUS_CODE,
    SERVER_ADDRESS,
    SERVER_PORT,
    DB_SYSTEM_NAME,
    DB_SYSTEM,
    DB_OPERATION_NAME,
    DB_COLLECTION_NAME,
    DB_QUERY_TEXT,
    RPC_SYSTEM,
    RPC_SERVICE,
    RPC_METHOD,
    MESSAGING_SYSTEM,
    MESSAGING_DESTINATION_NAME,
    ERROR_TYPE,
)

_MAX_BUFFERED_TRACES = 1_000
_MAX_BUFFERED_SPANS = 20_000
_MAX_REMEMBERED_SPANS = 4_096
_SWEEP_INTERVAL_SECONDS = 0.5


@dataclass
class _TraceBuffer:
    spans: dict[int, ReadableSpan] = field(default_factory=dict)
    last_seen: float = 0.0


def _service(span: ReadableSpan) -> str:
    name = span.resource.attributes.get(SERVICE_NAME) if span.resource is not None else None
    return str(name) if name is not None else "unknown_service"


def _is_local_root(span: ReadableSpan) -> bool:
    return span.parent is None or span.parent.is_remote


class ConsoleSpanExporter(SpanExporter):
    """Prints each trace as an indented tree of spans once its local root span has ended.

    `stream` defaults to `sys.stderr` (looked up at each write, so redirections apply); `color=None` colours
    only a terminal without `NO_COLOR`; `flush_after_seconds` is how long spans wait for a parent that has
    not arrived before they are printed as orphans. At most 1000 traces and 20000 spans wait in memory;
    beyond that the oldest trace is printed early (marked "partial") and counted in `early_flushed_traces`.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        color: bool | None = None,
        flush_after_seconds: float = 5.0,
    ) -> None:
        style = _style_for(stream, color)
        if (
            isinstance(flush_after_seconds, bool)
            or not isinstance(flush_after_seconds, (int, float))
            or not math.isfinite(flush_after_seconds)
            or flush_after_seconds <= 0
        ):
            raise ConfigurationError("flush_after_seconds", flush_after_seconds, "a positive number of seconds")
        self._stream = stream
        target = _resolve(stream)
        self._style = style
        unicode_ok = _unicode_ok(target)
        self._branch, self._last, self._pipe, self._space = (
            ("├─ ", "└─ ", "│  ", "   ") if unicode_ok else ("|- ", "`- ", "|  ", "   ")
        )
        self._bullet = "•" if unicode_ok else "*"
        self._flush_after = float(flush_after_seconds)
        self._traces: OrderedDict[int, _TraceBuffer] = OrderedDict()
        self._buffered_spans = 0
        self._printed: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._shutdown = False
        self.early_flushed_traces = 0
        """Traces printed before their root ended because the buffer was full."""
        self.orphan_spans = 0
        """Spans printed without their parent (it never arrived within `flush_after_seconds`)."""
        _LIVE_SPAN_EXPORTERS.add(self)

    # ---- SpanExporter

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            return SpanExportResult.FAILURE
        ok = _render_and_write(self._stream, lambda: self._render_batch(spans), "export.console.spans")
        return SpanExportResult.SUCCESS if ok else SpanExportResult.FAILURE

    def _render_batch(self, spans: Sequence[ReadableSpan]) -> str:
        """Buffer `spans`; the text of the trees they complete."""
        ready: list[tuple[list[ReadableSpan], str]] = []
        now = time.monotonic()
        with self._lock:
            for span in spans:
                self._add(span, now, ready)
            for span in spans:
                # A local root completes a tree; so does a span whose parent was printed already (it
                # ended after its parent, as a fire-and-forget task does): nothing more will come for it.
                if _is_local_root(span) or (span.parent is not None and span.parent.span_id in self._printed):
                    tree = self._take_tree(span)
                    if tree:
                        ready.append((tree, ""))
            pending = bool(self._traces)
        text = "".join(self._render_trace(tree, note) for tree, note in ready)
        if pending:
            self._ensure_sweeper()
        return text

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        """Print every buffered span now, orphans included."""
        return self._flush(older_than=None)

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        self._stop.set()
        self._flush(older_than=None)
        sweeper = self._sweeper
        if sweeper is not None and sweeper is not threading.current_thread():
            sweeper.join(timeout=1.0)

    # ---- buffering (called with self._lock held)

    def _add(self, span: ReadableSpan, now: float, ready: list[tuple[list[ReadableSpan], str]]) -> None:
        trace_id = span.context.trace_id
        buffer = self._traces.get(trace_id)
        if buffer is None:
            buffer = self._traces[trace_id] = _TraceBuffer()
        else:
            self._traces.move_to_end(trace_id)
        buffer.last_seen = now
        if span.context.span_id not in buffer.spans:
            self._buffered_spans += 1
        buffer.spans[span.context.span_id] = span
        # Over a cap, the least recently active trace is printed as it is (this one last: it is the newest).
        while len(self._traces) > _MAX_BUFFERED_TRACES or self._buffered_spans > _MAX_BUFFERED_SPANS:
            oldest = self._pop_trace(next(iter(self._traces)))
            self.early_flushed_traces += 1
            ready.append((list(oldest.spans.values()), "partial: buffer full"))

    def _pop_trace(self, trace_id: int) -> _TraceBuffer:
        buffer = self._traces.pop(trace_id)
        self._buffered_spans -= len(buffer.spans)
        self._remember(buffer.spans.values())
        return buffer

    def _remember(self, spans: Iterable[ReadableSpan]) -> None:
        """Keep the ids of the last printed spans, to recognise their children arriving late."""
        printed = self._printed
        for span in spans:
            printed[span.context.span_id] = None
        while len(printed) > _MAX_REMEMBERED_SPANS:
            printed.popitem(last=False)

    def _take_tree(self, root: ReadableSpan) -> list[ReadableSpan]:
        """Remove `root` and its buffered descendants from the buffer and return them."""
        trace_id = root.context.trace_id
        buffer = self._traces.get(trace_id)
        if buffer is None or root.context.span_id not in buffer.spans:
            return []
        children: dict[int, list[int]] = {}
        for span_id, span in buffer.spans.items():
            if span.parent is not None and not span.parent.is_remote:
                children.setdefault(span.parent.span_id, []).append(span_id)
        taken: list[ReadableSpan] = []
        stack = [root.context.span_id]
        while stack:
            span_id = stack.pop()
            if span_id not in buffer.spans:
                continue
            taken.append(buffer.spans.pop(span_id))
            stack.extend(children.get(span_id, ()))
        self._buffered_spans -= len(taken)
        self._remember(taken)
        if not buffer.spans:
            del self._traces[trace_id]
        return taken

    def _flush(self, older_than: float | None) -> bool:
        try:
            ready: list[list[ReadableSpan]] = []
            with self._lock:
                for trace_id in list(self._traces):
                    buffer = self._traces[trace_id]
                    if older_than is None or buffer.last_seen <= older_than:
                        ready.append(list(self._pop_trace(trace_id).spans.values()))
            text = "".join(self._render_trace(spans, "") for spans in ready)
        except Exception:
            log_once("export.console.flush", "veil: the console span exporter failed to flush", exc_info=True)
            return False
        return _write(self._stream, text, "export.console.spans.write")

    # ---- the sweeper: prints traces whose missing parents did not arrive in time

    def _ensure_sweeper(self) -> None:
        sweeper = self._sweeper
        if sweeper is not None and sweeper.is_alive():
            return
        with self._lock:
            if self._shutdown or (self._sweeper is not None and self._sweeper.is_alive()):
                return
            reference = weakref.ref(self)
            self._sweeper = threading.Thread(
                target=_sweep_loop,
                args=(reference, self._stop, min(_SWEEP_INTERVAL_SECONDS, self._flush_after / 2)),
                name="veil-console-span-exporter",
                daemon=True,
            )
            self._sweeper.start()

    def _sweep(self) -> None:
        self._flush(older_than=time.monotonic() - self._flush_after)

    # ---- rendering

    def _render_trace(self, spans: list[ReadableSpan], note: str) -> str:
        """The trace as text; a span the renderer cannot handle costs its own trace, not the whole batch."""
        try:
            return self._render_trace_unguarded(spans, note)
        except Exception:
            log_once(
                "export.console.render",
                "veil: the console span exporter could not print a trace",
                exc_info=True,
            )
            return ""

    def _render_trace_unguarded(self, spans: list[ReadableSpan], note: str) -> str:
        if not spans:
            return ""
        style = self._style
        by_id = {span.context.span_id: span for span in spans}
        children: dict[int, list[ReadableSpan]] = {}
        roots: list[ReadableSpan] = []
        for span in spans:
            parent = span.parent
            if parent is not None and not parent.is_remote and parent.span_id in by_id:
                children.setdefault(parent.span_id, []).append(span)
            else:
                roots.append(span)
        for siblings in children.values():
            siblings.sort(key=lambda s: s.start_time or 0)
        roots.sort(key=lambda s: s.start_time or 0)
        late = missing = 0
        for root in roots:
            if root.parent is not None and not root.parent.is_remote:
                if root.parent.span_id in self._printed:
                    late += 1
                else:
                    missing += 1
        self.orphan_spans += missing
        if missing and not note:
            note = f"partial: {missing} span{'s' if missing > 1 else ''} without their parent"
        elif late and not note:
            note = "late: ended after the parent was printed"

        services = list(dict.fromkeys(_service(span) for span in spans))
        starts = [span.start_time for span in spans if span.start_time is not None]
        ends = [span.end_time for span in spans if span.end_time is not None]
        total = _ms(max(ends) - min(starts)) if starts and ends else "?"
        count = f"{len(spans)} span{'s' if len(spans) > 1 else ''}"
        header = [
            style("header", f"trace {format_trace_id(spans[0].context.trace_id)}"),
            style("dim", _clock(min(starts) if starts else None)),
            style("magenta", ", ".join(_text(name, 60) for name in services)),
            style("yellow", total),
            style("dim", count),
        ]
        if note:
            header.append(style("yellow", f"({note})"))
        lines = ["  ".join(header)]
        multiple_services = len(services) > 1
        for index, root in enumerate(roots):
            last = index == len(roots) - 1
            parent_service = None if multiple_services else _service(root)
            self._render_span(root, children, lines, last=last, parent_service=parent_service)
        return "\n".join(lines) + "\n"

    def _render_span(
        self,
        span: ReadableSpan,
        children: dict[int, list[ReadableSpan]],
        lines: list[str],
        *,
        last: bool,
        parent_service: str | None,
    ) -> None:
        # An explicit stack instead of recursion: a very deep trace must not hit the recursion limit.
        stack: list[tuple[ReadableSpan, str, bool, str | None]] = [(span, "", last, parent_service)]
        while stack:
            current, current_prefix, current_last, current_parent_service = stack.pop()
            connector = self._last if current_last else self._branch
            orphan = current is span and not _is_local_root(span)
            lines.append(current_prefix + connector + self._span_line(current, current_parent_service, orphan))
            inner = current_prefix + (self._space if current_last else self._pipe)
            kids = children.get(current.context.span_id, [])
            event_prefix = inner + (self._pipe if kids else self._space)
            lines.extend(event_prefix + self._event_line(current, event) for event in current.events)
            service = _service(current)
            for index in range(len(kids) - 1, -1, -1):
                stack.append((kids[index], inner, index == len(kids) - 1, service))

    def _span_line(self, span: ReadableSpan, parent_service: str | None, orphan: bool) -> str:
        style = self._style
        parts = [
            style("bold", _text(span.name, 120)),
            style("dim", str(getattr(span.kind, "name", span.kind)).lower()),
        ]
        service = _service(span)
        if service != parent_service:
            parts.append(style("magenta", f"[{_text(service, 60)}]"))
        if span.start_time is not None and span.end_time is not None:
            parts.append(style("yellow", _ms(span.end_time - span.start_time)))
        status = span.status
        if status.status_code is StatusCode.ERROR:
            description = f": {_text(status.description)}" if status.description else ""
            parts.append(style("error", f"ERROR{description}"))
        elif status.status_code is StatusCode.OK:
            parts.append(style("green", "OK"))
        attributes = span.attributes or {}
        shown = [key for key in _KEY_ATTRIBUTES if key in attributes]
        if URL_FULL in attributes:  # the full URL already holds its path and query
            shown = [key for key in shown if key not in (URL_PATH, URL_QUERY)]
        parts.extend(f"{style('dim', key + '=')}{_value(attributes[key])}" for key in shown)
        hidden = len(attributes) - len(shown)
        if hidden > 0:
            parts.append(style("dim", f"+{hidden} attribute{'s' if hidden > 1 else ''}"))
        if span.links:
            parts.append(style("dim", f"+{len(span.links)} link{'s' if len(span.links) > 1 else ''}"))
        if orphan and span.parent is not None:
            where = "printed earlier" if span.parent.span_id in self._printed else "not received"
            parts.append(style("dim", f"(parent {format_span_id(span.parent.span_id)} {where})"))
        return "  ".join(parts)

    def _event_line(self, span: ReadableSpan, event: Any) -> str:
        style = self._style
        attributes = event.attributes or {}
        offset = ""
        if span.start_time is not None and event.timestamp is not None:
            offset = style("dim", f"+{_ms(event.timestamp - span.start_time)}") + "  "
        if EXCEPTION_TYPE in attributes or EXCEPTION_MESSAGE in attributes:
            kind = _text(str(attributes.get(EXCEPTION_TYPE, "")), 120)
            message = _text(str(attributes.get(EXCEPTION_MESSAGE, "")))
            summary = f"{kind}: {message}" if kind and message else kind or message
            return f"{self._bullet} {offset}{style('red', _text(event.name, 60))}  {style('red', summary)}"
        rest = "  ".join(
            f"{style('dim', _text(str(key), 60) + '=')}{_value(value)}" for key, value in list(attributes.items())[:6]
        )
        more = len(attributes) - 6
        if more > 0:
            rest += "  " + style("dim", f"+{more} attributes")
        return f"{self._bullet} {offset}{style('blue', _text(event.name, 60))}  {rest}".rstrip()


def _sweep_loop(reference: weakref.ref[ConsoleSpanExporter], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        exporter = reference()
        if exporter is None:
            return
        exporter._sweep()
        del exporter


def _reinit_after_fork() -> None:
    """In a forked child: fresh locks (the parent's may have been held), no sweeper, an empty buffer."""
    _OUTPUT_LOCKS[0] = threading.Lock()
    for exporter in list(_LIVE_SPAN_EXPORTERS):
        exporter._lock = threading.Lock()
        exporter._stop = threading.Event()
        exporter._sweeper = None
        exporter._traces = OrderedDict()
        exporter._buffered_spans = 0
        exporter._printed = OrderedDict()


_LIVE_SPAN_EXPORTERS: weakref.WeakSet[ConsoleSpanExporter] = weakref.WeakSet()
after_fork(_reinit_after_fork)
