"""veil's flush on a stop by signal stands in for the default disposition only: what the application sees and
sets through the signal module is what it would see and set without veil, and the process still dies by the
signal, within the shutdown bound even when the collector black-holes."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

from tests.resilience.faults import FaultProxy
from tests.resilience.support import ROOT, child_env

SEMANTICS = textwrap.dedent(
    """
    import signal, sys
    import veil
    from veil import _signals

    veil.configure(auto_instrument=False, traces_exporter="none", metrics_exporter="none", logs_exporter="none")
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # a handler: left alone
    assert _signals._real_getsignal(signal.SIGTERM) is _signals._on_signal

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    assert previous is signal.SIG_DFL, previous  # chaining code sees the default, as without veil
    assert signal.getsignal(signal.SIGTERM) is mine
    assert signal.signal(signal.SIGTERM, previous) is mine
    assert _signals._real_getsignal(signal.SIGTERM) is _signals._on_signal  # restoring SIG_DFL restores veil's
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    assert _signals._real_getsignal(signal.SIGTERM) is signal.SIG_IGN
    assert signal.signal(signal.SIGINT, signal.SIG_DFL) is signal.default_int_handler
    assert _signals._real_getsignal(signal.SIGINT) is _signals._on_signal
    print("ok")
    """
)


def _default_dispositions() -> None:
    """In the child before exec: SIGINT and SIGTERM as a process manager starts a service (a shell runs a
    background job with SIGINT ignored, and exec keeps an ignored signal ignored)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_the_application_sees_the_default_disposition_where_veil_stands_in() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SEMANTICS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_default_dispositions,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


BLOCKED = textwrap.dedent(
    """
    import time
    import veil

    tracer = veil.configure(auto_instrument=False).tracer_provider.get_tracer("t")
    for _ in range(5):
        with tracer.start_as_current_span("s"):
            pass
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_sigterm_with_a_black_holing_collector_dies_by_the_signal_within_the_bound() -> None:
    with FaultProxy(1) as proxy:  # nothing behind it: it accepts and never answers
        proxy.blackhole()
        env = child_env(
            proxy.url,
            "http/protobuf",
            VEIL_SHUTDOWN_TIMEOUT="1000",
            OTEL_EXPORTER_OTLP_TIMEOUT="10000",
            OTEL_BSP_SCHEDULE_DELAY="600000",
        )
        process = subprocess.Popen(
            [sys.executable, "-c", BLOCKED], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert process.stdout is not None
        assert process.stdout.readline() == b"ready\n"
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode()
        took = time.monotonic() - sent
    assert process.returncode == -signal.SIGTERM, output
    assert proxy.connections_accepted >= 1, output  # the flush really was stuck in the black hole
    assert took < 1.0 + 1.5, (took, output)  # the 1 s bound, and a margin for a loaded machine
