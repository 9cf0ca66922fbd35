"""Trace fields on stdlib log records: in spans, outside, in threads and asyncio tasks, in Flask and FastAPI."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

import veil
from tests.logs.conftest import Lines
from veil.instrumentation.stdlib_logging import DEFAULT_LOGGING_FORMAT, FIELD_NAMES, LoggingInstrumentor

ALL_FIELDS = " ".join(f"%({name})s" for name in FIELD_NAMES) + " %(message)s"
ZEROS = f"{'0' * 32} {'0' * 16} 00 checkout 0 0 checkout False"


def ids(span: trace.Span) -> tuple[str, str]:
    context = span.get_span_context()
    return format(context.trace_id, "032x"), format(context.span_id, "016x")


def flags(span: trace.Span) -> str:
    """W3C trace flags in hex: 01 sampled, plus 02 when the trace id is random (Trace Context Level 2)."""
    return format(span.get_span_context().trace_flags, "02x")


def test_outside_a_span_every_field_exists_with_zeros(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none")
    captured: Lines = lines("app.outside", ALL_FIELDS)
    captured.logger.info("hello")
    assert captured.lines() == [f"{ZEROS} hello"]


def test_inside_a_span_the_ids_are_the_span_s(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none")
    captured = lines("app.inside", ALL_FIELDS)
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        captured.logger.warning("one")
        with trace.get_tracer("tests").start_as_current_span("child") as child:
            captured.logger.warning("two")
        captured.logger.warning("three")
    trace_id, span_id = ids(span)
    child_span_id = ids(child)[1]
    sampled = flags(span)
    assert int(sampled, 16) & 1
    assert captured.lines() == [
        f"{trace_id} {span_id} {sampled} checkout {trace_id} {span_id} checkout True one",
        f"{trace_id} {child_span_id} {sampled} checkout {trace_id} {child_span_id} checkout True two",
        f"{trace_id} {span_id} {sampled} checkout {trace_id} {span_id} checkout True three",
    ]


def test_unsampled_span_has_flags_00(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none", traces_sampler="always_off")
    captured = lines("app.unsampled", "%(trace_id)s %(trace_flags)s %(otelTraceSampled)s")
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        captured.logger.info("x")
    assert not int(flags(span), 16) & 1
    assert captured.lines() == [f"{ids(span)[0]} {flags(span)} False"]


def test_loggers_created_before_instrument_and_made_records_get_the_fields(
    configure_veil: Callable[..., veil.Telemetry], lines
) -> None:
    captured = lines("app.early", "%(trace_id)s %(span_id)s %(message)s")  # the logger exists first
    configure_veil(service_name="checkout", traces_exporter="none")
    veil.instrument("logging")
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        captured.logger.info("direct")
        captured.logger.handle(logging.makeLogRecord({"name": "app.early", "msg": "made", "levelno": 20}))
    trace_id, span_id = ids(span)
    assert captured.lines() == [f"{trace_id} {span_id} direct", f"{trace_id} {span_id} made"]


def test_threads_see_their_own_context(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none")
    captured = lines("app.threads", "%(threadName)s %(trace_id)s %(span_id)s")
    tracer = trace.get_tracer("tests")
    expected: dict[str, tuple[str, str]] = {}

    def own_span(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            expected[threading.current_thread().name] = ids(span)
            captured.logger.info("in thread")

    workers = [threading.Thread(target=own_span, args=(f"t{i}",), name=f"worker-{i}") for i in range(4)]
    bare = threading.Thread(target=lambda: captured.logger.info("bare"), name="bare")
    for worker in [*workers, bare]:
        worker.start()
    for worker in [*workers, bare]:
        worker.join(10)
    got = {line.split()[0]: tuple(line.split()[1:]) for line in captured.lines()}
    assert got.pop("bare") == ("0" * 32, "0" * 16)
    assert got == expected and len(set(expected.values())) == 4

    # A copied context carries the span into a pool thread.
    with tracer.start_as_current_span("submitter") as span, ThreadPoolExecutor(1, thread_name_prefix="pool") as pool:
        pool.submit(contextvars.copy_context().run, captured.logger.info, "pooled").result(10)
    assert tuple(captured.lines()[-1].split()[1:]) == ids(span)


async def test_asyncio_tasks_keep_their_own_span(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none")
    captured = lines("app.tasks", "%(message)s %(trace_id)s %(span_id)s")
    tracer = trace.get_tracer("tests")
    expected = {}

    async def task(name: str) -> None:
        with tracer.start_as_current_span(name) as span:
            expected[name] = ids(span)
            await asyncio.sleep(0.01)  # the other tasks run in between
            captured.logger.info(name)

    await asyncio.gather(*(task(f"task{i}") for i in range(5)))
    got = {line.split()[0]: tuple(line.split()[1:]) for line in captured.lines()}
    assert got == expected and len(set(expected.values())) == 5


def test_span_from_another_provider_and_invalid_span(veil_logging: Callable[..., veil.Telemetry], lines) -> None:
    veil_logging(service_name="checkout", traces_exporter="none")
    captured = lines("app.other", "%(trace_id)s %(span_id)s")
    with TracerProvider().get_tracer("own").start_as_current_span("own") as span:
        captured.logger.info("x")
    with trace.use_span(trace.INVALID_SPAN):
        captured.logger.info("y")
    assert captured.lines() == [" ".join(ids(span)), f"{'0' * 32} {'0' * 16}"]


def test_log_hook_runs_inside_spans_and_its_errors_are_swallowed(
    configure_veil: Callable[..., veil.Telemetry], lines
) -> None:
    configure_veil(service_name="checkout", traces_exporter="none")
    seen = []

    def hook(span: trace.Span, record: logging.LogRecord) -> None:
        seen.append(record.getMessage())
        record.custom = "from-hook"
        if record.getMessage() == "bad":
            raise RuntimeError("hook bug")

    LoggingInstrumentor().instrument(log_hook=hook)
    captured = lines("app.hook", "%(message)s %(custom)s")
    captured.logger.info("outside %s", "span", extra={"custom": "extra"})
    with trace.get_tracer("tests").start_as_current_span("work"):
        captured.logger.info("inside")
        captured.logger.info("bad")
    # The hook's exception is reported once by veil (whose own record the hook sees too) and swallowed.
    assert seen == ["inside", "bad", "veil: adding trace fields to a log record failed"]
    assert captured.lines() == ["outside span extra", "inside from-hook", "bad from-hook"]


def test_set_logging_format_adds_a_root_handler_that_never_fails_and_is_removed(
    configure_veil: Callable[..., veil.Telemetry], capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    root.handlers[:] = []
    root.setLevel(logging.WARNING)
    configure_veil(service_name="checkout", traces_exporter="none", log_correlation=True, log_level="debug")
    veil.instrument("logging")
    (handler,) = root.handlers
    assert root.level == logging.DEBUG
    assert isinstance(handler.formatter, logging.Formatter)
    assert handler.formatter._fmt == DEFAULT_LOGGING_FORMAT
    with trace.get_tracer("tests").start_as_current_span("work") as span:
        logging.getLogger("app.fmt").debug("in span")
    # A record built without the factory (LogRecord(...) directly) still formats: the handler has defaults.
    handler.handle(logging.LogRecord("app.fmt", logging.INFO, __file__, 1, "bare record", None, None))
    err = capsys.readouterr().err
    trace_id, span_id = ids(span)
    assert f"[trace_id={trace_id} span_id={span_id} service.name=checkout] in span" in err
    assert f"[trace_id={'0' * 32} span_id={'0' * 16} service.name=checkout] bare record" in err
    assert "Logging error" not in err
    LoggingInstrumentor().uninstrument()
    assert root.handlers == [] and root.level == logging.WARNING


def test_set_logging_format_leaves_existing_root_handlers_alone(configure_veil: Callable[..., veil.Telemetry]) -> None:
    root = logging.getLogger()
    mine = logging.NullHandler()
    root.handlers[:] = [mine]
    configure_veil(traces_exporter="none", log_correlation=True)
    veil.instrument("logging")
    assert root.handlers == [mine]


def test_uninstrument_restores_the_factory(configure_veil: Callable[..., veil.Telemetry], lines) -> None:
    before = logging.getLogRecordFactory()
    configure_veil(traces_exporter="none")
    veil.instrument("logging")
    assert logging.getLogRecordFactory() is not before
    LoggingInstrumentor().uninstrument()
    assert logging.getLogRecordFactory() is before
    record = logging.getLogger("app.after").makeRecord("app.after", logging.INFO, "f", 1, "m", None, None)
    assert not hasattr(record, "trace_id")


def test_a_factory_installed_after_veil_keeps_working_after_uninstrument(
    configure_veil: Callable[..., veil.Telemetry],
) -> None:
    original = logging.getLogRecordFactory()
    configure_veil(traces_exporter="none")
    veil.instrument("logging")
    veil_factory = logging.getLogRecordFactory()

    def theirs(*args: object, **kwargs: object) -> logging.LogRecord:
        record = veil_factory(*args, **kwargs)
        record.theirs = True
        return record

    logging.setLogRecordFactory(theirs)
    try:
        LoggingInstrumentor().uninstrument()
        assert logging.getLogRecordFactory() is theirs  # not clobbered
        record = logging.getLogger("x").makeRecord("x", logging.INFO, "f", 1, "m", None, None)
        assert record.theirs and not hasattr(record, "trace_id")  # veil's part is a pass-through now
    finally:
        logging.setLogRecordFactory(original)


# ------------------------------------------------------------------------------------- inside servers


@pytest.fixture
def flask_server() -> Iterator[str]:
    flask = pytest.importorskip("flask")
    from werkzeug.serving import make_server

    app = flask.Flask("veil_logs_app")

    @app.route("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        logging.getLogger("app.views").warning("order %d", order_id)
        return "ok"

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


def test_records_in_a_flask_request_carry_the_server_span(
    veil_logging: Callable[..., veil.Telemetry], otlp_receiver, flask_server: str
) -> None:
    handle = veil_logging(service_name="shop", otlp_endpoint=otlp_receiver.http_endpoint, traces_exporter="otlp")
    veil.instrument("flask")
    with urllib.request.urlopen(f"{flask_server}/orders/7", timeout=10) as response:
        assert response.read() == b"ok"
    assert handle.force_flush(5000)
    (server_span,) = otlp_receiver.wait_for_spans(1, predicate=lambda s: s.kind == "SERVER")
    (log,) = otlp_receiver.wait_for_logs(1, predicate=lambda log: log.body == "order 7")
    assert (log.trace_id, log.span_id) == (server_span.trace_id, server_span.span_id)
    assert server_span.name == "GET /orders/<int:order_id>"
    assert log.resource["service.name"] == "shop"


@pytest.fixture
def fastapi_server() -> Iterator[str]:
    fastapi = pytest.importorskip("fastapi")
    uvicorn = pytest.importorskip("uvicorn")
    import socket
    import time

    app = fastapi.FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        await asyncio.sleep(0)
        logging.getLogger("app.api").warning("item %d", item_id)
        return {"item": item_id}

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.025)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_records_in_a_fastapi_request_carry_the_server_span(
    veil_logging: Callable[..., veil.Telemetry], otlp_receiver, fastapi_server: str
) -> None:
    handle = veil_logging(service_name="api", otlp_endpoint=otlp_receiver.http_endpoint, traces_exporter="otlp")
    veil.instrument("fastapi")
    with urllib.request.urlopen(f"{fastapi_server}/items/3", timeout=10) as response:
        assert response.status == 200
    assert handle.force_flush(5000)
    (server_span,) = otlp_receiver.wait_for_spans(1, predicate=lambda s: s.kind == "SERVER")
    (log,) = otlp_receiver.wait_for_logs(1, predicate=lambda log: log.body == "item 3")
    assert (log.trace_id, log.span_id) == (server_span.trace_id, server_span.span_id)
    assert server_span.name == "GET /items/{item_id}"
