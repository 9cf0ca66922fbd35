"""One rule for tests that need a peer server or tool (Jaeger, Zipkin, PostgreSQL, rsyslog, promtool...).

Where the peer is missing, the test is skipped with one clear line saying how to get it; under
``VEIL_REQUIRE_PEERS=1`` (set by .ci/run) a missing peer is a failure instead, so CI cannot go green by skipping.
"""

from __future__ import annotations

import os

import pytest


def peers_required() -> bool:
    """Whether a missing peer fails the test run (CI) instead of skipping."""
    return os.environ.get("VEIL_REQUIRE_PEERS", "") not in ("", "0", "false", "no")


def missing_peer(name: str, how: str) -> None:
    """Skip (or, under VEIL_REQUIRE_PEERS, fail) the calling test because peer ``name`` is not available."""
    message = f"{name} is not available: {how}"
    if peers_required():
        pytest.fail(f"VEIL_REQUIRE_PEERS is set but {message}", pytrace=False)
    pytest.skip(message)
