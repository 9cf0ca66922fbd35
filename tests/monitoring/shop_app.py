"""A small instrumented Flask service for the monitoring tests: `make_app()` in process, or run as a script.

As a script (`python -m tests.monitoring.shop_app`), it configures veil with the prometheus exporter from the
environment (OTEL_SERVICE_NAME, OTEL_EXPORTER_PROMETHEUS_PORT, ...), serves the app on 127.0.0.1 on a free
port and prints one JSON line `{"port": ..., "metrics": ...}` once it accepts requests.
"""

from __future__ import annotations

import json
import subprocess
import sys

from flask import Flask, request


def make_app() -> Flask:
    app = Flask("shop_checkout")

    @app.route("/orders/<int:order_id>")
    def order(order_id: int) -> str:
        return f"order {order_id}"

    @app.route("/payments/<payment_id>", methods=["POST"])
    def payment(payment_id: str) -> tuple[str, int]:
        return "payment provider unavailable", 503

    @app.route("/crash")
    def crash() -> str:
        raise RuntimeError("boom")

    @app.route("/convert")
    def convert() -> str:
        # Shells out with caller input: what the security alert test attacks (veil's sensor reports it).
        fmt = request.args.get("format", "pdf")
        done = subprocess.run(f"echo converted to {fmt}", shell=True, capture_output=True, text=True, check=False)
        return done.stdout

    return app


def main() -> None:
    from werkzeug.serving import make_server

    import veil
    from veil.export.prometheus import scrape_endpoints

    telemetry = veil.configure(traces_exporter="none", metrics_exporter="prometheus")
    endpoints = scrape_endpoints()
    endpoint = endpoints[0] if endpoints else None
    server = make_server("127.0.0.1", 0, make_app(), threaded=True)
    print(json.dumps({"port": server.server_port, "metrics": endpoint}), flush=True)
    try:
        server.serve_forever()
    finally:
        telemetry.shutdown()


if __name__ == "__main__":
    sys.exit(main())
