"""The tamper-evident audit file: 10,000 records written through veil.audit(), then edited, removed, reordered
and truncated; `veil audit verify` must name the right record every time. A writer killed with SIGKILL leaves
a file that verifies up to its last complete record, and a writer reopening a torn file resumes the chain."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import veil
from veil.security import trail
from veil.security.audit import audit

KEY = "audit-checkpoint-key-0123456789"
RECORDS = 10_000
INTERVAL = 1000


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trail") / "audit.jsonl"
    telemetry = veil.configure(
        force=True,
        auto_instrument=False,
        traces_exporter="none",
        audit_file=str(path),
        audit_key=KEY,
        audit_checkpoint_interval=INTERVAL,
        security_sink_queue_size=RECORDS + 10,
    )
    try:
        for index in range(RECORDS):
            audit("permission.change", actor=f"user-{index % 37}", target=f"doc-{index}", role="editor")
        assert telemetry.force_flush(30_000)
    finally:
        veil.telemetry.reset_for_tests()
    assert telemetry.health().logs.dropped == 0
    return path


def lines_of(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def line_of_seq(lines: list[str], seq: int) -> int:
    return next(index for index, line in enumerate(lines) if json.loads(line)["seq"] == seq)


def tampered(written: Path, tmp_path: Path, change: Callable[[list[str]], list[str]]) -> Path:
    copy = tmp_path / "audit.jsonl"
    copy.write_text("".join(change(lines_of(written))))
    return copy


def test_an_intact_file_verifies_with_signatures(written: Path) -> None:
    verdict = trail.verify(str(written), KEY.encode())
    assert verdict.ok and not verdict.torn and verdict.closed
    assert verdict.checkpoints == RECORDS // INTERVAL + 1  # the periodic ones and the closing one
    assert verdict.last_seq == RECORDS + RECORDS // INTERVAL  # 10,000 events + 11 checkpoints - 1
    first = json.loads(lines_of(written)[0])
    assert first["event"]["event"]["action"] == "permission.change"
    assert first["event"]["user"]["id"] == "user-0"


@pytest.mark.parametrize("seq", [0, 1, 2500, 5000, 9999, 10_009])
def test_an_edited_record_is_named(written: Path, tmp_path: Path, seq: int) -> None:
    def edit(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, seq)
        record = json.loads(lines[index])
        record.setdefault("event", {})["edited"] = True
        lines[index] = json.dumps(record) + "\n"
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, edit)), KEY.encode())
    assert not verdict.ok and verdict.seq == seq
    assert f"record {seq} " in verdict.problem and "edited" in verdict.problem


@pytest.mark.parametrize("seq", [1, 5000, 9999])
def test_an_edited_record_with_a_recomputed_hash_is_named(written: Path, tmp_path: Path, seq: int) -> None:
    def edit(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, seq)
        record = json.loads(lines[index])
        record["forged"] = True
        record["hash"] = trail._digest(record)
        lines[index] = trail.canonical(record).decode() + "\n"
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, edit)), KEY.encode())
    assert not verdict.ok and verdict.seq == seq and "edited" in verdict.problem


def test_a_rewritten_chain_is_caught_by_the_next_signed_checkpoint(written: Path, tmp_path: Path) -> None:
    def rewrite(lines: list[str]) -> list[str]:
        # The attacker edits record 4321 and recomputes every hash after it, but has no key.
        start = line_of_seq(lines, 4321)
        head = json.loads(lines[start])["prev"]
        for index in range(start, len(lines)):
            record = json.loads(lines[index])
            if index == start:
                record["event"]["user"]["id"] = "someone-else"
            record["prev"] = head
            record["hash"] = head = trail._digest(record)
            lines[index] = trail.canonical(record).decode() + "\n"
        return lines

    path = tampered(written, tmp_path, rewrite)
    verdict = trail.verify(str(path), KEY.encode())
    assert not verdict.ok and "bad signature" in verdict.problem
    assert verdict.seq == 5004  # the first checkpoint after record 4321 (checkpoint k has seq 1001 * k - 1)
    unsigned = trail.verify(str(path), None)  # without the key the rewrite is invisible, and the tool says so
    assert unsigned.ok and any("not checked" in note for note in unsigned.notes)


@pytest.mark.parametrize("seq", [0, 777, 5000, 10_009, 10_010])
def test_a_removed_record_is_named(written: Path, tmp_path: Path, seq: int) -> None:
    def remove(lines: list[str]) -> list[str]:
        del lines[line_of_seq(lines, seq)]
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, remove)), KEY.encode())
    if seq == RECORDS + RECORDS // INTERVAL:  # the last record: nothing follows it to notice the gap
        assert verdict.ok and not verdict.closed and any("no closing checkpoint" in note for note in verdict.notes)
        return
    assert not verdict.ok and verdict.seq == seq
    assert f"record {seq} removed" in verdict.problem


def test_removed_records_are_named_as_a_range(written: Path, tmp_path: Path) -> None:
    def remove(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, 3000)
        del lines[index : index + 5]
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, remove)), KEY.encode())
    assert not verdict.ok and verdict.seq == 3000 and "records 3000 to 3004 removed" in verdict.problem


@pytest.mark.parametrize("seq", [0, 5000, 10_009])
def test_reordered_records_are_named(written: Path, tmp_path: Path, seq: int) -> None:
    def swap(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, seq)
        lines[index], lines[index + 1] = lines[index + 1], lines[index]
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, swap)), KEY.encode())
    assert not verdict.ok and verdict.seq == seq and f"record {seq} was moved" in verdict.problem


def test_a_record_moved_far_back_is_named(written: Path, tmp_path: Path) -> None:
    def move(lines: list[str]) -> list[str]:
        record = lines.pop(line_of_seq(lines, 100))
        lines.insert(line_of_seq(lines, 9000), record)
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, move)), KEY.encode())
    assert not verdict.ok and verdict.seq == 100 and "record 100 was moved" in verdict.problem


@pytest.mark.parametrize("seq", [1, 6000, 10_010])
def test_a_torn_last_line_is_a_crash_not_tampering(written: Path, tmp_path: Path, seq: int) -> None:
    def truncate(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, seq)
        return [*lines[:index], lines[index][: len(lines[index]) // 2]]

    verdict = trail.verify(str(tampered(written, tmp_path, truncate)), KEY.encode())
    assert verdict.ok and verdict.torn and verdict.last_seq == seq - 1
    assert any("incomplete" in note and "not tampering" in note for note in verdict.notes)


def test_records_cut_at_a_line_boundary_leave_no_closing_checkpoint(written: Path, tmp_path: Path) -> None:
    path = tampered(written, tmp_path, lambda lines: lines[: line_of_seq(lines, 7000)])
    verdict = trail.verify(str(path), KEY.encode())
    assert verdict.ok and not verdict.closed and verdict.last_seq == 6999
    assert any("no closing checkpoint after record 6999" in note for note in verdict.notes)


def test_a_line_that_is_not_json_in_the_middle_is_tampering(written: Path, tmp_path: Path) -> None:
    def garble(lines: list[str]) -> list[str]:
        lines[line_of_seq(lines, 2000)] = "garbage\n"
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, garble)), KEY.encode())
    assert not verdict.ok and verdict.seq == 2000 and "not a valid record" in verdict.problem


def test_a_forged_checkpoint_is_named(written: Path, tmp_path: Path) -> None:
    def forge(lines: list[str]) -> list[str]:
        index = line_of_seq(lines, 10_010)
        record = json.loads(lines[index])
        record["final"] = False
        record["hash"] = trail._digest(record)
        lines[index] = trail.canonical(record).decode() + "\n"
        return lines

    verdict = trail.verify(str(tampered(written, tmp_path, forge)), KEY.encode())
    assert not verdict.ok and verdict.seq == 10_010 and "bad signature" in verdict.problem


def test_a_wrong_key_fails_the_first_checkpoint(written: Path) -> None:
    verdict = trail.verify(str(written), b"a-different-key-of-enough-bytes")
    assert not verdict.ok and "bad signature" in verdict.problem and verdict.seq == INTERVAL


def test_the_command_line_reports_and_exits(written: Path, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "veil.cli", "audit", "verify"]
    environment = {**os.environ, "VEIL_AUDIT_KEY": KEY}
    good = subprocess.run([*command, str(written)], capture_output=True, text=True, env=environment, check=False)
    assert good.returncode == 0 and good.stdout.startswith("OK: 10011 records"), good.stdout + good.stderr
    assert "signatures checked" in good.stdout
    copy = tmp_path / "bad.jsonl"
    lines = lines_of(written)
    del lines[line_of_seq(lines, 42)]
    copy.write_text("".join(lines))
    bad = subprocess.run([*command, str(copy)], capture_output=True, text=True, env=environment, check=False)
    assert bad.returncode == 1 and "TAMPERED: record 42 removed" in bad.stdout
    missing = subprocess.run([*command, str(tmp_path / "none")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2


_WRITER = """
import sys, veil
from veil.security.audit import audit
veil.configure(auto_instrument=False, traces_exporter="none", audit_file=sys.argv[1], audit_key=sys.argv[2],
               audit_checkpoint_interval=50)
index = 0
while True:
    audit("record.write", actor="writer", target=f"item-{index}", payload="x" * (index % 300))
    index += 1
"""


def test_a_writer_killed_with_sigkill_verifies_up_to_its_last_complete_record(tmp_path: Path) -> None:
    path = tmp_path / "killed.jsonl"
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), KEY])
    try:
        deadline = time.monotonic() + 60
        while (not path.exists() or path.stat().st_size < 400_000) and time.monotonic() < deadline:
            assert process.poll() is None, "the writer died on its own"
            time.sleep(0.02)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    data = path.read_bytes()
    assert len(data) >= 400_000
    complete = data[: data.rfind(b"\n") + 1].splitlines()
    verdict = trail.verify(str(path), KEY.encode())
    assert verdict.ok, verdict.problem
    assert verdict.last_seq == json.loads(complete[-1])["seq"]
    assert verdict.records == len(complete) and not verdict.closed

    # A new writer on the same file resumes the chain (after a resume record when the tail was torn).
    if not verdict.torn:  # make one torn tail for certain: a crash between the two halves of a line
        with open(path, "ab") as handle:
            handle.write(b'{"seq": 99999999, "type": "au')
    telemetry = veil.configure(
        force=True, auto_instrument=False, traces_exporter="none", audit_file=str(path), audit_key=KEY
    )
    try:
        audit("record.write", actor="second writer")
    finally:
        veil.telemetry.reset_for_tests()
    assert telemetry.health().logs.lost == 0
    resumed = trail.verify(str(path), KEY.encode())
    assert resumed.ok and resumed.closed, resumed.problem
    assert any("torn by a crash; writing resumed" in note for note in resumed.notes)
    assert resumed.last_seq == verdict.last_seq + 3  # resume record, the event, the closing checkpoint
    shutil.copy(path, tmp_path / "kept.jsonl")
