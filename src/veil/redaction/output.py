"""Redaction of the process's own log output: what stdlib logging handlers, structlog and loguru write.

In containers stdout and stderr are the log pipeline, so a secret in a log line leaves the process even when
the exported telemetry is clean. `LogOutputRedactor.record()` gives the stdlib handlers (every handler, also
the ones added later, and the last-resort handler) a redacted copy of each record, called from the logging
instrumentation's `Logger.callHandlers` seam; `install_structlog()` and `install_loguru()` hook the two other
libraries when they are imported.

What is kept: the record's level, logger name, exception type and message *template* (`record.msg`), so
error trackers still group by template. The arguments are redacted one by one; the formatted message is then
checked as a whole (a secret can need the template's words around it: `"password=%s"`) and, when it still
holds one, the arguments that make it up are replaced; only when that is not enough (a secret split between
template and argument) does the record carry the redacted formatted message instead of the template. The
exception traceback, `stack_info` and `extra=` fields are redacted too (an exception whose message held a
secret is replaced by a copy with the redacted message, same type).
"""

from __future__ import annotations

import copy
import logging
import re
import sys
import threading
import traceback
from collections.abc import Mapping, MutableMapping
from typing import Any

from veil._cache import remember
from veil._guard import log_once
from veil.redaction.engine import ERROR_MARKER, Redactor

_FORMATTER = logging.Formatter()
_CONVERSION = re.compile(
    r"%(?:\([^)]{0,64}\))?[#0 +-]{0,4}(?:\*|\d{1,3})?(?:\.(?:\*|\d{1,3}))?[hlL]?[diouxXeEfFgGcrsa]"
)
# Stand-ins for arguments when a template is checked for sensitive slots: a number, and a credential-shaped text.
_PROBE = "9999999999"
_TEXT_PROBE = "Zx9Qw7Lp2Kd8Vb3N"
_NUMERIC = frozenset("diouxXeEfFgGc")
_TOUCHING = re.compile(r"\x00[^A-Za-z0-9\x00]{0,3}\x00")
_CARD_FLOOR = 10**12
_TEMPLATE_CACHE_LIMIT = 1024
_NUMBER_TYPES = (int, float)


class LogOutputRedactor:
    """Builds redacted copies of log records for output; thread-safe, the template checks are cached."""

    def __init__(self, redactor: Redactor, record_attributes: frozenset[str], correlation_fields: int = 0) -> None:
        """`record_attributes`: the names that are not `extra=` fields; `correlation_fields`: how many fields
        the record factory adds to every record (they come with `trace_id`)."""
        self.redactor = redactor
        self._record_attributes = record_attributes
        self._correlation_fields = correlation_fields
        self._slots: dict[str, tuple[str, bool]] = {}
        plain = logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
        self._plain_size = len(plain)

    # ---------------------------------------------------------------------------------------------- stdlib

    def record(self, record: logging.LogRecord) -> logging.LogRecord:
        """`record` itself when nothing in it is sensitive, else a redacted copy (never raises)."""
        try:
            changes = self._changes(record)
        except Exception:
            log_once("redaction.log-output", "veil: redacting a log record for output failed; its text was replaced")
            changes = {"msg": ERROR_MARKER, "args": None, "exc_info": None, "exc_text": None, "stack_info": None}
        if not changes:
            return record
        redacted = logging.LogRecord.__new__(type(record))
        redacted.__dict__.update(record.__dict__)
        redacted.__dict__.update(changes)
        return redacted

    def _changes(self, record: logging.LogRecord) -> dict[str, Any]:
        redact = self.redactor.redact
        changes: dict[str, Any] = {}
        msg, args = record.msg, record.args
        new_msg: object
        risky: bool
        if isinstance(msg, str) and not args:
            new_msg, risky = redact(None, msg), False  # no arguments (an f-string): the text is all there is
        elif isinstance(msg, str):
            new_msg, risky = self._template(msg)
        else:
            new_msg, risky = (redact(None, msg) if isinstance(msg, Mapping) else self._other(msg)), True
        new_args = self._arguments(args) if args else args
        if new_msg is not msg:
            changes["msg"] = new_msg
        if new_args is not args:
            changes["args"] = new_args
        if new_args and isinstance(new_msg, str) and risky:
            self._check_formatted(new_msg, new_args, changes)
        values = record.__dict__
        if len(values) > self._plain_size + (self._correlation_fields if "trace_id" in values else 0):
            for key in values.keys() - self._record_attributes:  # `extra=` fields
                if isinstance(key, str) and not key.startswith("_"):
                    value = values[key]
                    redacted = redact(key, value)
                    if redacted is not value:
                        changes[key] = redacted
        if record.exc_info and record.exc_info[0] is not None:
            self._exception(record, changes)
        elif record.exc_text:
            text = redact(None, record.exc_text)
            if text is not record.exc_text:
                changes["exc_text"] = text
        if record.stack_info:
            stack = redact(None, record.stack_info)
            if stack is not record.stack_info:
                changes["stack_info"] = stack
        return changes

    def _other(self, value: object) -> object:
        """A message or argument that is neither text nor a mapping: its text, when that holds a secret."""
        if value is None or isinstance(value, (bool, *_NUMBER_TYPES)):
            return self.redactor.redact(None, value)
        if isinstance(value, (list, tuple, bytes)):
            return self.redactor.redact(None, value)
        text = str(value)
        redacted = self.redactor.redact(None, text)
        return value if redacted is text else redacted

    def _arguments(self, args: Any) -> Any:
        if isinstance(args, Mapping):
            return self.redactor.redact(None, args)
        if not isinstance(args, tuple):
            return self._other(args)
        items: list[Any] | None = None
        for index, item in enumerate(args):
            kind = type(item)
            if item is None or kind is bool or kind is float or (kind is int and -_CARD_FLOOR < item < _CARD_FLOOR):
                continue  # too short to be a card; no other detector judges a bare number
            redacted = self.redactor.redact(None, item) if isinstance(item, (str, Mapping)) else self._other(item)
            if redacted is not item:
                if items is None:
                    items = list(args)
                items[index] = redacted
        return args if items is None else tuple(items)

    def _template(self, template: str) -> tuple[str, bool]:
        """(the redacted template, whether formatted messages need a scan of their own); cached per template.

        A formatted message is scanned when an argument put in one of the template's conversions would be
        redacted there (`password=%s`, `Bearer %s`, `https://%s@host`: probed with a credential-shaped text
        and a number), or when two conversions touch (`%s=%s`, `%s:%s`), since two harmless arguments can
        then make a secret. Otherwise arguments that are clean on their own give a clean message.
        """
        plan = self._slots.get(template)
        if plan is None:
            redacted = self.redactor.redact(None, template)
            touching = _TOUCHING.search(_CONVERSION.sub("\x00", template)) is not None
            probes = (
                _CONVERSION.sub(lambda match: _PROBE if match.group()[-1] in _NUMERIC else _TEXT_PROBE, template),
                _CONVERSION.sub(_PROBE, template),
            )
            risky = touching or any(self.redactor.redact(None, probe) is not probe for probe in probes)
            plan = (redacted, risky)
            remember(self._slots, template, plan, _TEMPLATE_CACHE_LIMIT)
        return plan

    def _check_formatted(self, template: str, args: Any, changes: dict[str, Any]) -> None:
        """The formatted message as a whole: `password=%s` % ('hunter2',) is a secret no part shows alone."""
        try:
            message = template % args
        except Exception:
            return  # the handler reports the formatting error, with the redacted template and arguments
        redacted = self.redactor.redact(None, message)
        if redacted is message:
            return
        replaced = self._replace_arguments(args, redacted, message)
        if replaced is not None:
            try:
                retried = template % replaced
            except Exception:
                retried = None
            if retried is not None and self.redactor.redact(None, retried) is retried:
                changes["args"] = replaced
                return
        changes["msg"], changes["args"] = redacted, None  # fail closed: the template could not be kept

    def _replace_arguments(self, args: Any, redacted_message: str, message: str) -> Any:
        """The arguments with each one whose text did not survive redaction of the whole message replaced."""
        categories = [name for name in self.redactor.findings(None, message) if name != "error"]
        marker = self.redactor.marker(categories[0] if categories else "secret", "")

        def replace(value: Any) -> Any:
            text = value if isinstance(value, str) else str(value)
            return marker if text and text not in redacted_message else value

        if isinstance(args, Mapping):
            return {key: replace(value) for key, value in args.items()}
        if isinstance(args, tuple):
            return tuple(replace(value) for value in args)
        return replace(args)

    def _exception(self, record: logging.LogRecord, changes: dict[str, Any]) -> None:
        exc_info = record.exc_info
        assert exc_info is not None
        text = record.exc_text or _FORMATTER.formatException(exc_info)
        redacted = self.redactor.redact(None, text)
        if redacted is text:
            return
        changes["exc_text"] = redacted  # logging.Formatter prints exc_text when it is set
        changes["exc_info"] = redacted_exc_info(self.redactor, exc_info)


def redacted_exc_info(redactor: Redactor, exc_info: Any) -> Any:
    """`exc_info` with the exception replaced by a copy of the same type holding the redacted message;
    None when no such copy can be made (the redacted `exc_text` then carries the traceback)."""
    exception_type, exception, tb = exc_info
    if exception is None:
        return exc_info
    message = str(exception)
    redacted = redactor.redact(None, message)
    if redacted is message:
        return exc_info
    try:
        clone = copy.copy(exception)
        clone.args = (redacted,)
        if str(clone) == redacted:
            return (exception_type, clone, tb)
    except Exception:
        pass
    return None


# ----------------------------------------------------------------------------------------------- structlog


class _State:
    """The redactor the structlog and loguru hooks use; None when output redaction is off."""

    redactor: Redactor | None = None
    lock = threading.Lock()
    hooked: set[str] = set()


class StructlogOutputProcessor:
    """The structlog processor veil places before the renderer: redacts every value, `event` as free text.

    An exception (`exc_info`) is rendered to text first (as structlog's `format_exc_info` does) and redacted,
    so renderers print the redacted traceback.
    """

    def __call__(self, logger: object, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        redactor = _State.redactor
        if redactor is None:
            return event_dict
        try:
            if event_dict.get("exc_info"):
                from structlog.processors import format_exc_info

                event_dict = format_exc_info(logger, method_name, event_dict)
            for key, value in list(event_dict.items()):
                redacted = redactor.redact(None if key in ("event", "exception") else key, value)
                if redacted is not value:
                    event_dict[key] = redacted
        except Exception:
            log_once("redaction.structlog", "veil: redacting a structlog event failed; its values were replaced")
            return dict.fromkeys(event_dict, ERROR_MARKER)
        return event_dict


_STRUCTLOG_PROCESSOR = StructlogOutputProcessor()


def _place_processor(processors: Any) -> None:
    """Insert veil's processor just before the renderer (the last processor), once, in place."""
    if not isinstance(processors, list):
        return
    from veil.logging import StructlogRedactor

    if any(isinstance(item, (StructlogOutputProcessor, StructlogRedactor)) for item in processors):
        return
    processors.insert(max(len(processors) - 1, 0), _STRUCTLOG_PROCESSOR)


def _refresh_structlog(module: Any) -> None:
    processors = module.get_config().get("processors")
    if processors is not None and not isinstance(processors, list):
        # A tuple (or other sequence) cannot take the processor in place: configure a list with the same
        # processors, which leaves the configuration as it was otherwise.
        module.configure(processors=list(processors))
        processors = module.get_config().get("processors")
    _place_processor(processors)


def _on_structlog(module: Any) -> None:
    import wrapt

    _refresh_structlog(module)

    def after(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if _State.redactor is not None:
            _refresh_structlog(module)
        return result

    for name in ("configure", "configure_once", "reset_defaults"):
        if hasattr(module, name):
            wrapt.wrap_function_wrapper(module, name, after)


# -------------------------------------------------------------------------------------------------- loguru


def _loguru_patcher(record: dict[str, Any]) -> None:
    """loguru patcher: redacts the formatted message, `extra` by key, and the exception with its traceback.

    loguru formats tracebacks itself, and with `diagnose=True` (its default) prints the values of local
    variables; a record with an exception therefore carries the redacted standard traceback in its message
    and an exception of the same type, with the redacted message and no traceback object.
    """
    redactor = _State.redactor
    if redactor is None:
        return
    try:
        record["message"] = redactor.redact(None, record["message"])
        extra = record["extra"]
        for key, value in list(extra.items()):
            redacted = redactor.redact(key, value)
            if redacted is not value:
                extra[key] = redacted
        exception = record.get("exception")
        if exception is not None and exception.type is not None:
            lines = traceback.format_exception(exception.type, exception.value, exception.traceback)
            text = redactor.redact(None, "".join(lines[:-1]).rstrip("\n"))
            info = redacted_exc_info(redactor, (exception.type, exception.value, None))
            if text:
                record["message"] = f"{record['message']}\n{text}"
            if info is None:
                record["exception"] = None
                record["message"] += "\n" + redactor.redact(None, lines[-1].rstrip("\n"))
            else:
                record["exception"] = type(exception)(info[0], info[1], None)
    except Exception:
        log_once("redaction.loguru", "veil: redacting a loguru record failed; its message was replaced")
        record["message"] = ERROR_MARKER
        record["exception"] = None


def _chained(previous: Any) -> Any:
    if previous is None or previous is _loguru_patcher:
        return _loguru_patcher
    if getattr(previous, "veil_previous", None) is not None:
        return previous  # already veil's chain

    def patcher(record: dict[str, Any]) -> None:
        previous(record)
        _loguru_patcher(record)

    patcher.veil_previous = previous  # type: ignore[attr-defined]
    return patcher


def _on_loguru(module: Any) -> None:
    import wrapt

    logger = module.logger
    core = getattr(logger, "_core", None)  # loguru's one core: its `patcher` runs for every record
    if core is None or not hasattr(core, "patcher"):
        log_once("redaction.loguru-core", "veil: this loguru version has no core patcher; its output is not redacted")
        return
    core.patcher = _chained(core.patcher)

    def configure(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        if kwargs.get("patcher") is not None:
            core.patcher = _chained(core.patcher)  # a patcher the user sets replaces veil's: chain it again
        return result

    wrapt.wrap_function_wrapper(type(logger), "configure", configure)


# ------------------------------------------------------------------------------------------------- install


def install_library_hooks(redactor: Redactor | None) -> None:
    """Redact structlog and loguru output with `redactor` (None switches it off): now for libraries already
    imported, on import for the others. The wrappers stay in place and follow this switch."""
    import wrapt

    with _State.lock:
        _State.redactor = redactor
        if redactor is None:
            return
        for name, hook, refresh in (
            ("structlog", _on_structlog, _refresh_structlog),
            ("loguru", _on_loguru, _refresh_loguru),
        ):
            if name not in _State.hooked:
                _State.hooked.add(name)
                wrapt.register_post_import_hook(_guarded(hook, name), name)
            elif name in sys.modules:
                _guarded(refresh, name)(sys.modules[name])  # configured while veil's hook was off


def _refresh_loguru(module: Any) -> None:
    core = getattr(module.logger, "_core", None)
    if core is not None and hasattr(core, "patcher"):
        core.patcher = _chained(core.patcher)


def _guarded(hook: Any, name: str) -> Any:
    def run(module: Any) -> None:
        try:
            hook(module)
        except Exception:
            log_once(f"redaction.{name}-hook", f"veil: hooking {name} for output redaction failed", exc_info=True)

    return run
