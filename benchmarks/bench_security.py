"""Cost of veil's runtime detection (the audit-hook sensor): VEIL_SECURITY=detect against off.

An audit hook cannot be removed, so the two sides run in separate child processes, started alternately in
every round (interleaved rounds); each child times every case itself and the parent reports the median over
the rounds and the difference. Times are the child's own CPU time (`time.thread_time_ns`): on a machine shared
with other jobs, wall time also counts their time slices. Both sides run the same `veil.configure()` (spans
and metrics recorded, no exporter: `traces_exporter=none`, `metrics_exporter=none`), only VEIL_SECURITY differs.

Cases: one audit event no rule watches (`sys.audit`), open()+close() of a file that matches no rule (outside
and inside a request), open() of a path never opened before inside a request (the sensor's remembered answers
do not help), and a hello-world request through veil's Flask (WSGI, called directly) and FastAPI
(ASGI, called directly) instrumentation.

    python benchmarks/bench_security.py [--rounds 9] [--count 20000]
    python benchmarks/bench_security.py --instructions [--count 400]   # needs valgrind

`--instructions` counts the hello-world request cases in instructions (callgrind, counting switched on only
around the requests): no noise from other jobs, so it shows differences too small for the timed medians on a
shared machine. Instructions are not time (a cache miss costs many), so the targets stay in microseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

CASES = (
    ("audit event, unwatched", "unwatched", 0.3),
    ("open()+close(), no rule matches, outside a request", "open", 1.5),
    ("open()+close(), no rule matches, inside a request", "open_in_request", 1.5),
    ("open() of a new path each time, inside a request", "open_new_in_request", 1.5),
    ("Flask hello-world request", "flask", 5.0),
    ("FastAPI hello-world request", "fastapi", 5.0),
)  # (title, key, target in microseconds)


def _best_of(run: Callable[[int], None], count: int, repeats: int = 5) -> float:
    """Microseconds per operation: the best of a few timed batches (the child's own noise floor)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.thread_time_ns()
        run(count)
        best = min(best, (time.thread_time_ns() - start) / count / 1000)
    return best


def _environ(path: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "bench",
        "wsgi.url_scheme": "http",
        "wsgi.input": None,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _configure(mode: str) -> None:
    import veil

    veil.configure(
        service_name="bench",
        traces_exporter="none",
        metrics_exporter="none",
        logs_exporter="none",
        security=mode,
        startup_report=False,
    )


def _flask_runner(in_handler: Callable[[], object]) -> Callable[[int], None]:
    """n hello-world requests through veil's Flask instrumentation (WSGI, called directly)."""
    from flask import Flask

    app = Flask("bench")

    @app.route("/hello/<name>")
    def hello(name: str) -> str:
        in_handler()
        return f"hello {name}"

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., None]:
        return lambda data: None

    environ = _environ("/hello/world")

    def flask_requests(n: int) -> None:
        call = app.wsgi_app
        for _ in range(n):
            body = call(dict(environ), start_response)
            for _chunk in body:
                pass
            body.close()  # type: ignore[attr-defined]

    return flask_requests


def _fastapi_runner() -> tuple[Callable[[int], None], asyncio.AbstractEventLoop]:
    """n hello-world requests through veil's FastAPI instrumentation (ASGI, called directly), and their loop."""
    from fastapi import FastAPI

    api = FastAPI()

    @api.get("/hello/{name}")
    async def api_hello(name: str) -> dict[str, str]:
        return {"hello": name}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/hello/world",
        "raw_path": b"/hello/world",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    loop = asyncio.new_event_loop()

    def api_requests(n: int) -> None:
        async def many() -> None:
            for _ in range(n):
                await api(dict(scope), receive, send)

        loop.run_until_complete(many())

    return api_requests, loop


def child(mode: str, count: int) -> dict[str, float]:
    _configure(mode)
    results: dict[str, float] = {}
    audit = sys.audit

    def unwatched(n: int) -> None:
        for _ in range(n):
            audit("veil.bench.unwatched", 1)

    results["unwatched"] = _best_of(unwatched, count)

    handle, path = tempfile.mkstemp()
    os.close(handle)

    def opens(n: int) -> None:
        for _ in range(n):
            open(path).close()

    results["open"] = _best_of(opens, count // 4)

    opened: list[Callable[[int], None]] = []
    flask_requests = _flask_runner(lambda: opened[0](count // 4) if opened else None)

    results["flask"] = _best_of(flask_requests, count // 10)

    # open() inside a request: the request's scope is active while the handler opens the file; once the same
    # file each time (the sensor remembers its answer), once a path never opened before (a missing file: the
    # audit event comes before the system call)
    timings: dict[str, list[float]] = {"open_in_request": [], "open_new_in_request": []}
    batches = iter(range(1_000_000))
    missing = os.path.join(os.path.dirname(path), "veil-bench-missing-")

    def new_opens(n: int) -> None:
        prefix = f"{missing}{next(batches)}-"
        for number in range(n):
            try:  # noqa: SIM105 - contextlib.suppress would add its own cost to the loop timed
                open(prefix + str(number)).close()
            except FileNotFoundError:
                pass

    def timed_opens(n: int) -> None:
        for key, run in (("open_in_request", opens), ("open_new_in_request", new_opens)):
            start = time.thread_time_ns()
            run(n)
            timings[key].append((time.thread_time_ns() - start) / n / 1000)

    opened.append(timed_opens)
    for _ in range(5):
        flask_requests(1)
    opened.clear()
    results.update({key: min(values) for key, values in timings.items()})

    api_requests, loop = _fastapi_runner()
    results["fastapi"] = _best_of(api_requests, count // 10)
    loop.close()
    os.unlink(path)
    return results


REQUEST_CASES = ("flask", "fastapi")


def instruction_child(mode: str, case: str, count: int, markers: str) -> None:
    """Under callgrind with instrumentation off: warm up, then let the parent switch counting on around
    `count` requests (marker files `ready`, `go`, `done` in `markers`), then wait to be stopped."""
    _configure(mode)
    run = _flask_runner(lambda: None) if case == "flask" else _fastapi_runner()[0]
    run(300)
    ready, go, done = (os.path.join(markers, name) for name in ("ready", "go", "done"))
    open(ready, "w").close()
    while not os.path.exists(go):
        time.sleep(0.01)
    run(count)
    open(done, "w").close()
    while True:
        time.sleep(1)


def _wait_for(path: str, process: subprocess.Popen[bytes], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the callgrind child stopped before {os.path.basename(path)}")
        time.sleep(0.1)


def instructions_per_request(mode: str, case: str, count: int) -> float:
    """Instructions per request counted by callgrind around `count` requests only (start-up not counted):
    other jobs on the machine do not move it, but one process differs from the next by a few thousand
    instructions per request (memory layout), so it settles differences above that, not below."""
    with tempfile.TemporaryDirectory() as markers:
        out = os.path.join(markers, "callgrind.out")
        env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
        env["PYTHONHASHSEED"] = "0"
        argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}", sys.executable]
        argv += [__file__, "--instruction-child", mode, case, str(count), markers]
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_for(os.path.join(markers, "ready"), process)
            control = ["callgrind_control"]
            subprocess.run([*control, "-i", "on", str(process.pid)], check=True, capture_output=True)
            open(os.path.join(markers, "go"), "w").close()
            _wait_for(os.path.join(markers, "done"), process)
            subprocess.run([*control, "-i", "off", str(process.pid)], check=True, capture_output=True)
            subprocess.run([*control, "-d", str(process.pid)], check=True, capture_output=True)
        finally:
            process.kill()
            process.wait()
        total = 0
        for name in os.listdir(markers):
            if name.startswith("callgrind.out"):
                with open(os.path.join(markers, name)) as dump:
                    lines = [line.split() for line in dump if line.startswith(("summary:", "totals:"))]
                total += max((int(fields[1]) for fields in lines), default=0)  # a dump has either or both
        return total / count


def instructions(count: int) -> None:
    """--instructions: the hello-world request cases counted in instructions, off against detect."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind (callgrind and callgrind_control)")
    print(f"$ python benchmarks/bench_security.py --instructions --count {count}")
    print(f"instructions per request counted by callgrind over {count} requests; Python {sys.version.split()[0]}")
    print(f"{'case':30} {'off':>10} {'detect':>10} {'+instructions':>14} {'+%':>6}")
    for case in REQUEST_CASES:
        off, detect = (instructions_per_request(mode, case, count) for mode in ("off", "detect"))
        print(f"{case + ' hello-world request':30} {off:10.0f} {detect:10.0f} {detect - off:+14.0f} "
              f"{(detect - off) / off * 100:+6.2f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--child", choices=("off", "detect"), help=argparse.SUPPRESS)
    parser.add_argument("--instruction-child", nargs=4, help=argparse.SUPPRESS)
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per request with callgrind instead of timing"
    )
    arguments = parser.parse_args()
    if arguments.instruction_child:
        mode, case, count, markers = arguments.instruction_child
        instruction_child(mode, case, int(count), markers)
        return
    if arguments.instructions:
        instructions(arguments.count if arguments.count != parser.get_default("count") else 400)
        return
    if arguments.child:
        print(json.dumps(child(arguments.child, arguments.count)))
        return
    start_load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    samples: dict[str, dict[str, list[float]]] = {"off": {}, "detect": {}}
    for round_number in range(arguments.rounds):
        order = ("off", "detect") if round_number % 2 == 0 else ("detect", "off")
        for mode in order:
            env = {key: value for key, value in os.environ.items() if not key.startswith(("OTEL_", "VEIL_"))}
            output = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--count", str(arguments.count)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            ).stdout
            for key, value in json.loads(output.strip().splitlines()[-1]).items():
                samples[mode].setdefault(key, []).append(value)
    python = sys.version.split()[0]
    print(f"$ python benchmarks/bench_security.py --rounds {arguments.rounds} --count {arguments.count}")
    print(f"load average at the start: {start_load}")
    print(f"bench_security: {arguments.rounds} interleaved rounds, {arguments.count} operations; Python {python}")
    print("+µs: difference of the medians; spread: interquartile range of the per-round differences (noise)")
    print(f"{'case':55} {'off µs':>9} {'detect µs':>10} {'+µs':>7} {'target':>7}      {'spread':>15}")
    for title, key, target in CASES:
        off = statistics.median(samples["off"][key])
        detect = statistics.median(samples["detect"][key])
        delta = detect - off
        verdict = "ok" if delta <= target else "OVER"
        rounds = [on - base for base, on in zip(samples["off"][key], samples["detect"][key], strict=True)]
        low, _, high = statistics.quantiles(rounds, n=4) if len(rounds) > 1 else (delta, delta, delta)
        print(
            f"{title:55} {off:9.3f} {detect:10.3f} {delta:+7.3f} {'<= ' + str(target):>7} {verdict:4}"
            f" {low:+7.2f}..{high:+.2f}"
        )


if __name__ == "__main__":
    main()
