"""Per-request overhead of veil's Flask and Django instrumentation against the upstream contrib packages.

One process, one run: every round times each variant on the same hello-world request, variants interleaved
within the round; the median per-request time over the rounds is reported. Overhead = variant - bare.
veil and contrib share the same SDK setup: a TracerProvider with a BatchSpanProcessor to a no-op exporter
and a MeterProvider with an in-memory reader. The floor is one bare SDK span with 10 attributes through
that same processor, measured twice: in a tight loop (started and ended, nothing else: warm caches), and in
context ("one span": made current around the bare app's request and its body, where its code competes with
the framework's for the CPU caches exactly as an instrumentation's does). The in-context floor is the
like-for-like one; both are printed.

    python benchmarks/bench_server.py [--rounds 15] [--requests 2000]

The contrib packages (opentelemetry-instrumentation-flask / -django) are only installed for this script
(extra `bench`); they are never imported by veil or its tests.
"""

from __future__ import annotations

import argparse
import gc
import io
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from opentelemetry import context, metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

WSGICall = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class NullExporter(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def providers() -> tuple[TracerProvider, MeterProvider]:
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(NullExporter(), max_queue_size=1_000_000, max_export_batch_size=4096)
    )
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    return tracer_provider, meter_provider


def base_environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench/1.0",
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
    return lambda data: None


def wsgi_runner(app: WSGICall, path: str) -> Callable[[int], None]:
    template = base_environ(path)

    def run(count: int) -> None:
        for _ in range(count):
            environ = dict(template)
            environ["wsgi.input"] = io.BytesIO(b"")
            body = app(environ, _start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()

    return run


# ----------------------------------------------------------------------------------------------- Flask


def flask_app() -> Any:
    from flask import Flask

    app = Flask("bench")

    @app.route("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name}"

    return app


def flask_variants(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> dict[str, Callable[[int], None]]:
    from opentelemetry.instrumentation.flask import FlaskInstrumentor as ContribFlask

    from veil.instrumentation.flask import FlaskInstrumentor

    bare, ours, theirs, spanned = flask_app(), flask_app(), flask_app(), flask_app()
    FlaskInstrumentor.instrument_app(ours, tracer_provider=tracer_provider, meter_provider=meter_provider)
    ContribFlask.instrument_app(theirs, tracer_provider=tracer_provider, meter_provider=meter_provider)
    return {
        "flask bare": wsgi_runner(bare, "/hello/world"),
        "flask veil": wsgi_runner(ours, "/hello/world"),
        "flask contrib": wsgi_runner(theirs, "/hello/world"),
        "flask one span": wsgi_runner(one_span_around(spanned.wsgi_app, tracer_provider), "/hello/world"),
    }


# ---------------------------------------------------------------------------------------------- Django


def django_variants(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> dict[str, Callable[[int], None]]:
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="bench",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from opentelemetry.instrumentation.django import DjangoInstrumentor as ContribDjango

    from veil.instrumentation.django import DjangoInstrumentor

    bare = WSGIHandler()

    veil_instrumentor = DjangoInstrumentor()
    veil_instrumentor.instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    ours = WSGIHandler()  # VeilMiddleware is inserted when the handler loads its middleware
    veil_middleware = list(settings.MIDDLEWARE)
    settings.MIDDLEWARE = []
    veil_instrumentor._uninstrument()  # unpatch load_middleware; keep the middleware state below alive
    from veil.instrumentation import django as veil_django

    veil_django._State.telemetry = veil_django._telemetry(
        tracer_provider=tracer_provider, meter_provider=meter_provider
    )

    ContribDjango().instrument(tracer_provider=tracer_provider, meter_provider=meter_provider)
    theirs = WSGIHandler()
    contrib_middleware = list(settings.MIDDLEWARE)
    print(f"# django middleware: veil {veil_middleware}, contrib {contrib_middleware}")
    return {
        "django bare": wsgi_runner(bare, "/hello/world/"),
        "django veil": wsgi_runner(ours, "/hello/world/"),
        "django contrib": wsgi_runner(theirs, "/hello/world/"),
        "django one span": wsgi_runner(one_span_around(bare, tracer_provider), "/hello/world/"),
    }


def _django_view(request: Any, name: str) -> Any:
    from django.http import HttpResponse

    return HttpResponse(f"hello {name}")


def __getattr__(name: str) -> Any:  # the URLconf, built lazily once Django is configured
    if name == "urlpatterns":
        from django.urls import path

        return [path("hello/<str:name>/", _django_view)]
    raise AttributeError(name)


# ----------------------------------------------------------------------------------------------- floor


FLOOR_ATTRIBUTES = {f"attribute.{index}": f"value {index}" for index in range(10)}


def floor_runner(tracer_provider: TracerProvider) -> Callable[[int], None]:
    """The floor in a tight loop: one bare span with 10 attributes, started and ended (warm caches)."""
    tracer = tracer_provider.get_tracer("bench.floor")
    attributes = FLOOR_ATTRIBUTES

    def run(count: int) -> None:
        for _ in range(count):
            tracer.start_span("floor", attributes=attributes).end()

    return run


def one_span_around(app: WSGICall, tracer_provider: TracerProvider) -> WSGICall:
    """The floor in context: the same bare span, made current around the bare app's request and its body.

    The span's code then competes with the framework's for the CPU caches, as every instrumentation's does.
    """
    tracer = tracer_provider.get_tracer("bench.floor")

    def call(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        span = tracer.start_span("GET /hello/<name>", kind=trace.SpanKind.SERVER, attributes=FLOOR_ATTRIBUTES)
        token = context.attach(trace.set_span_in_context(span))
        try:
            body = app(environ, start_response)
            try:
                return list(body)
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()
        finally:
            context.detach(token)
            span.end()

    return call


# ------------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--requests", type=int, default=2000)
    options = parser.parse_args()

    tracer_provider, meter_provider = providers()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    variants: dict[str, Callable[[int], None]] = {}
    variants.update(flask_variants(tracer_provider, meter_provider))
    variants.update(django_variants(tracer_provider, meter_provider))
    variants["floor: one SDK span, 10 attributes"] = floor_runner(tracer_provider)

    for run in variants.values():  # warm-up
        run(200)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(options.rounds):
        for name, run in variants.items():
            gc.collect()
            started = time.perf_counter_ns()
            run(options.requests)
            samples[name].append((time.perf_counter_ns() - started) / options.requests / 1000)
    median = {name: statistics.median(values) for name, values in samples.items()}
    floor = median["floor: one SDK span, 10 attributes"]

    print(f"# {options.rounds} rounds x {options.requests} requests per variant, median us/request")
    for name, value in median.items():
        print(f"{name:40s} {value:9.1f} us")
    for framework in ("flask", "django"):
        bare = median[f"{framework} bare"]
        ours = median[f"{framework} veil"] - bare
        theirs = median[f"{framework} contrib"] - bare
        in_context = median[f"{framework} one span"] - bare
        print(
            f"{framework}: overhead veil {ours:.1f} us, contrib {theirs:.1f} us, one span in context "
            f"{in_context:.1f} us; veil/contrib {ours / theirs:.2f} (target <= 0.33), veil/floor "
            f"{ours / in_context:.2f} in context, {ours / floor:.2f} tight loop (target <= 2)"
        )
    tracer_provider.shutdown()
    meter_provider.shutdown()


if __name__ == "__main__":
    main()
