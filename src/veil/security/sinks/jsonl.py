"""ECS JSON lines to standard output or a file: one object per line, for Filebeat, Wazuh, Vector or `tail -f`.

The file is opened with O_APPEND and written a whole batch of complete lines at a time. It rotates safely:
past `max_bytes` the sink renames it to `<file>.1` (shifting older ones up to `.5`) and starts a new one, and when
something else rotated it (logrotate's rename, or another process of the service), the sink notices that the
path no longer names its open file and reopens it: lines are never cut, and never written into a removed file.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from veil.security.sinks.base import DeliveryError, Sink
from veil.security.sinks.ecs import Document

BACKUPS = 5


def encode(document: Document) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)


class JSONLinesSink(Sink):
    """`jsonl` (standard output) or `jsonl:<path>`."""

    kind = "jsonl"

    def __init__(self, path: str | None, max_bytes: int, capacity: int, redact: Callable[[str, Any], Any]) -> None:
        super().__init__(path or "stdout", capacity, redact)
        self.path = path
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None

    def send(self, documents: Sequence[Document]) -> None:
        data = "".join(encode(document) + "\n" for document in documents)
        if self.path is None:
            try:
                sys.stdout.write(data)
                sys.stdout.flush()
            except (OSError, ValueError) as error:
                raise DeliveryError(type(error).__name__) from None
            return
        try:
            fd = self._file()
            os.write(fd, data.encode("utf-8"))
            if os.fstat(fd).st_size >= self.max_bytes:
                self._rotate()
        except OSError as error:
            self.close_transport()
            raise DeliveryError(f"{type(error).__name__} ({error.strerror})") from None

    def _file(self) -> int:
        assert self.path is not None
        if self._fd is not None:
            try:
                status = os.stat(self.path)
                if (status.st_dev, status.st_ino) == self._inode:
                    return self._fd
            except FileNotFoundError:
                pass
            self.close_transport()  # rotated or removed by someone else: write to the new file
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        status = os.fstat(self._fd)
        self._inode = (status.st_dev, status.st_ino)
        return self._fd

    def _rotate(self) -> None:
        assert self.path is not None
        for index in range(BACKUPS - 1, 0, -1):
            older = f"{self.path}.{index}"
            if os.path.exists(older):
                os.replace(older, f"{self.path}.{index + 1}")
        os.replace(self.path, f"{self.path}.1")
        self.close_transport()

    def close_transport(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None
                self._inode = None
