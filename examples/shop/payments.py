"""The shop's payments service: Django (a one-file project), quotes prices and charges cards.

veil is added with **`veil run`**, which validates the configuration before starting the program:

    SHOP_PORT=8082 veil run --service-name payments -- python -m examples.shop.payments

`charge` logs the card number and the caller's Authorization header -- a mistake real code makes. The
exported log record and the local JSON log line show them as `[REDACTED:payment_card]` and
`Bearer [REDACTED:jwt]`.
"""

from __future__ import annotations

import json
import os
import secrets
import sys

from django.conf import settings

settings.configure(
    DEBUG=False,
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    SECRET_KEY=os.environ.get("SHOP_DJANGO_SECRET_KEY") or secrets.token_hex(32),
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    DATABASES={},
    LOGGING_CONFIG=None,
    USE_TZ=True,
)

from django.http import HttpRequest, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402
from django.views.decorators.http import require_GET, require_POST  # noqa: E402

from examples.shop.common import PAYMENTS_PORT, listen_address, service_logger  # noqa: E402

PRICES = {"book": 1_500, "lamp": 4_200, "piano": 250_000}
logger = service_logger("payments")


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


@require_GET
def quote(request: HttpRequest, sku: str) -> JsonResponse:
    if sku not in PRICES:
        raise RuntimeError(f"the price list has no entry for {sku!r}")  # Django answers 500
    return JsonResponse({"sku": sku, "price_cents": PRICES[sku]})


@csrf_exempt
@require_POST
def charge(request: HttpRequest) -> JsonResponse:
    authorization = request.headers.get("Authorization", "")
    if not authorization.startswith("Bearer "):
        return JsonResponse({"error": "missing credentials"}, status=401)
    body = json.loads(request.body)
    logger.info(
        "charging card %s for %d cents; the caller sent %s",
        body["card_number"],
        body["amount_cents"],
        authorization,
    )
    return JsonResponse({"charge_id": f"ch_{secrets.token_hex(8)}", "status": "captured"}, status=201)


urlpatterns = [
    path("healthz", healthz),
    path("quotes/<str:sku>", quote),
    path("charges", charge),
]


def main() -> None:
    from django.core.management import execute_from_command_line

    host, port = listen_address(PAYMENTS_PORT)
    execute_from_command_line([sys.argv[0], "runserver", "--noreload", "--skip-checks", f"{host}:{port}"])


if __name__ == "__main__":
    main()
