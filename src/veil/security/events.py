"""Audit events as rule fields: which events the sensor can watch, and the documented fields of each.

`extract(name, args)` turns the arguments CPython passes to an audit hook into an `Event` (a dict of raw fields);
fields derived from others (a normalized path, the request's route, input correlation) are computed only when
a rule reads them. `FIELDS` documents every field a condition may use (the rules reference is generated from it).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from veil.security.correlation import correlate
from veil.security.request import RequestScope, current_request

MAX_TEXT: Final = 4096

# Events the sensor knows how to read; any other name is rejected by the rule loader.
KNOWN_EVENTS: Final = frozenset(
    {
        "subprocess.Popen",
        "os.system",
        "os.exec",
        "os.spawn",
        "os.posix_spawn",
        "socket.connect",
        "socket.getaddrinfo",
        "urllib.Request",
        "http.client.connect",
        "open",
        "pickle.find_class",
        "ctypes.dlopen",
        "compile",
        "import",
    }
)

FIELDS: Final[Mapping[str, str]] = {
    "evt.name": "The audit event name (subprocess.Popen, os.system, open, socket.connect, ...).",
    "proc.cmdline": "The command line of a process about to start (subprocess, os.system, os.exec, os.spawn).",
    "proc.exe": "The executable of that process (`/bin/sh` for os.system).",
    "proc.name": "The base name of proc.exe (`sh`, `bash`, `curl`).",
    "proc.serving": "True once this process has started serving a request (start-up is over).",
    "fd.name": "The path passed to open(), as given.",
    "fd.path": "That path made absolute and normalized (`..` resolved, symlinks not followed).",
    "fd.basename": "The last component of fd.path.",
    "fd.mode": "The open() mode (`r`, `wb`, ...).",
    "fd.write": "True when the open() mode writes, appends or creates.",
    "net.dest.ip": "The destination IP address of socket.connect (or a literal address being resolved).",
    "net.dest.host": "The host name being resolved or connected to (getaddrinfo, http.client, urllib).",
    "net.dest.port": "The destination port.",
    "net.url": "The URL of a urllib request.",
    "pickle.global": "The `module.name` global an unpickler is asked to load.",
    "lib.name": "The library ctypes is asked to load.",
    "code.source": "The source string passed to compile()/exec()/eval() (first 4096 characters).",
    "code.filename": "The file name given to compile() (`<string>` for exec/eval of a string).",
    "import.module": "The module being imported for the first time.",
    "in_request": "True while the event happens inside an inbound request veil traces.",
    "http.route": "The route template of that request.",
    "http.request.method": "Its HTTP method.",
    "url.path": "Its path.",
    "client.address": "The socket peer address of that request (never X-Forwarded-For).",
    "user_agent.original": "Its User-Agent header.",
    "enduser.id": "The authenticated user, when the application or veil.audit set it.",
    "input.correlated": "True when a value that came in with the request appears in this event's sensitive "
    "argument (the command line, the path, the URL, the source, the library).",
    "input.source": "Where that value came from (`query:host`, `path`, `header:x-file`, `body`).",
}

_WRITE_FLAGS: Final = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_READ_ONLY: Final = frozenset("rbtU")
SHELLS: Final = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "ash", "busybox", "fish"})


class Event(dict[str, Any]):
    """The fields of one audit event; a derived field is computed on first read, an unknown one reads None."""

    __slots__ = ()

    def __missing__(self, key: str) -> Any:
        derive = _DERIVED.get(key)
        if derive is None:
            return None
        value = derive(self)
        self[key] = value
        return value


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, bytes):
        return value[:MAX_TEXT].decode("utf-8", "replace")
    if isinstance(value, os.PathLike):
        return _text(os.fspath(value))
    return None


def _cmdline(args: Any) -> str | None:
    if args is None:
        return None
    if isinstance(args, (str, bytes, os.PathLike)):
        return _text(args)
    try:
        parts = [_text(part) or str(part) for part in list(args)[:256]]
    except TypeError:
        return None
    return " ".join(parts)[:MAX_TEXT]


def _first(args: Any) -> str | None:
    if isinstance(args, (str, bytes, os.PathLike)):
        text = _text(args)
        return text.split(None, 1)[0] if text else None
    try:
        return _text(next(iter(args)))
    except (TypeError, StopIteration):
        return None


def _process(name: str, exe: Any, args: Any) -> Event:
    cmdline = _cmdline(args)
    executable = _text(exe) or _first(args)
    return Event({"evt.name": name, "proc.exe": executable, "proc.cmdline": cmdline})


def _popen(args: tuple[Any, ...]) -> Event:
    return _process("subprocess.Popen", args[0], args[1])


def _system(args: tuple[Any, ...]) -> Event:
    command = _text(args[0])
    return Event({"evt.name": "os.system", "proc.exe": "/bin/sh", "proc.cmdline": f"sh -c {command}"})


def _exec(args: tuple[Any, ...]) -> Event:
    return _process("os.exec", args[0], args[1])


def _spawn(args: tuple[Any, ...]) -> Event:
    return _process("os.spawn", args[1], args[2])


def _posix_spawn(args: tuple[Any, ...]) -> Event:
    return _process("os.posix_spawn", args[0], args[1])


def _is_ip(host: str) -> bool:
    return bool(host) and (host[0].isdigit() or ":" in host)


def _connect(args: tuple[Any, ...]) -> Event | None:
    address = args[1]
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return None  # a Unix socket path or a netlink address: nothing remote
    host = address[0]
    port = address[1] if len(address) > 1 else None
    return Event({"evt.name": "socket.connect", "net.dest.ip": host, "net.dest.port": port})


def _getaddrinfo(args: tuple[Any, ...]) -> Event | None:
    host = _text(args[0])
    if not host:
        return None
    event = Event(
        {"evt.name": "socket.getaddrinfo", "net.dest.host": host.lower().rstrip("."), "net.dest.port": args[1]}
    )
    if _is_ip(host):
        event["net.dest.ip"] = host
    return event


def _urllib(args: tuple[Any, ...]) -> Event:
    from urllib.parse import urlsplit

    url = _text(args[0]) or ""
    event = Event({"evt.name": "urllib.Request", "net.url": url})
    try:
        parts = urlsplit(url)
        event["net.dest.host"] = (parts.hostname or "").rstrip(".") or None
        event["net.dest.port"] = parts.port
    except ValueError:
        pass
    return event


def _http_connect(args: tuple[Any, ...]) -> Event:
    host = _text(args[1]) or ""
    return Event(
        {"evt.name": "http.client.connect", "net.dest.host": host.lower().rstrip("."), "net.dest.port": args[2]}
    )


def open_name(args: tuple[Any, ...]) -> str | None:
    """`fd.name` of an `open` event: the path as given (as text), or None for a file descriptor."""
    path = args[0]
    return path if isinstance(path, str) else _text(path)


def _open(args: tuple[Any, ...]) -> Event | None:
    path = open_name(args)
    if path is None:
        return None  # a file descriptor
    mode = args[1]
    flags = args[2] if len(args) > 2 else None
    if type(flags) is int:
        writes = bool(flags & _WRITE_FLAGS)
    else:
        writes = isinstance(mode, str) and not _READ_ONLY.issuperset(mode)
    return Event({"evt.name": "open", "fd.name": path, "fd.mode": mode, "fd.write": writes})


def _find_class(args: tuple[Any, ...]) -> Event:
    module, name = _text(args[0]) or "", _text(args[1]) or ""
    return Event({"evt.name": "pickle.find_class", "pickle.global": f"{module}.{name}"})


def _dlopen(args: tuple[Any, ...]) -> Event:
    return Event({"evt.name": "ctypes.dlopen", "lib.name": _text(args[0]) if args else None})


def _compile(args: tuple[Any, ...]) -> Event | None:
    source = _text(args[0])
    if source is None:
        return None  # an AST or code object: not a source string
    return Event({"evt.name": "compile", "code.source": source, "code.filename": _text(args[1])})


def _import(args: tuple[Any, ...]) -> Event:
    return Event({"evt.name": "import", "import.module": _text(args[0])})


EXTRACTORS: Final[Mapping[str, Callable[[tuple[Any, ...]], Event | None]]] = {
    "subprocess.Popen": _popen,
    "os.system": _system,
    "os.exec": _exec,
    "os.spawn": _spawn,
    "os.posix_spawn": _posix_spawn,
    "socket.connect": _connect,
    "socket.getaddrinfo": _getaddrinfo,
    "urllib.Request": _urllib,
    "http.client.connect": _http_connect,
    "open": _open,
    "pickle.find_class": _find_class,
    "ctypes.dlopen": _dlopen,
    "compile": _compile,
    "import": _import,
}


def extract(name: str, args: tuple[Any, ...]) -> Event | None:
    """The event's raw fields, or None when the event carries nothing a rule can judge (a file descriptor)."""
    return EXTRACTORS[name](args)


# -------------------------------------------------------------------------------------- derived fields


def _scope(event: Event) -> RequestScope | None:
    if "_scope" not in event:
        event["_scope"] = current_request()
    scope: RequestScope | None = event["_scope"]
    return scope


def normal_path(name: str | None) -> str | None:
    """`fd.path` of a file name: absolute and normalized (`..` resolved, symlinks not followed)."""
    if not name:
        return None
    if name[0] == "/" and "/." not in name and "//" not in name:
        return str(name)  # already absolute and normal: the common case costs nothing
    if name[0] == "~":
        name = os.path.expanduser(name)
    return os.path.normpath(os.path.join(os.getcwd(), name))


def _path(event: Event) -> str | None:
    return normal_path(event["fd.name"])


def _basename(event: Event) -> str | None:
    path = event["fd.path"]
    return path.rpartition("/")[2] if path else None


def _proc_name(event: Event) -> str | None:
    exe = event["proc.exe"]
    return os.path.basename(exe) if exe else None


def _request_field(read: Callable[[RequestScope], Any]) -> Callable[[Event], Any]:
    def derive(event: Event) -> Any:
        scope = _scope(event)
        return None if scope is None else read(scope)

    return derive


def _sensitive(event: Event) -> str | None:
    for key in ("proc.cmdline", "fd.name", "net.url", "net.dest.host", "net.dest.ip", "code.source", "lib.name"):
        value = event[key]
        if value:
            return str(value)
    return None


def _correlation(event: Event) -> tuple[bool, str | None]:
    scope = _scope(event)
    if scope is None:
        return False, None
    value = _sensitive(event)
    if not value:
        return False, None
    return correlate(scope, value)


def _correlated(event: Event) -> bool:
    correlated, source = _correlation(event)
    event["input.source"] = source
    event["input.correlated"] = correlated
    return correlated


def _input_source(event: Event) -> str | None:
    _correlated(event)
    source: str | None = event["input.source"]
    return source


class _Serving:
    started = False


def mark_serving() -> None:
    _Serving.started = True


def _url_path(scope: RequestScope) -> str:
    return scope.target.split("?", 1)[0]


_DERIVED: Final[Mapping[str, Callable[[Event], Any]]] = {
    "fd.path": _path,
    "fd.basename": _basename,
    "proc.name": _proc_name,
    "proc.serving": lambda event: _Serving.started,
    "in_request": lambda event: _scope(event) is not None,
    "http.route": _request_field(lambda scope: scope.resolve_route()),
    "http.request.method": _request_field(lambda scope: scope.method),
    "url.path": _request_field(_url_path),
    "client.address": _request_field(lambda scope: scope.client_address),
    "user_agent.original": _request_field(lambda scope: scope.user_agent),
    "enduser.id": _request_field(lambda scope: scope.enduser_id),
    "input.correlated": _correlated,
    "input.source": _input_source,
}

# Fields that go on a finding (when present): the event's own, and the request's.
FINDING_FIELDS: Final = (
    "evt.name",
    "proc.cmdline",
    "proc.exe",
    "fd.name",
    "net.dest.ip",
    "net.dest.host",
    "net.dest.port",
    "net.url",
    "pickle.global",
    "lib.name",
    "code.filename",
    "import.module",
    "input.source",
)
REQUEST_FIELDS: Final = (
    "http.route",
    "http.request.method",
    "url.path",
    "client.address",
    "user_agent.original",
    "enduser.id",
)
