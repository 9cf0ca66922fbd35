"""The process's own log output is redacted: stdlib handlers (real streams, files, the last-resort handler),
structlog and loguru; templates, levels, logger names and exception types are kept."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import veil
from tests.redaction.secrets_factory import make

TOKEN = make("github_token", __import__("random").Random(9))
PASSWORD = "hunter2-Xq9"
NO_EXPORT = {"traces_exporter": "none", "metrics_exporter": "none", "logs_exporter": "none"}


class Keep(logging.Handler):
    """A handler keeping the records it is given, as error trackers and test tools do."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.records.append(record)


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger("app.output")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()


def test_stream_and_file_handlers_added_after_configure_write_redacted_lines(
    veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger, tmp_path: Path
) -> None:
    veil_logging(**NO_EXPORT)
    stream_path, file_path = tmp_path / "stream.log", tmp_path / "file.log"
    with open(stream_path, "w", encoding="utf-8") as stream:
        app_logger.addHandler(logging.StreamHandler(stream))
        app_logger.addHandler(logging.FileHandler(file_path, encoding="utf-8"))
        app_logger.warning("login for %s password=%s token %s", "bob", PASSWORD, TOKEN)
        app_logger.info("order %d paid by %s", 42, "bob@example.com")
        for handler in app_logger.handlers:
            handler.flush()
    for path in (stream_path, file_path):
        text = path.read_text(encoding="utf-8")
        assert PASSWORD not in text and TOKEN not in text and "bob@example.com" not in text
        assert "login for bob password=[REDACTED:" in text and "token [REDACTED:github_token]" in text
        assert "order 42 paid by [REDACTED:email]" in text


def test_template_level_logger_and_exception_type_are_kept(
    veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger
) -> None:
    veil_logging(**NO_EXPORT)
    keep = Keep()
    app_logger.addHandler(keep)
    app_logger.error("token %s rejected", TOKEN, extra={"api_key": "k-123456", "user_id": 7})
    try:
        raise ConnectionError(f"connect failed for postgres://app:{PASSWORD}@db/app")
    except ConnectionError:
        app_logger.exception("query failed for %s", "bob@example.com", stack_info=True)
    first, second = keep.records
    assert first.msg == "token %s rejected" and first.args == ("[REDACTED:github_token]",)
    assert first.levelname == "ERROR" and first.name == "app.output"
    assert first.api_key == "[REDACTED:api_key]" and first.user_id == 7  # type: ignore[attr-defined]
    assert second.msg == "query failed for %s" and second.getMessage() == "query failed for [REDACTED:email]"
    assert second.exc_info is not None and second.exc_info[0] is ConnectionError
    assert isinstance(second.exc_info[1], ConnectionError) and PASSWORD not in str(second.exc_info[1])
    assert second.exc_text is not None and PASSWORD not in second.exc_text and "Traceback" in second.exc_text
    assert "REDACTED:REDACTED@db/app" in second.exc_text


def test_a_secret_made_of_template_and_argument_replaces_the_argument(
    veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger
) -> None:
    veil_logging(**NO_EXPORT)
    keep = Keep()
    app_logger.addHandler(keep)
    app_logger.info("connecting with password=%s to %s", PASSWORD, "db.internal")
    app_logger.info("db_password=%d accepted", 4821)
    app_logger.info("%s=%s", "api_key", "k-9x8y7z6w")
    text, pin, pair = keep.records
    assert text.msg == "connecting with password=%s to %s" and PASSWORD not in text.getMessage()
    assert text.getMessage() == "connecting with password=[REDACTED:password] to db.internal"
    assert text.args is not None and text.args[1] == "db.internal"
    assert "4821" not in pin.getMessage()
    assert "k-9x8y7z6w" not in pair.getMessage()


def test_unchanged_records_are_passed_on_as_they_are(
    veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger
) -> None:
    veil_logging(**NO_EXPORT)
    keep = Keep()
    app_logger.addHandler(keep)
    record = app_logger.makeRecord("app.output", logging.INFO, __file__, 1, "order %s paid", ("42",), None)
    app_logger.handle(record)
    assert keep.records == [record]


def test_a_failing_argument_never_lets_the_record_through_raw(
    veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger
) -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no text")

    veil_logging(**NO_EXPORT)
    keep = Keep()
    keep.handleError = lambda record: None  # type: ignore[method-assign]
    app_logger.addHandler(keep)
    app_logger.warning("value %s password=%s", Broken(), PASSWORD)
    assert PASSWORD not in repr(keep.records[0].__dict__)


def test_opt_out_leaves_output_raw(veil_logging: Callable[..., veil.Telemetry], app_logger: logging.Logger) -> None:
    veil_logging(redaction_log_output=False, **NO_EXPORT)
    keep = Keep()
    app_logger.addHandler(keep)
    app_logger.warning("password=%s", PASSWORD)
    assert keep.records[0].getMessage() == f"password={PASSWORD}"


def _run(code: str, **environment: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", **environment}
    env.pop("VEIL_REQUIRE_PEERS", None)
    return subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, timeout=60
    )


LAST_RESORT = f"""
import logging, veil
veil.configure("last-resort")
logging.getLogger("app").warning("login password=%s token %s", {PASSWORD!r}, {TOKEN!r})
try:
    raise ValueError("bad password={PASSWORD}")
except ValueError:
    logging.getLogger("app").exception("failed")
"""


def test_the_last_resort_handler_writes_redacted_lines() -> None:
    result = _run(LAST_RESORT)
    assert result.returncode == 0, result.stderr
    assert PASSWORD not in result.stderr and TOKEN not in result.stderr
    assert "login password=[REDACTED:" in result.stderr and "ValueError: bad password=[REDACTED:" in result.stderr


def test_the_last_resort_handler_with_the_opt_out_is_raw() -> None:
    result = _run(LAST_RESORT, VEIL_REDACTION_LOG_OUTPUT="false")
    assert result.returncode == 0, result.stderr
    assert PASSWORD in result.stderr


def test_structlog_output_is_redacted(veil_logging: Callable[..., veil.Telemetry], tmp_path: Path) -> None:
    structlog = pytest.importorskip("structlog")
    path = tmp_path / "structlog.log"
    with open(path, "w", encoding="utf-8") as stream:
        structlog.configure(
            processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
            logger_factory=structlog.PrintLoggerFactory(stream),
        )
        try:
            veil_logging(**NO_EXPORT)
            log = structlog.get_logger()
            log.info(f"login with token {TOKEN}", password=PASSWORD, user="bob", count=3)
            try:
                raise ValueError(f"bad password={PASSWORD}")
            except ValueError:
                log.error("failed", exc_info=True)
        finally:
            structlog.reset_defaults()
    events = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert events[0] == {
        "event": "login with token [REDACTED:github_token]",
        "password": "[REDACTED:password]",
        "user": "bob",
        "count": 3,
        "level": "info",
    }
    assert events[1]["level"] == "error" and "Traceback" in events[1]["exception"]
    assert PASSWORD not in path.read_text(encoding="utf-8")


def test_loguru_output_is_redacted_also_with_a_patcher_set_later(
    veil_logging: Callable[..., veil.Telemetry], tmp_path: Path
) -> None:
    loguru = pytest.importorskip("loguru")
    logger = loguru.logger
    path = tmp_path / "loguru.log"
    veil_logging(**NO_EXPORT)
    sink = logger.add(path, format="{level} {message} {extra}\n{exception}", backtrace=True, diagnose=True)
    try:
        logger.info("login password={} token {}", PASSWORD, TOKEN)  # noqa: PLE1205 - loguru formats with {}
        logger.configure(patcher=lambda record: record["extra"].update(api_key="k-123456"))
        logger.bind(user="bob").warning("mail bob@example.com")

        def connect(password: str) -> None:
            raise ValueError(f"bad password={password}")

        try:
            connect(PASSWORD)
        except ValueError:
            logger.exception("failed")
    finally:
        logger.remove(sink)
        logger.configure(patcher=lambda record: None)
    text = path.read_text(encoding="utf-8")
    assert PASSWORD not in text and TOKEN not in text and "bob@example.com" not in text and "k-123456" not in text
    assert "INFO login password=[REDACTED:" in text and "WARNING mail [REDACTED:email]" in text
    assert "ValueError: bad password=[REDACTED:password]" in text and "Traceback" in text


def test_structlog_configured_with_a_tuple_is_redacted_too(
    veil_logging: Callable[..., veil.Telemetry], tmp_path: Path
) -> None:
    structlog = pytest.importorskip("structlog")
    path = tmp_path / "tuple.log"
    with open(path, "w", encoding="utf-8") as stream:
        veil_logging(**NO_EXPORT)
        structlog.configure(
            processors=(structlog.processors.JSONRenderer(),), logger_factory=structlog.PrintLoggerFactory(stream)
        )
        try:
            structlog.get_logger().info("hello", api_key="k-123456")
        finally:
            structlog.reset_defaults()
    assert json.loads(path.read_text(encoding="utf-8")) == {"event": "hello", "api_key": "[REDACTED:api_key]"}
