"""The shop's gateway: FastAPI, async, calls inventory and payments with httpx.

veil is added **in code**: `veil.configure()` runs first, before the app is created. It reads the standard
OTEL_* variables (service name, exporter, endpoint) and instruments FastAPI, httpx and logging.

    SHOP_PORT=8080 python -m examples.shop.gateway
"""

from __future__ import annotations

import veil

telemetry = veil.configure(service_name="gateway")

from collections.abc import AsyncIterator, Awaitable, Callable  # noqa: E402
from contextlib import asynccontextmanager  # noqa: E402

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI, HTTPException, Request, Response  # noqa: E402
from opentelemetry import trace  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402

from examples.shop.common import (  # noqa: E402
    GATEWAY_PORT,
    INVENTORY_PORT,
    PAYMENTS_PORT,
    listen_address,
    service_logger,
    service_url,
)

INVENTORY_URL = service_url("inventory", INVENTORY_PORT)
PAYMENTS_URL = service_url("payments", PAYMENTS_PORT)
logger = service_logger("gateway")


class Order(BaseModel):
    sku: str
    quantity: int = Field(default=1, gt=0, le=10)
    customer: str
    card_number: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        app.state.client = client
        yield


app = FastAPI(title="shop gateway", lifespan=lifespan)


@app.middleware("http")
async def add_trace_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """Return the trace id to the caller, so a support ticket can point at the trace."""
    response = await call_next(request)
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        response.headers["x-trace-id"] = trace.format_trace_id(context.trace_id)
    return response


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/checkout", status_code=201)
async def checkout(order: Order, request: Request) -> dict[str, object]:
    client: httpx.AsyncClient = request.app.state.client
    logger.info("checkout started", extra={"sku": order.sku, "quantity": order.quantity})

    reservation = await client.post(
        f"{INVENTORY_URL}/reservations", json={"sku": order.sku, "quantity": order.quantity}
    )
    if reservation.status_code != 200:
        logger.warning("inventory refused the reservation: HTTP %d", reservation.status_code)
        status = reservation.status_code if reservation.status_code < 500 else 502
        raise HTTPException(status_code=status, detail=reservation.json().get("error", "inventory failed"))
    amount = int(reservation.json()["price_cents"]) * order.quantity

    headers = {}
    if "authorization" in request.headers:  # the caller's credentials travel on to payments
        headers["Authorization"] = request.headers["authorization"]
    charge = await client.post(
        f"{PAYMENTS_URL}/charges",
        json={"card_number": order.card_number, "amount_cents": amount, "customer": order.customer},
        headers=headers,
    )
    if charge.status_code != 201:
        logger.error("payment failed: HTTP %d", charge.status_code)
        raise HTTPException(status_code=502, detail="payment failed")
    logger.info("order placed", extra={"sku": order.sku, "amount_cents": amount})
    return {"status": "placed", "sku": order.sku, "amount_cents": amount, "charge": charge.json()["charge_id"]}


def main() -> None:
    host, port = listen_address(GATEWAY_PORT)
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
