"""The shop's inventory: Flask, reserves stock and asks payments for the price with requests.

veil is added **without touching the code**, by the standard OpenTelemetry launcher (veil is its distro):

    OTEL_SERVICE_NAME=inventory SHOP_PORT=8081 opentelemetry-instrument python -m examples.shop.inventory

The only OpenTelemetry code here is optional: a custom span around the slow warehouse check.
"""

from __future__ import annotations

import time

import requests
from flask import Flask, request
from opentelemetry import trace

from examples.shop.common import INVENTORY_PORT, PAYMENTS_PORT, listen_address, service_logger, service_url

# A deployment might well put credentials in this URL; veil records it as http://REDACTED:REDACTED@...
PAYMENTS_URL = service_url("payments", PAYMENTS_PORT)
STOCK = {"book": 12, "lamp": 3, "piano": 1, "broken-sku": 5}
WAREHOUSE_ITEMS = {"piano"}  # kept off-site: reserving one takes a slow lookup

logger = service_logger("inventory")
tracer = trace.get_tracer("shop.inventory")
http = requests.Session()
app = Flask(__name__)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/reservations")
def reserve() -> tuple[dict[str, object], int]:
    body = request.get_json(force=True)
    sku, quantity = str(body["sku"]), int(body["quantity"])
    if sku not in STOCK:
        logger.info("unknown item %s", sku)
        return {"error": f"unknown item {sku}"}, 404
    if sku in WAREHOUSE_ITEMS:
        with tracer.start_as_current_span("check warehouse") as span:
            span.set_attribute("shop.sku", sku)
            time.sleep(0.3)
    if STOCK[sku] < quantity:
        return {"error": "not enough stock"}, 409
    quote = http.get(f"{PAYMENTS_URL}/quotes/{sku}", timeout=5)
    if quote.status_code != 200:
        logger.error("no price for %s: payments answered HTTP %d", sku, quote.status_code)
        return {"error": "pricing unavailable"}, 502
    logger.info("reserved %d x %s", quantity, sku)
    return {"sku": sku, "reserved": quantity, "price_cents": quote.json()["price_cents"]}, 200


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log: request lines can hold tokens
    host, port = listen_address(INVENTORY_PORT)
    app.run(host=host, port=port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
