"""What the console exporters write and how: escaping, cutting and colouring values, one shared output lock.

Everything printed comes from the telemetry itself (redaction runs before any exporter): values are shown as
they are, except that control and bidirectional-override characters are escaped, so that a hostile value (a
URL path, a header) cannot move the cursor, rewrite earlier lines or recolour the terminal, and very long
values are cut. Colour (ANSI) is used when the stream is a terminal and `NO_COLOR` is unset, or on request
with `color=True`.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

from veil._guard import log_once
from veil.errors import ConfigurationError

_MAX_VALUE_CHARS = 160
_NS_PER_MS = 1_000_000

# One lock for every console exporter: a trace tree and a log line never interleave on a shared terminal.
_OUTPUT_LOCKS = [threading.Lock()]


def _build_escapes() -> dict[int, str]:
    escapes: dict[int, str] = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}
    for code in [*range(0x20), 0x7F, *range(0x80, 0xA0)]:
        escapes.setdefault(code, f"\\x{code:02x}")
    # Bidirectional overrides/isolates, zero-width and line-separator marks reorder or hide text on screen.
    marks = (0x061C, 0x200B, 0x200E, 0x200F, 0x2028, 0x2029, 0xFEFF)
    for code in [*marks, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]:
        escapes[code] = f"\\u{code:04x}"
    return escapes


_ESCAPES = _build_escapes()


def _text(value: str, limit: int = _MAX_VALUE_CHARS) -> str:
    """`value` made safe for a terminal line: control characters escaped, cut to `limit` characters."""
    if len(value) > limit:
        value = f"{value[:limit]}...(+{len(value) - limit} chars)"
    return value.translate(_ESCAPES)


def _value(value: object, limit: int = _MAX_VALUE_CHARS) -> str:
    if isinstance(value, str):
        shown = _text(value, limit)
        return f'"{shown}"' if not shown or any(c.isspace() for c in shown) else shown
    if isinstance(value, bytes):
        return _text(repr(value), limit)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_text(str(k), 60)}: {_value(v, limit)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_value(item, limit) for item in value) + "]"
    return _text(str(value), limit)


def _color_enabled(stream: TextIO, color: bool | None) -> bool:
    if color is not None:
        return color
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def _unicode_ok(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None)
    if not encoding:  # io.StringIO and friends hold text, not bytes
        return True
    try:
        "├─└│•≤".encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return False
    return True


class _Style:
    """ANSI styling, or none; one instance per exporter, decided at construction."""

    _CODES = {
        "bold": "1",
        "dim": "2",
        "red": "31",
        "error": "1;31",
        "green": "32",
        "yellow": "33",
        "blue": "34",
        "magenta": "35",
        "cyan": "36",
        "header": "1;36",
    }

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, style: str, text: str) -> str:
        if not self.enabled or not text:
            return text
        return f"\x1b[{self._CODES[style]}m{text}\x1b[0m"


def _resolve(stream: TextIO | None) -> TextIO:
    return stream if stream is not None else sys.stderr


def _write(stream: TextIO | None, text: str, key: str) -> bool:
    if not text:
        return True
    try:
        target = _resolve(stream)
        with _OUTPUT_LOCKS[0]:
            target.write(text)
            target.flush()
    except Exception:
        log_once(key, "veil: the console exporter could not write to its stream", exc_info=True)
        return False
    return True


def _clock(time_unix_nano: int | None) -> str:
    if not time_unix_nano:
        return "--:--:--.---"
    seconds, nanos = divmod(time_unix_nano, 1_000_000_000)
    return time.strftime("%H:%M:%S", time.localtime(seconds)) + f".{nanos // _NS_PER_MS:03d}"


def _ms(nanoseconds: int) -> str:
    return f"{nanoseconds / _NS_PER_MS:.2f} ms"


def _style_for(stream: TextIO | None, color: bool | None) -> _Style:
    """The exporters' `color` option checked and resolved against their stream."""
    if color is not None and not isinstance(color, bool):
        raise ConfigurationError("color", color, "True, False, None")
    return _Style(_color_enabled(_resolve(stream), color))


def _render_and_write(stream: TextIO | None, render: Callable[[], str], key: str) -> bool:
    """Write what `render()` returns; False (logged once under `key`) when rendering or writing failed."""
    try:
        text = render()
    except Exception:
        log_once(key, "veil: the console exporter failed to render (%s)", key, exc_info=True)
        return False
    return _write(stream, text, f"{key}.write")
