"""`veil scan`: findings with file:line and category, never the secret; exit status."""

from __future__ import annotations

import io
import json
import random
from pathlib import Path

import pytest

from tests.redaction.secrets_factory import make
from veil.redaction.scan import main, scan_paths


def test_scan_reports_file_line_and_category_without_the_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token = make("github_token", random.Random(3))
    log = tmp_path / "app.log"
    log.write_text(
        "INFO started\n"
        f"ERROR push failed with {token}\n"
        '{"level": "info", "password": "hunter2", "route": "/login"}\n'
        "INFO user_id=42 took 12ms\n"
    )
    assert main([str(log)]) == 1
    out = capsys.readouterr()
    assert f"{log}:2: github_token" in out.out
    assert f"{log}:3: password (key password)" in out.out
    assert token not in out.out + out.err and "hunter2" not in out.out + out.err
    assert "2 finding(s)" in out.err


def test_scan_clean_file_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "clean.log"
    log.write_text("GET /users/42 200 3ms trace=4bf92f3577b34da6a3ce929d0e0e4736\n" * 3)
    assert main([str(log)]) == 0


def test_scan_walks_otlp_json_attributes(tmp_path: Path) -> None:
    dump = {
        "resourceSpans": [
            {
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "name": "op",
                                "attributes": [
                                    {"key": "api_key", "value": {"stringValue": "k-123"}},
                                    {"key": "http.route", "value": {"stringValue": "/x"}},
                                ],
                            }
                        ]
                    }
                ]
            }
        ]
    }
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(dump, indent=2))
    findings, errors = scan_paths([str(path)])
    assert not errors
    assert [(f.category, f.key) for f in findings] == [("api_key", "api_key")]
    assert findings[0].line > 0


def test_scan_reads_stdin_and_reports_unreadable_files(tmp_path: Path) -> None:
    findings, errors = scan_paths(["-", str(tmp_path / "missing.log")], stdin=io.StringIO("ssn 123-45-6789\n"))
    assert [(f.path, f.line, f.category) for f in findings] == [("<stdin>", 1, "us_ssn")]
    assert errors and "missing.log" in errors[0]
    assert main([str(tmp_path / "missing.log")]) == 2


def test_text_another_tool_already_masked_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "masked.log"
    log.write_text(
        "login password=[REDACTED] user=bob\n"
        "Authorization: Bearer [REDACTED]\n"
        "Authorization: Basic <redacted>\n"
        "token: xxxx secret=[FILTERED] api_key=********\n"
        "connecting to https://app:***@db.internal/shop\n"
        "GET /callback?code=***&state=af0ifjs 302\n"
        '{"password": "***", "card_number": "************4242", "card_last4": "4242"}\n'
        "Set-Cookie: session=[REDACTED]; Path=/; HttpOnly\n"
    )
    assert main([str(log)]) == 0, capsys.readouterr().out
