"""The tamper-evident audit file: an append-only JSON-lines hash chain with signed checkpoints, and its verifier.

Every line is one record in canonical JSON (sorted keys, no spaces, UTF-8). Each record carries `seq` (0, 1,
2, ...), `hash` (SHA-256 of the record's canonical JSON without `hash`) and `prev` (the `hash` of the record
before it; 64 zeros for the first). Every `VEIL_AUDIT_CHECKPOINT_INTERVAL` records, and when the writer stops
cleanly, a `checkpoint` record is appended whose `hmac` (HMAC-SHA256 with `VEIL_AUDIT_KEY` over the same
canonical JSON) signs the chain up to it: whoever rewrites records and recomputes their hashes cannot forge
the checkpoints after them without the key. A writer that finds a torn last line (a crash mid-write) appends
a `resume` record after it instead of rewriting anything.

`verify(path, key)` (and `veil audit verify FILE`) walks the chain and names the first record that was edited,
removed or reordered; a torn last line is reported as a crash, not as tampering.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from veil.security.sinks.base import Sink
from veil.security.sinks.ecs import Document

GENESIS = "0" * 64
_TAIL_BYTES = 1 << 20


def canonical(record: dict[str, Any]) -> bytes:
    """The canonical JSON of `record`: what is hashed, signed and written."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _digest(record: dict[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key not in ("hash", "hmac")}
    return hashlib.sha256(canonical(body)).hexdigest()


def _signature(record: dict[str, Any], key: bytes) -> str:
    body = {key_: value for key_, value in record.items() if key_ != "hmac"}
    return hmac.new(key, canonical(body), hashlib.sha256).hexdigest()


class Chain:
    """The writer's side of the chain: numbers, links and (with a key) signs records."""

    def __init__(self, key: bytes | None, checkpoint_interval: int, seq: int = 0, head: str = GENESIS) -> None:
        self.key = key
        self.interval = checkpoint_interval
        self.seq = seq
        self.head = head
        self.since_checkpoint = 0

    def record(self, kind: str, body: dict[str, Any]) -> bytes:
        record: dict[str, Any] = {**body, "type": kind, "seq": self.seq, "prev": self.head}
        record["hash"] = _digest(record)
        if kind in ("checkpoint",) and self.key is not None:
            record["hmac"] = _signature(record, self.key)
        self.seq += 1
        self.head = record["hash"]
        return canonical(record) + b"\n"

    def event(self, document: Document) -> bytes:
        line = self.record("audit", {"event": document})
        self.since_checkpoint += 1
        if self.since_checkpoint >= self.interval:
            line += self.checkpoint(final=False)
        return line

    def checkpoint(self, *, final: bool) -> bytes:
        self.since_checkpoint = 0
        return self.record("checkpoint", {"final": final, "signed": self.key is not None})


def _tail(path: str) -> tuple[int, str, bool]:
    """(next seq, head hash, torn) of an existing file; (0, GENESIS, False) for a new or empty one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(size - _TAIL_BYTES, 0))
            data = handle.read()
    except FileNotFoundError:
        return 0, GENESIS, False
    torn = bool(data) and not data.endswith(b"\n")
    for line in reversed(data.split(b"\n")[: -1 if data.endswith(b"\n") else None]):
        try:
            record = json.loads(line)
            return int(record["seq"]) + 1, str(record["hash"]), torn
        except (ValueError, KeyError, TypeError):
            torn = True
            continue
    return 0, GENESIS, torn


class TrailSink(Sink):
    """Appends audit events to the chained file (one per process: `{pid}` in the path is the process id)."""

    kind = "audit_file"

    def __init__(
        self,
        path: str,
        key: bytes | None,
        checkpoint_interval: int,
        capacity: int,
        redact: Callable[[str, Any], Any],
    ) -> None:
        super().__init__(os.path.basename(path), capacity, redact)
        self.template = path
        self._key = key
        self._interval = checkpoint_interval
        self._fd: int | None = None
        self._chain: Chain | None = None

    def _open(self) -> tuple[int, Chain]:
        if self._fd is None or self._chain is None or self._pid_opened != os.getpid():
            path = self.template.replace("{pid}", str(os.getpid()))
            seq, head, torn = _tail(path)
            self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._pid_opened = os.getpid()
            self._chain = Chain(self._key, self._interval, seq, head)
            if torn:
                os.write(self._fd, b"\n" + self._chain.record("resume", {"after_crash": True}))
        return self._fd, self._chain

    _pid_opened = -1

    def send(self, documents: Sequence[Document]) -> None:
        fd, chain = self._open()
        os.write(fd, b"".join(chain.event(document) for document in documents))

    def close_transport(self) -> None:
        if self._fd is not None and self._chain is not None and self._pid_opened == os.getpid():
            os.write(self._fd, self._chain.checkpoint(final=True))
            os.fsync(self._fd)
            os.close(self._fd)
        self._fd = None


# ------------------------------------------------------------------------------------------- verifying


@dataclass
class Verdict:
    """What `verify` found: `ok` unless a record was edited, removed or reordered (a torn tail is ok)."""

    ok: bool = True
    records: int = 0  # complete records read
    last_seq: int = -1
    problem: str = ""  # the first tampering, naming the record
    line: int = 0  # its line number (1-based), 0 when none
    seq: int | None = None  # its sequence number when known
    torn: bool = False  # the last line is incomplete (a crash mid-write)
    closed: bool = False  # the file ends with a final checkpoint (the writer stopped cleanly)
    checkpoints: int = 0
    signatures_checked: bool = False
    notes: list[str] = field(default_factory=list)

    def fail(self, line: int, seq: int | None, problem: str) -> Verdict:
        self.ok, self.line, self.seq, self.problem = False, line, seq, problem
        return self


def verify(path: str, key: bytes | None = None) -> Verdict:
    """Walk the chain in `path`; check the signatures of checkpoints when `key` is given."""
    with open(path, "rb") as handle:
        data = handle.read()
    lines = data.split(b"\n")
    ends_with_newline = data.endswith(b"\n")
    if ends_with_newline:
        lines.pop()
    parsed: list[tuple[int, dict[str, Any] | None]] = []
    for number, raw in enumerate(lines, start=1):
        try:
            record = json.loads(raw)
            parsed.append((number, record if isinstance(record, dict) else None))
        except ValueError:
            parsed.append((number, None))
    verdict = Verdict(signatures_checked=key is not None)
    positions = {record.get("seq"): number for number, record in parsed if record is not None}
    expected, head = 0, GENESIS
    for index, (number, record) in enumerate(parsed):
        last = index == len(parsed) - 1
        if record is None or not isinstance(record.get("seq"), int):
            following = parsed[index + 1][1] if not last else None
            if last and not ends_with_newline:
                verdict.torn = True
                verdict.notes.append(
                    f"line {number} is incomplete: the writer stopped mid-write (a crash), not tampering"
                )
                break
            if following is not None and following.get("type") == "resume":
                verdict.notes.append(f"line {number} was torn by a crash; writing resumed after it")
                continue
            return verdict.fail(number, expected, f"line {number} is not a valid record (edited or corrupted)")
        seq = record["seq"]
        if seq != expected:
            if seq > expected and expected in positions and positions[expected] > number:
                return verdict.fail(
                    number,
                    expected,
                    f"record {expected} was moved: found at line {positions[expected]}, expected at line {number}",
                )
            if seq > expected:
                missing = f"record {expected}" if seq == expected + 1 else f"records {expected} to {seq - 1}"
                return verdict.fail(number, expected, f"{missing} removed before line {number}")
            return verdict.fail(
                number, seq, f"record {seq} at line {number} is out of order (expected record {expected})"
            )
        if record.get("hash") != _digest(record):
            return verdict.fail(
                number, seq, f"record {seq} (line {number}) was edited: its content does not match its hash"
            )
        if record.get("prev") != head:
            if seq == 0:
                return verdict.fail(
                    number, seq, f"record 0 (line {number}) does not start a chain (records before it removed?)"
                )
            return verdict.fail(
                number - 1,
                seq - 1,
                f"record {seq - 1} (line {number - 1}) was edited: record {seq} no longer links to it",
            )
        if record.get("type") == "checkpoint":
            verdict.checkpoints += 1
            if key is not None and not hmac.compare_digest(str(record.get("hmac", "")), _signature(record, key)):
                return verdict.fail(
                    number,
                    seq,
                    f"checkpoint {seq} (line {number}) has a bad signature: it, or records before it, were rewritten",
                )
        head, expected = record["hash"], seq + 1
        verdict.records += 1
        verdict.last_seq = seq
        verdict.closed = record.get("type") == "checkpoint" and bool(record.get("final"))
    if verdict.ok and not verdict.closed and verdict.records:
        verdict.notes.append(
            f"no closing checkpoint after record {verdict.last_seq}: the writer did not stop cleanly, "
            "or records after it were cut off"
        )
    if key is None and verdict.checkpoints:
        verdict.notes.append("checkpoint signatures not checked (no key given)")
    return verdict


def main(arguments: Sequence[str]) -> int:
    """`veil audit verify FILE [--key-env VARIABLE]`: 0 intact, 1 tampered, 2 unreadable."""
    import argparse

    parser = argparse.ArgumentParser(prog="veil audit", description="Work with veil's tamper-evident audit file.")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("verify", help="check the hash chain and the signed checkpoints")
    check.add_argument("file")
    check.add_argument(
        "--key-env", default="VEIL_AUDIT_KEY", help="variable holding the checkpoint key (default VEIL_AUDIT_KEY)"
    )
    options = parser.parse_args(list(arguments))
    secret = os.environ.get(options.key_env)
    try:
        verdict = verify(options.file, secret.encode("utf-8") if secret else None)
    except OSError as error:
        print(f"veil audit verify: cannot read {options.file}: {error.strerror}")
        return 2
    for note in verdict.notes:
        print(f"note: {note}")
    if not verdict.ok:
        print(f"TAMPERED: {verdict.problem}")
        return 1
    signed = "checked" if verdict.signatures_checked else "not checked"
    summary = f"{verdict.records} records, last {verdict.last_seq}, {verdict.checkpoints} checkpoints"
    print(f"OK: {summary} (signatures {signed})")
    return 0
