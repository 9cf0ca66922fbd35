"""Noise control: aggregation of identical findings per window, the token bucket and the exact dropped count."""

from __future__ import annotations

import threading
import time

from veil.security.findings import Finding
from veil.security.noise import DROPPED_RULE_ID, NoiseControl


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def finding(rule: str = "VEIL-RT-SHELL", route: str = "/run", client: str = "10.0.0.1") -> Finding:
    return Finding(
        rule_id=rule,
        rule_name=rule,
        category="command-injection",
        priority="CRITICAL",
        message=f"{rule} on {route}",
        source="runtime",
        fields={"http.route": route, "client.address": client},
    )


def test_identical_findings_in_a_window_become_one_with_a_count() -> None:
    clock = Clock()
    published: list[Finding] = []
    noise = NoiseControl(published.append, window=10, rate=0, clock=clock)
    for _ in range(5):
        noise.submit(finding())
    noise.submit(finding(client="10.0.0.2"))  # another client: its own key
    assert [f.count for f in published] == [1, 1]
    clock.now += 11
    noise.submit(finding(rule="VEIL-RT-OTHER"))  # any later submit closes due windows
    assert [(f.rule_id, f.count) for f in published[2:]] == [("VEIL-RT-SHELL", 4), ("VEIL-RT-OTHER", 1)]
    assert noise.stats().aggregated == 4 and noise.stats().submitted == 7


def test_the_timer_publishes_a_closed_window_without_a_new_finding() -> None:
    published: list[Finding] = []
    done = threading.Event()

    def publish(item: Finding) -> None:
        published.append(item)
        if item.count > 1:
            done.set()

    noise = NoiseControl(publish, window=0.2, rate=0)
    for _ in range(3):
        noise.submit(finding())
    assert done.wait(10)
    assert [f.count for f in published] == [1, 2]


def test_the_bucket_drops_and_then_reports_the_exact_number() -> None:
    clock = Clock()
    published: list[Finding] = []
    noise = NoiseControl(published.append, window=0, rate=1, burst=3, clock=clock)
    for index in range(10):
        noise.submit(finding(route=f"/r{index}"))
    for index in range(4):
        noise.submit(finding(rule="VEIL-RT-FILE", route=f"/f{index}"))
    assert len(published) == 3
    clock.now += 5  # tokens again: the next submit first says what was dropped
    noise.submit(finding(route="/later"))
    summary = published[3]
    assert summary.rule_id == DROPPED_RULE_ID and summary.count == 11
    assert summary.fields["veil.security.dropped.rules"] == ["VEIL-RT-FILE=4", "VEIL-RT-SHELL=7"]
    assert published[4].fields["http.route"] == "/later"
    assert noise.stats().dropped == 11


def test_flush_publishes_pending_aggregates_and_the_summary() -> None:
    clock = Clock()
    published: list[Finding] = []
    noise = NoiseControl(published.append, window=60, rate=1, burst=1, clock=clock)
    noise.submit(finding())
    noise.submit(finding())  # aggregated
    noise.submit(finding(route="/b"))  # dropped by the bucket
    noise.flush()
    assert [(f.rule_id, f.count) for f in published] == [
        ("VEIL-RT-SHELL", 1),
        (DROPPED_RULE_ID, 1),
        ("VEIL-RT-SHELL", 1),
    ]
    assert published[2].fields["http.route"] == "/run"


def test_the_summary_arrives_by_timer_when_the_attack_stops() -> None:
    published: list[Finding] = []
    noise = NoiseControl(published.append, window=0, rate=20, burst=1)
    for index in range(5):
        noise.submit(finding(route=f"/{index}"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(f.rule_id == DROPPED_RULE_ID for f in published):
        time.sleep(0.02)
    (summary,) = [f for f in published if f.rule_id == DROPPED_RULE_ID]
    passed = [f for f in published if f.rule_id != DROPPED_RULE_ID]
    assert summary.count == 5 - len(passed) >= 1
