"""ArcSight Common Event Format lines, for Microsoft Sentinel (CEF over syslog via the Azure Monitor Agent),
QRadar and ArcSight: `CEF:0|veil|veil|<version>|<signature id>|<name>|<severity 0-10>|<extension>`.

Extension keys are CEF's own dictionary (`rt`, `act`, `outcome`, `src`, `suser`, `request`, `requestMethod`,
`requestClientApplication`, `msg`, `cat`, `cnt`) plus labelled custom strings: `cs1` traceId, `cs2` spanId,
`cs3` mitreTechnique, `cs4` route. Header fields escape `\\` and `|`; extension values escape `\\`, `=` and
line breaks, as the CEF specification requires.
"""

from __future__ import annotations

import calendar
import time
from typing import Any

from veil._version import __version__
from veil.security.sinks.ecs import Document

# CEF severity 0-10 from the syslog severity of the finding's priority (0 emergency ... 7 debug).
_SEVERITY = {0: 10, 1: 9, 2: 8, 3: 7, 4: 5, 5: 3, 6: 1, 7: 0}


def _header(value: object) -> str:
    return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _extension(value: object) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text.replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")


def _get(document: Document, dotted: str) -> Any:
    node: Any = document
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _epoch_millis(stamp: str) -> int:
    seconds = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S"))
    return seconds * 1000 + int(stamp[20:23] or 0)


def format_cef(document: Document) -> str:
    """One CEF line for one ECS document."""
    event = document.get("event", {})
    if event.get("kind") == "alert":
        signature = _get(document, "rule.id")
        name = _get(document, "rule.name")
        severity = _SEVERITY.get(int(event.get("severity", 5)), 3)
    else:
        signature = f"audit:{event.get('action')}"
        name = f"audit {event.get('action')} {event.get('outcome')}"
        severity = 5 if event.get("outcome") == "failure" else 1
    pairs: list[tuple[str, Any]] = [
        ("rt", _epoch_millis(document["@timestamp"])),
        ("act", event.get("action")),
        ("outcome", event.get("outcome")),
        ("cat", _get(document, "rule.category") or event.get("dataset")),
        ("src", _get(document, "source.ip")),
        ("suser", _get(document, "user.id")),
        ("request", _get(document, "url.path")),
        ("requestMethod", _get(document, "http.request.method")),
        ("requestClientApplication", _get(document, "user_agent.original")),
        ("cnt", _get(document, "veil.count")),
        ("msg", document.get("message")),
    ]
    custom = (
        ("traceId", _get(document, "trace.id")),
        ("spanId", _get(document, "span.id")),
        ("mitreTechnique", _get(document, "threat.technique.id")),
        ("route", _get(document, "veil.http.route")),
    )
    for index, (label, value) in enumerate(custom, start=1):
        if value is not None:
            pairs += [(f"cs{index}Label", label), (f"cs{index}", value)]
    extension = " ".join(f"{key}={_extension(value)}" for key, value in pairs if value is not None and value != "")
    head = "|".join(_header(part) for part in ("veil", "veil", __version__, signature, name, severity))
    return f"CEF:0|{head}|{extension}"
