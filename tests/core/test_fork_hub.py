"""The fork hub (`veil._fork`): callbacks run in a really forked child, in order, isolated, held weakly."""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from veil import _fork, _guard

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")

ROOT = Path(__file__).resolve().parents[2]

ran: list[str] = []  # what the callbacks did (in the child: its own copy, sent back through a pipe)


def in_child(report: Callable[[], object], timeout: float = 10.0) -> object:
    """Fork; the child sends back `report()` (JSON) and ends with os._exit. Fails if the child hangs."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        status = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(report()).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the forked child hung")
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_end)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(b"".join(chunks))


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name

    def after_fork(self) -> None:
        ran.append(self.name)

    def fails(self) -> None:
        ran.append(f"{self.name} raising")
        raise RuntimeError("callback bug")


@pytest.fixture(autouse=True)
def clean() -> Iterator[None]:
    ran.clear()
    yield
    ran.clear()
    gc.collect()  # the recorders of this test die: their callbacks are skipped from now on


def test_callbacks_run_in_the_child_in_registration_order_and_not_in_the_parent() -> None:
    first, second, third = Recorder("first"), Recorder("second"), Recorder("third")
    for recorder in (first, second, third):
        _fork.after_fork(recorder.after_fork)

    assert in_child(lambda: ran) == ["first", "second", "third"]
    assert ran == []


def test_a_raising_callback_is_logged_once_and_the_others_still_run() -> None:
    before, broken, after = Recorder("before"), Recorder("broken"), Recorder("after")
    _fork.after_fork(before.after_fork)
    _fork.after_fork(broken.fails)
    _fork.after_fork(after.after_fork)
    messages: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("veil")
    logger.addHandler(handler)
    _guard.reset_for_tests()
    try:
        reported = in_child(lambda: {"ran": ran, "messages": messages})
    finally:
        logger.removeHandler(handler)

    assert isinstance(reported, dict)
    assert reported["ran"] == ["before", "broken raising", "after"]
    assert reported["messages"] == [
        "veil: an after-fork callback (Recorder.fails) raised in the forked child (ignored)"
    ]


def test_a_bound_method_does_not_keep_its_instance_alive_and_is_skipped_once_dead() -> None:
    kept, dropped = Recorder("kept"), Recorder("dropped")
    _fork.after_fork(dropped.after_fork)
    _fork.after_fork(kept.after_fork)
    gone = weakref.ref(dropped)
    del dropped
    gc.collect()

    assert gone() is None
    assert in_child(lambda: {"ran": ran, "registered": len(_fork._callbacks)}) == {
        "ran": ["kept"],
        "registered": sum(1 for reference in _fork._callbacks if reference() is not None),  # pruned in the child
    }


def test_dead_references_are_swept_as_objects_come_and_go() -> None:
    for index in range(2000):
        _fork.after_fork(Recorder(str(index)).after_fork)  # each recorder dies at once
    assert len(_fork._callbacks) < 500


def test_a_plain_function_is_held_strongly() -> None:
    active = [True]  # the hub keeps the function for good: inert once this test is over

    def closure() -> None:  # nothing but the hub refers to it
        if active:
            ran.append("closure")

    _fork.after_fork(closure)
    del closure
    gc.collect()
    try:
        assert in_child(lambda: ran) == ["closure"]
    finally:
        active.clear()


class Logs:
    def after_fork(self) -> None:
        ran.append(f"logged: {_guard.log_once('test.fork.guard', 'veil: test message from a fork callback')}")


def test_guard_locks_are_renewed_before_any_callback_so_callbacks_and_the_hub_can_log() -> None:
    limiter = _guard.OncePerInterval()
    logs = Logs()
    _fork.after_fork(logs.after_fork)
    _guard.reset_for_tests()

    def report() -> object:
        return {"ran": ran, "limiter": limiter.first("key"), "log_once": _guard.log_once("test.fork.guard2", "x")}

    # Another thread of the parent holds both locks at fork time: without renewal the child would hang.
    with _guard._logged._lock, limiter._lock:
        reported = in_child(report)
    assert reported == {"ran": ["logged: True"], "limiter": True, "log_once": True}
    assert _fork._callbacks[0]() is _guard.renew_locks_after_fork


def test_after_fork_is_a_no_op_where_fork_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fork, "_SUPPORTED", False)
    count = len(_fork._callbacks)
    _fork.after_fork(lambda: None)
    _fork.after_fork_after_existing_hooks(lambda: None)
    assert len(_fork._callbacks) == count


def test_the_hub_runs_in_its_early_slot_and_the_late_variant_after_hooks_registered_before_it() -> None:
    # In a fresh interpreter: the raw os.register_at_fork hook stands for an SDK provider's own hook.
    code = """
        import os
        from veil import _fork

        order = []
        os.register_at_fork(after_in_child=lambda: order.append("sdk"))
        _fork.after_fork(lambda: order.append("hub"))
        _fork.after_fork_after_existing_hooks(lambda: order.append("late"))
        _fork.after_fork_after_existing_hooks(lambda: 1 / 0)
        _fork.after_fork_after_existing_hooks(lambda: order.append("after the raising one"))
        pid = os.fork()
        if pid == 0:
            os.write(1, (",".join(order) + "\\n").encode())
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", order)
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, cwd=ROOT, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["hub,sdk,late,after the raising one", "parent []"]


def test_the_hub_registers_with_the_os_once_and_a_late_callback_per_call(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: list[object] = []
    monkeypatch.setattr(os, "register_at_fork", lambda **hooks: registered.append(hooks))
    for index in range(3):
        _fork.after_fork(Recorder(str(index)).after_fork)
    assert registered == []
    _fork.after_fork_after_existing_hooks(lambda: None)
    assert len(registered) == 1


def test_registering_from_many_threads_loses_nothing() -> None:
    recorders = [Recorder(str(index)) for index in range(400)]
    barrier = threading.Barrier(8)

    def register(part: list[Recorder]) -> None:
        barrier.wait()
        for recorder in part:
            _fork.after_fork(recorder.after_fork)

    threads = [threading.Thread(target=register, args=(recorders[index::8],)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(in_child(lambda: ran), key=int) == [str(index) for index in range(400)]  # type: ignore[arg-type]
    del recorders


def test_only_the_hub_registers_with_the_os() -> None:
    """Every other module goes through `veil._fork` (one registration, ordered, isolated, weakly held)."""
    source = Path(_fork.__file__).parent
    callers = sorted(
        str(path.relative_to(source))
        for path in source.rglob("*.py")
        if path.name != "_fork.py" and "register_at_fork(" in path.read_text(encoding="utf-8")
    )
    assert callers == [], callers


def slow_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float) -> tuple[str, Path]:
    """A module whose import touches a marker file, then takes `seconds`: a thread can be caught inside it."""
    name = f"veil_slow_import_{os.getpid()}_{len(list(tmp_path.iterdir()))}"
    marker = tmp_path / f"{name}.importing"
    code = f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep({seconds})\nVALUE = 'built'\n"
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)
    return name, marker


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, "the thread never started its import"
        time.sleep(0.01)


@pytest.mark.parametrize("where", ["build", "first call"])
def test_a_fork_waits_for_an_exporters_first_use_so_the_child_can_import_what_it_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # The log exporter of a gunicorn master is built on its first export, on the batch processor's thread, and
    # imports some 200 modules; its first request imports `netrc` (requests). A worker forked half-way through
    # inherited an import lock held by a thread it does not have: its own first export blocked forever and it
    # never exported a log record.
    from veil.export import PerProcess

    name, marker = slow_module(tmp_path, monkeypatch, seconds=1.0)

    def load() -> str:
        return str(importlib.import_module(name).VALUE)

    exporter = PerProcess(load if where == "build" else lambda: "exporter")

    def export(instance: str) -> str:
        return instance if where == "build" else load()

    builder = threading.Thread(target=exporter.use, args=(export,))
    builder.start()
    try:
        wait_for(marker)  # the thread is inside the import now
        assert in_child(lambda: exporter.use(export), timeout=5.0) == "built"
    finally:
        builder.join()
    assert exporter.use(export) == "built"


def test_a_fork_waits_only_so_long_and_the_child_can_hold_off_forks_itself(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(_fork, "FORK_WAIT_SECONDS", 0.2)
    entered, leave = threading.Event(), threading.Event()

    def stuck() -> None:
        with _fork.holding_off_fork():
            entered.set()
            leave.wait(10)

    holder = threading.Thread(target=stuck)
    holder.start()
    try:
        entered.wait(5)

        def in_the_child() -> str:
            with _fork.holding_off_fork():  # the parent thread's hold does not follow into the child
                return "free"

        started = time.monotonic()
        with caplog.at_level(logging.WARNING, logger="veil"):
            assert in_child(in_the_child, timeout=5.0) == "free"
        assert time.monotonic() - started < 3.0
        assert any("went ahead" in record.getMessage() for record in caplog.records)
    finally:
        leave.set()
        holder.join()
    with _fork.holding_off_fork():  # the parent's hold was released after the fork
        pass


def test_a_security_sinks_first_delivery_holds_off_forks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A sink's first delivery imports what its transport loads lazily (the webhook's time.strptime imports
    # _strptime): the same hazard, on the sink's own thread.
    from veil.security.sinks.base import Worker

    name, marker = slow_module(tmp_path, monkeypatch, seconds=1.0)

    class Importing(Worker):
        kind = "test"

        def process(self, batch: object) -> bool:
            return importlib.import_module(name).VALUE == "built"

    worker = Importing("test", 16)
    worker.submit("first")
    wait_for(marker)  # its thread is inside the import now

    def deliver_in_the_child() -> list[bool]:
        worker.submit("in the child")
        return [worker.flush(3.0), worker.ledger.exported == 1]

    assert in_child(deliver_in_the_child, timeout=6.0) == [True, True]
    assert worker.flush(5.0)
    worker.close(1.0)
