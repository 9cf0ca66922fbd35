"""Without the database drivers installed, veil's database instrumentations stay quiet: nothing is imported
from them, they are reported as absent (not as problems) and nothing is logged above DEBUG.

The interpreter runs in a subprocess in which the drivers' modules cannot be imported and their distributions
are not found, as in an installation without them.
"""

from __future__ import annotations

import json
import subprocess
import sys

_HIDDEN = ("psycopg", "psycopg2", "pymysql", "sqlalchemy", "redis")

_SCRIPT = """
import importlib.abc, importlib.metadata, json, logging, sys

hidden = set(sys.argv[1].split(","))
distributions = hidden | {"psycopg2-binary", "psycopg-binary"}

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
original = importlib.metadata.Distribution.from_name.__func__

def from_name(cls, name):
    if name.lower().replace("_", "-") in distributions:
        raise importlib.metadata.PackageNotFoundError(name)
    return original(cls, name)

importlib.metadata.Distribution.from_name = classmethod(from_name)
records = []
handler = logging.Handler(logging.INFO)
handler.emit = records.append
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)

from veil import instrumentation
result = instrumentation.instrument(*sys.argv[2].split(","))
print(json.dumps({
    "instrumented": sorted(result.instrumented),
    "absent": sorted(result.absent),
    "problems": result.problems(),
    "logged": [record.getMessage() for record in records],
    "imported": sorted(name for name in sys.modules if name.split(".")[0] in hidden),
}))
"""


def test_missing_drivers_are_absent_and_quiet() -> None:
    names = ("sqlite3", "psycopg", "psycopg2", "pymysql", "sqlalchemy", "redis")
    completed = subprocess.run(
        [sys.executable, "-c", _SCRIPT, ",".join(_HIDDEN), ",".join(names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report = json.loads(completed.stdout)
    assert report["instrumented"] == ["sqlite3"]  # the standard library is always there
    assert report["absent"] == sorted(_HIDDEN)
    assert report["problems"] == {}
    assert report["logged"] == []
    assert report["imported"] == []
    assert "Traceback" not in completed.stderr
