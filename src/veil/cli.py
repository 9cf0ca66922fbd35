"""The `veil` command: `veil run` (zero-code instrumentation), `veil scan` (leak scanner), `veil config`,
`veil rules` (runtime security rule files), `veil audit verify` (the tamper-evident audit file).

`veil run -- python app.py` does what `opentelemetry-instrument` does with veil as the distro, validates the
configuration first (a mistake stops here with one clear error instead of a silently untraced app), and has
the program print a startup report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from veil._version import __version__
from veil.errors import ConfigurationError
from veil.settings import Settings

_RUN_FLAGS = {
    "service_name": "OTEL_SERVICE_NAME",
    "traces_exporter": "OTEL_TRACES_EXPORTER",
    "metrics_exporter": "OTEL_METRICS_EXPORTER",
    "logs_exporter": "OTEL_LOGS_EXPORTER",
    "endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "protocol": "OTEL_EXPORTER_OTLP_PROTOCOL",
}


def _launcher_environment(base: dict[str, str]) -> dict[str, str]:
    """The environment that makes the child interpreter load the OpenTelemetry launcher with veil."""
    from opentelemetry.instrumentation import auto_instrumentation

    env = dict(base)
    env["OTEL_PYTHON_DISTRO"] = "veil"
    env["OTEL_PYTHON_CONFIGURATOR"] = "veil"
    env.setdefault("VEIL_STARTUP_REPORT", "true")
    bootstrap_dir = os.path.dirname(os.path.abspath(auto_instrumentation.__file__))
    paths = [path for path in env.get("PYTHONPATH", "").split(os.pathsep) if path and path != bootstrap_dir]
    if os.getcwd() not in paths:
        paths.insert(0, os.getcwd())
    paths.insert(0, bootstrap_dir)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def _run(arguments: argparse.Namespace) -> int:
    command: list[str] = list(arguments.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        print("veil run: give the program to run, e.g. veil run -- python app.py", file=sys.stderr)
        return 2
    env = dict(os.environ)
    for flag, variable in _RUN_FLAGS.items():
        value = getattr(arguments, flag)
        if value is not None:
            env[variable] = value
    try:
        settings = Settings.load(environ=env)
        if settings.security != "off" and not settings.sdk_disabled:
            from veil.security.sensor import prepare

            prepare(settings)  # a bad rule file stops here too
    except ConfigurationError as error:
        print(f"veil run: {error}", file=sys.stderr)
        return 2
    executable = shutil.which(command[0])
    if executable is None:
        print(f"veil run: command not found: {command[0]}", file=sys.stderr)
        return 127
    env = _launcher_environment(env)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(executable, command, env)
    return 0  # pragma: no cover - execve does not return


def _config(arguments: argparse.Namespace) -> int:
    if arguments.markdown:
        from veil.config_reference import render_markdown

        sys.stdout.write(render_markdown())
        return 0
    try:
        settings = Settings.load()
    except ConfigurationError as error:
        print(f"veil config: {error}", file=sys.stderr)
        return 2
    from veil.instrumentation import plan
    from veil.report import render
    from veil.telemetry import build

    telemetry = build(settings)
    telemetry.instrumented = plan(settings.disabled_instrumentations)
    try:
        print(render(telemetry))
    finally:
        telemetry.shutdown(timeout_millis=1000)
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="veil", description="Secure-by-default tracing for Python services.")
    parser.add_argument("--version", action="version", version=f"veil {__version__}")
    commands = parser.add_subparsers(dest="subcommand", required=True)

    run = commands.add_parser(
        "run",
        help="run a program with veil's instrumentation (like opentelemetry-instrument)",
        description="Run a program with veil: veil run [options] -- python app.py",
    )
    run.add_argument("--service-name", dest="service_name", help="sets OTEL_SERVICE_NAME")
    run.add_argument("--traces-exporter", dest="traces_exporter", help="sets OTEL_TRACES_EXPORTER")
    run.add_argument("--metrics-exporter", dest="metrics_exporter", help="sets OTEL_METRICS_EXPORTER")
    run.add_argument("--logs-exporter", dest="logs_exporter", help="sets OTEL_LOGS_EXPORTER")
    run.add_argument("--endpoint", help="sets OTEL_EXPORTER_OTLP_ENDPOINT")
    run.add_argument("--protocol", help="sets OTEL_EXPORTER_OTLP_PROTOCOL (grpc or http/protobuf)")
    run.add_argument("command", nargs=argparse.REMAINDER, help="the program and its arguments")
    run.set_defaults(handler=_run)

    config = commands.add_parser("config", help="validate the configuration in the environment and show it")
    config.add_argument("--markdown", action="store_true", help="print the configuration reference instead")
    config.set_defaults(handler=_config)

    scan = commands.add_parser("scan", help="scan logs or telemetry dumps for leaked secrets", add_help=False)
    scan.add_argument("arguments", nargs=argparse.REMAINDER)
    scan.set_defaults(handler=_scan)

    audit = commands.add_parser("audit", help="verify a tamper-evident audit file (veil audit verify FILE)")
    audit.add_argument("arguments", nargs=argparse.REMAINDER)

    from veil.security.cli import add_rules_command

    add_rules_command(commands)

    from veil.demo import add_arguments as add_demo_arguments

    demo = commands.add_parser("demo", help="run the example shop locally and print its traces")
    add_demo_arguments(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _scan(arguments: argparse.Namespace) -> int:
    from veil.redaction.scan import main as scan_main

    return scan_main(list(arguments.arguments))


def _demo(arguments: argparse.Namespace) -> int:
    from veil.demo import run_parsed

    return run_parsed(arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `veil` console script."""
    words = sys.argv[1:] if argv is None else list(argv)
    if words and words[0] == "scan":
        # Everything after `scan` is the scanner's own (argparse's REMAINDER drops leading options).
        from veil.redaction.scan import main as scan_main

        return scan_main(words[1:])
    if words and words[0] == "audit":
        from veil.security.trail import main as audit_main

        return audit_main(words[1:])
    arguments = _parser().parse_args(words)
    result: int = arguments.handler(arguments)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
