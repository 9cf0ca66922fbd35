"""The `prometheus` metrics exporter: a scrape endpoint serving the Prometheus text exposition format.

Built on the official `opentelemetry-exporter-prometheus` (`pip install 'veil[prometheus]'`), which owns the
OpenTelemetry-to-Prometheus translation: metric names with unit suffixes (`http_server_request_duration_seconds`),
histogram buckets at the instrument's boundaries, resource attributes as `target_info`. veil adds three things:

- **Redaction on the pull path.** A pull reader has no exporter to wrap, so the data the SDK collects on a
  scrape passes through the same redaction wrapper as every pushed export before the translation sees it;
  data that cannot be redacted is not served.
- **`service_name` on every series**, copied from the resource, so rules can group by service without a
  join on target_info (one value per process: no cardinality cost).
- **One endpoint per process, also after fork.** The endpoint listens on OTEL_EXPORTER_PROMETHEUS_HOST and
  the first free port of OTEL_EXPORTER_PROMETHEUS_PORT ... + VEIL_PROMETHEUS_WORKER_PORTS - 1. A forked child
  (a gunicorn worker after `--preload`) closes its inherited copy of the listening socket and binds its own
  port in that range; a process that finds every port taken logs it once and serves nothing, never raising
  into the application. A `configure(force=True)` in the same process keeps the listening socket and points
  it at the new pipeline.

The endpoint is a small threaded HTTP server (daemon threads), not the application's server, so scrapes are
never traced and never compete with request handling for the application's worker pool.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import TCPServer, ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricReader, MetricsData
from opentelemetry.semconv._incubating.attributes.service_attributes import SERVICE_NAMESPACE
from opentelemetry.semconv.attributes.service_attributes import SERVICE_NAME

from veil import _sdk
from veil._fork import after_fork
from veil._guard import log_once
from veil.errors import ConfigurationError
from veil.settings import METRICS_EXPORTERS, Settings

_IMPORT_ERROR: ImportError | None = None
if TYPE_CHECKING:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader as _UpstreamReader
    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.registry import Collector
else:
    try:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader as _UpstreamReader
        from prometheus_client import CollectorRegistry, make_wsgi_app
        from prometheus_client.registry import Collector
    except ImportError as error:  # the optional extra is not installed
        _UpstreamReader = MetricReader
        Collector = object
        _IMPORT_ERROR = error

__all__ = ["PrometheusReader", "prometheus_reader", "scrape_endpoints"]

_logger = logging.getLogger("veil")

# Resource attributes copied onto every series as labels (one value per process).
_SERIES_RESOURCE_KEYS = frozenset({SERVICE_NAME, SERVICE_NAMESPACE})


def prometheus_reader(
    settings: Settings, redact: Callable[[MetricExporter], MetricExporter] | None = None
) -> PrometheusReader:
    """The reader behind OTEL_METRICS_EXPORTER=prometheus; ConfigurationError when the extra is missing."""
    if _IMPORT_ERROR is not None:
        raise ConfigurationError(
            "OTEL_METRICS_EXPORTER",
            "prometheus",
            [name for name in METRICS_EXPORTERS if name != "prometheus"],
            reason=f"the prometheus exporter needs the optional extra: pip install 'veil[prometheus]' "
            f"({_IMPORT_ERROR})",
        )
    return PrometheusReader(
        host=settings.prometheus_host,
        port=settings.prometheus_port,
        worker_ports=settings.prometheus_worker_ports,
        redact=redact,
    )


class _Deliver(MetricExporter):
    """The innermost 'exporter' of the pull path: hands (redacted) data to the Prometheus translation."""

    def __init__(self, deliver: Callable[[MetricsData], None]) -> None:
        super().__init__()
        self._deliver = deliver

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        self._deliver(metrics_data)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        return None


class PrometheusReader(_UpstreamReader):
    """A pull MetricReader serving redacted metrics on a scrape endpoint of its own.

    `redact` wraps an exporter (veil's RedactingMetricExporter in `configure()`); the data each scrape
    collects goes through it. `endpoint` is the URL this process serves, None when no port could be bound.
    """

    def __init__(
        self,
        host: str = "localhost",
        port: int = 9464,
        worker_ports: int = 1,
        redact: Callable[[MetricExporter], MetricExporter] | None = None,
    ) -> None:
        super().__init__(
            registry=CollectorRegistry(auto_describe=False),
            resource_attribute_filter=_SERIES_RESOURCE_KEYS.__contains__,
        )
        inner: MetricExporter = _Deliver(_sdk.prometheus_receiver(self))
        self._sink = redact(inner) if redact is not None else inner
        self._address = _Address(host, port, worker_ports)
        self._endpoint = _attach(self._address, _sdk.prometheus_collector(self))

    @property
    def endpoint(self) -> str | None:
        """`http://host:port/metrics` of this process, or None when every allowed port was taken."""
        endpoint = _endpoints.get(self._address)
        return None if endpoint is None else endpoint.url(self._address)

    def _receive_metrics(self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any) -> None:
        if metrics_data is None:
            return
        try:
            self._sink.export(metrics_data, timeout_millis=timeout_millis)
        except Exception:
            log_once("prometheus.collect", "veil: metrics could not be prepared for a scrape", exc_info=True)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        _detach(self._address, _sdk.prometheus_collector(self))
        super().shutdown(timeout_millis=timeout_millis, **kwargs)


# ------------------------------------------------------------------------------------------ the endpoint


class _Address:
    """Where an endpoint may listen: a host and a range of ports."""

    __slots__ = ("host", "port", "worker_ports")

    def __init__(self, host: str, port: int, worker_ports: int) -> None:
        self.host = host
        self.port = port
        self.worker_ports = worker_ports if port else 1

    def _key(self) -> tuple[str, int, int]:
        return (self.host, self.port, self.worker_ports)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Address) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def describe(self) -> str:
        last = self.port + self.worker_ports - 1
        return f"{self.host}:{self.port}" if last == self.port else f"{self.host}:{self.port}-{last}"


class _Switch(Collector):
    """The one collector an endpoint serves: whichever reader is current (swapped on reconfiguration)."""

    def __init__(self) -> None:
        self.target: Any = None

    def collect(self) -> Iterator[Any]:
        target = self.target
        if target is None:
            return iter(())
        try:
            return iter(list(target.collect()))
        except Exception:
            log_once("prometheus.scrape", "veil: a scrape failed", exc_info=True)
            return iter(())

    def describe(self) -> Iterable[Any]:
        return ()


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's fully qualified name, a DNS query that can stall
        # startup where DNS is slow; the name only fills SERVER_NAME, so the host as given is used.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return None


class _Endpoint:
    """One listening scrape server of this process."""

    def __init__(self, address: _Address, switch: _Switch) -> None:
        self.pid = os.getpid()
        self.switch = switch
        self.server: _ThreadingServer | None = None
        self.thread: threading.Thread | None = None
        self.port: int | None = None
        self._bind(address)

    def _bind(self, address: _Address) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self.switch)
        application = make_wsgi_app(registry)
        last_error: OSError | None = None
        for port in range(address.port, address.port + address.worker_ports):
            try:
                server_class = _server_class(address.host, port)
                server = make_server(
                    address.host, port, application, server_class=server_class, handler_class=_QuietHandler
                )
            except OSError as error:
                last_error = error
                continue
            self.server = server
            self.port = server.server_address[1]
            self.thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.5}, name="veil-prometheus", daemon=True
            )
            self.thread.start()
            return
        log_once(
            f"prometheus.bind.{address.describe()}",
            "veil: the prometheus scrape endpoint could not listen on %s (%s); this process's metrics are not "
            "served. Several workers? Set VEIL_PROMETHEUS_WORKER_PORTS to the number of processes (see "
            "docs/metrics.md).",
            address.describe(),
            last_error,
        )

    def url(self, address: _Address) -> str | None:
        if self.pid != os.getpid() or self.server is None or self.port is None:
            return None
        shown = f"[{address.host}]" if ":" in address.host else address.host
        return f"http://{shown}:{self.port}/metrics"

    def close(self) -> None:
        server = self.server
        self.server = None
        if server is None:
            return
        if self.pid == os.getpid() and self.thread is not None and self.thread.is_alive():
            server.shutdown()
        server.server_close()

    def abandon_after_fork(self) -> None:
        """In a forked child: close the inherited socket (the parent keeps serving on it)."""
        server = self.server
        self.server = None
        if server is not None:
            server.socket.close()


def _server_class(host: str, port: int) -> type[_ThreadingServer]:
    """An IPv6 server class when `host` resolves to IPv6 only (e.g. `::`), else the IPv4 one."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError:
        return _ThreadingServer
    families = {info[0] for info in infos}
    if families and socket.AF_INET not in families and socket.AF_INET6 in families:
        return type("_ThreadingServer6", (_ThreadingServer,), {"address_family": socket.AF_INET6})
    return _ThreadingServer


_endpoints: dict[_Address, _Endpoint] = {}
_endpoints_lock = threading.Lock()


def scrape_endpoints() -> list[str]:
    """The URLs of the scrape endpoints this process serves (empty without the prometheus exporter)."""
    with _endpoints_lock:
        urls = [endpoint.url(address) for address, endpoint in _endpoints.items()]
    return [url for url in urls if url is not None]


def _attach(address: _Address, collector: Any) -> _Endpoint:
    """Serve `collector` at `address`, reusing this process's listening endpoint there if it has one."""
    with _endpoints_lock:
        endpoint = _endpoints.get(address)
        if endpoint is None or endpoint.pid != os.getpid() or endpoint.server is None:
            endpoint = _Endpoint(address, _Switch())
            _endpoints[address] = endpoint
        endpoint.switch.target = collector
        return endpoint


def _detach(address: _Address, collector: Any) -> None:
    """Stop serving `collector`; the endpoint closes unless a newer reader took it over."""
    with _endpoints_lock:
        endpoint = _endpoints.get(address)
        if endpoint is None or endpoint.switch.target is not collector:
            return
        endpoint.switch.target = None
        del _endpoints[address]
    endpoint.close()


def _after_fork_in_child() -> None:
    """Give a forked child its own endpoint for each one its parent served."""
    global _endpoints_lock
    _endpoints_lock = threading.Lock()  # another thread of the parent may have held it at fork time
    for address, endpoint in list(_endpoints.items()):
        try:
            endpoint.abandon_after_fork()
            target = endpoint.switch.target
            if target is not None:
                # The translation caches target_info from its first scrape; the child's resource differs
                # (process.pid), so it is built anew from the child's first collection.
                _sdk.forget_prometheus_target_info(target)
            _endpoints[address] = _Endpoint(address, endpoint.switch)
        except Exception:
            log_once("prometheus.fork", "veil: the prometheus endpoint could not be rebound after fork", exc_info=True)


after_fork(_after_fork_in_child)
