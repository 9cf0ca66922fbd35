"""What the three shop services share: where they listen, where the others are, and how they log.

Each service is configured through the environment, as it would be in a container:

* `SHOP_HOST` / `SHOP_PORT` -- where the service listens (default 127.0.0.1 and its own port);
* `SHOP_INVENTORY_URL`, `SHOP_PAYMENTS_URL` -- where the services it calls are.

Logs go to stdout as JSON lines through `veil.logging.JSONFormatter`, which adds the trace and span ids
and redacts secrets the way exported telemetry is redacted: the local log file is safe to share too.
"""

from __future__ import annotations

import logging
import os
import sys

from veil.logging import JSONFormatter

GATEWAY_PORT = 8080
INVENTORY_PORT = 8081
PAYMENTS_PORT = 8082


def listen_address(default_port: int) -> tuple[str, int]:
    """(host, port) from SHOP_HOST and SHOP_PORT."""
    return os.environ.get("SHOP_HOST", "127.0.0.1"), int(os.environ.get("SHOP_PORT", str(default_port)))


def service_url(name: str, default_port: int) -> str:
    """The base URL of another service, from SHOP_<NAME>_URL."""
    return os.environ.get(f"SHOP_{name.upper()}_URL", f"http://127.0.0.1:{default_port}").rstrip("/")


def service_logger(service: str) -> logging.Logger:
    """The service's logger, writing JSON lines (with trace ids, secrets redacted) to stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger(f"shop.{service}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
