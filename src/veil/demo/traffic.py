"""The traffic the demo sends through the shop, and the (fake) secrets it carries.

Every request goes to the gateway, which calls inventory (which calls payments) and payments. The secrets are
test values -- a test card number, a made-up token, an unsigned-looking JWT -- planted where real ones travel,
so the output shows them redacted and the end-to-end test can prove that none of them was exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BEARER_TOKEN",
    "CARD_NUMBERS",
    "INVENTORY_PASSWORD",
    "QUERY_TOKEN",
    "SCENARIOS",
    "SECRETS",
    "Result",
    "Scenario",
    "drive",
]

# Test card numbers (valid checksums, published as test numbers by card networks' sandboxes).
CARD_NUMBERS = ("4242 4242 4242 4242", "5555555555554444")
# An unsigned-looking JWT, {"alg":"HS256","typ":"JWT"}.{"sub":"customer-1042","scope":"orders"}.signature
BEARER_TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjdXN0b21lci0xMDQyIiwic2NvcGUiOiJvcmRlcnMifQ."
    "q3N0ZGVtb3NpZ25hdHVyZW5vdHJlYWxseXNpZ25lZA"
)
QUERY_TOKEN = "tok_demo_7f3a9c1e5b2d4f6a8c0e"
# The password inventory has in the URL it calls payments with (SHOP_PAYMENTS_URL).
INVENTORY_PASSWORD = "inv-s3cret-pass-9431"
SECRETS = (*CARD_NUMBERS, BEARER_TOKEN, QUERY_TOKEN, INVENTORY_PASSWORD)


@dataclass(frozen=True)
class Scenario:
    """One request to the gateway: what it shows, and what the gateway should answer."""

    name: str
    what: str
    sku: str
    expected_status: int
    card_number: str = CARD_NUMBERS[0]
    query: dict[str, str] | None = None


SCENARIOS = (
    Scenario("normal order", "gateway -> inventory -> payments, then gateway -> payments", "book", 201),
    Scenario("slow path", "inventory checks the warehouse (a custom span) before reserving", "piano", 201),
    Scenario("downstream 500", "payments fails; inventory and the gateway answer 502", "broken-sku", 502),
    Scenario("client error", "inventory does not know the item: 404 all the way back", "unicorn", 404),
    Scenario(
        "secrets",
        "a card number in the body, a token in the query, a bearer token, a password in a URL",
        "lamp",
        201,
        card_number=CARD_NUMBERS[1],
        query={"token": QUERY_TOKEN},
    ),
)


@dataclass(frozen=True)
class Result:
    scenario: Scenario
    status: int | None  # None: no answer (the error says why)
    trace_id: str  # '' when the gateway did not say
    error: str = ""


def drive(gateway_url: str, scenarios: tuple[Scenario, ...] = SCENARIOS, timeout: float = 10.0) -> list[Result]:
    """Send each scenario's request to the gateway, in order; never raises for a failed request."""
    import httpx

    results = []
    with httpx.Client(base_url=gateway_url, timeout=timeout) as client:
        for scenario in scenarios:
            body: dict[str, Any] = {
                "sku": scenario.sku,
                "quantity": 1,
                "customer": "customer-1042",
                "card_number": scenario.card_number,
            }
            try:
                response = client.post(
                    "/checkout",
                    params=scenario.query,
                    json=body,
                    headers={"Authorization": f"Bearer {BEARER_TOKEN}"},
                )
            except httpx.HTTPError as error:
                results.append(Result(scenario, None, "", f"{type(error).__name__}: {error}"))
                continue
            results.append(Result(scenario, response.status_code, response.headers.get("x-trace-id", "")))
    return results
