"""Noise control between a finding and the log stream: aggregation of repeats, a token bucket, exact drop counts.

Identical findings (same rule, route and client) within `window` seconds are published once as they happen;
the repeats are folded into one finding with `count` = the number of repeats, published when the window
closes. Everything published passes a token bucket (`rate` per second, `burst` at once); what the bucket
refuses is counted per rule, and as soon as a token is free again one summary finding says exactly how many
were dropped (Falco's throttle drops silently; users complained). A timer thread publishes closed windows and
the summary when no new finding arrives to do it; `flush()` publishes everything pending at once (exit).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from veil._fork import after_fork

if TYPE_CHECKING:
    from veil.security.findings import Finding

DROPPED_RULE_ID: Final = "VEIL-NOISE-DROPPED"
_MAX_KEYS: Final = 4096


@dataclass
class _Window:
    deadline: float
    repeats: int = 0
    last: Finding | None = None


@dataclass(frozen=True)
class NoiseStats:
    """Totals since start: findings submitted, published, folded into aggregates, and dropped by the bucket."""

    submitted: int
    published: int
    aggregated: int
    dropped: int


class NoiseControl:
    """Aggregation window plus token bucket in front of `publish`; thread-safe, never raises into callers.

    `window` 0 turns aggregation off; `rate` 0 turns the bucket off.
    """

    def __init__(
        self,
        publish: Callable[[Finding], None],
        *,
        window: float = 10.0,
        rate: float = 10.0,
        burst: int = 50,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self.window = window
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, object, object], _Window] = {}
        self._tokens = float(burst)
        self._refilled = clock()
        self._dropped: dict[str, int] = {}
        self._timer: threading.Timer | None = None
        self._timer_due = 0.0
        self._submitted = self._published = self._aggregated = self._dropped_total = 0
        after_fork(self._after_fork)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        self._timer = None

    def stats(self) -> NoiseStats:
        with self._lock:
            return NoiseStats(self._submitted, self._published, self._aggregated, self._dropped_total)

    def submit(self, finding: Finding) -> None:
        """Publish `finding` now, fold it into its window's aggregate, or count it as dropped."""
        with self._lock:
            self._submitted += 1
            now = self._clock()
            ready = self._closed_windows(now, force=False)
            fields = finding.fields
            key = (finding.rule_id, fields.get("http.route"), fields.get("client.address"))
            window = self._windows.get(key) if self.window > 0 else None
            if window is not None and now < window.deadline:
                window.repeats += 1
                window.last = finding
                self._aggregated += 1
            else:
                if self.window > 0 and len(self._windows) < _MAX_KEYS:
                    self._windows[key] = _Window(now + self.window)
                ready.append(finding)
            out = self._through_bucket(now, ready, force=False)
            self._schedule(now)
        self._send(out)

    def flush(self) -> None:
        """Publish every pending aggregate and the dropped-count summary now, bucket or not (exit, tests)."""
        with self._lock:
            now = self._clock()
            ready = self._closed_windows(now, force=True)
            out = self._through_bucket(now, ready, force=True)
        self._send(out)

    def _due(self) -> None:
        with self._lock:
            self._timer = None
            now = self._clock()
            out = self._through_bucket(now, self._closed_windows(now, force=False), force=False)
            self._schedule(now)
        self._send(out)

    # -- under the lock

    def _closed_windows(self, now: float, *, force: bool) -> list[Finding]:
        ready: list[Finding] = []
        if not self._windows:
            return ready
        for key, window in list(self._windows.items()):
            if force or now >= window.deadline:
                del self._windows[key]
                if window.repeats and window.last is not None:
                    ready.append(replace(window.last, count=window.repeats))
        return ready

    def _through_bucket(self, now: float, ready: list[Finding], *, force: bool) -> list[Finding]:
        unlimited = self.rate <= 0
        if not unlimited:
            self._tokens = min(float(self.burst), self._tokens + (now - self._refilled) * self.rate)
        self._refilled = now
        out: list[Finding] = []
        if self._dropped and (force or unlimited or self._tokens >= 1.0):
            out.append(self._summary())
        for finding in ready:
            if force or unlimited or self._tokens >= 1.0:
                if not (force or unlimited):
                    self._tokens -= 1.0
                out.append(finding)
            else:
                self._dropped[finding.rule_id] = self._dropped.get(finding.rule_id, 0) + finding.count
                self._dropped_total += finding.count
        if force and self._dropped:
            out.append(self._summary())
        self._published += len(out)
        return out

    def _summary(self) -> Finding:
        from veil.security.findings import Finding

        dropped = self._dropped
        self._dropped = {}
        total = sum(dropped.values())
        per_rule = sorted(f"{rule}={count}" for rule, count in dropped.items())
        return Finding(
            rule_id=DROPPED_RULE_ID,
            rule_name="Findings dropped by the rate limit",
            category="noise-control",
            priority="WARNING",
            message=f"{total} security findings were dropped by the rate limit ({', '.join(per_rule)})",
            source="noise",
            fields={"veil.security.dropped": total, "veil.security.dropped.rules": per_rule},
            count=total,
        )

    def _schedule(self, now: float) -> None:
        due: float | None = None
        if self._dropped and self.rate > 0:
            due = now + max(0.0, (1.0 - self._tokens) / self.rate)
        for window in self._windows.values():
            if window.repeats and (due is None or window.deadline < due):
                due = window.deadline
        if due is None:
            return
        timer = self._timer
        if timer is not None and self._timer_due <= due:
            return
        if timer is not None:
            timer.cancel()
        timer = threading.Timer(max(0.0, due - now) + 0.001, self._due)
        timer.name = "veil-security-noise"
        timer.daemon = True
        self._timer = timer
        self._timer_due = due
        timer.start()

    def _send(self, findings: list[Finding]) -> None:
        for finding in findings:
            self._publish(finding)
