"""Import order and layering: every module imports alone in a fresh interpreter; lower floors never import upper ones.

An import cycle that function-level imports hide today breaks as soon as someone moves one of them to the top:
then importing one module of the pair first fails. Each module is imported first, in its own interpreter, with
veil's own DeprecationWarnings turned into errors (an internal use of a deprecated alias fails here too).
"""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import veil

SOURCE = pathlib.Path(veil.__file__).parent
# The floors that build pieces must not reach up to the ones that assemble them.
UPPER = ("veil.telemetry", "veil.report", "veil.distro", "veil.cli", "veil.pytest_plugin")
LOWER = ("instrumentation", "redaction", "export", "propagation")
_IMPORT_ALONE = (
    "import importlib, sys, warnings; "
    "warnings.filterwarnings('error', category=DeprecationWarning, module=r'veil(\\..*)?$'); "
    "importlib.import_module(sys.argv[1])"
)


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> list[str]:
    return sorted(_module_name(path) for path in SOURCE.rglob("*.py"))


def _import_alone(module: str) -> tuple[str, int, str]:
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALONE, module], capture_output=True, text=True, timeout=60, check=False
    )
    return module, done.returncode, done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""


def test_every_module_imports_first_in_a_fresh_interpreter() -> None:
    modules = _modules()
    assert "veil.redaction.config" in modules and "veil.export.console.spans" in modules
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        failures = [(module, error) for module, code, error in pool.map(_import_alone, modules) if code]
    assert failures == []


def test_import_alone_reports_a_cycle(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: two modules importing each other at the top, imported alone, break."""
    (tmp_path / "cycle_a.py").write_text("from cycle_b import B\nA = 1\n")
    (tmp_path / "cycle_b.py").write_text("from cycle_a import A\nB = 2\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    _, code, error = _import_alone("cycle_a")
    assert code != 0 and "partially initialized module" in error


def _imported(path: pathlib.Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("floor", LOWER)
def test_lower_floors_never_import_the_assembly(floor: str) -> None:
    reaching_up = {
        _module_name(path): sorted(name for name in _imported(path) if name.startswith(UPPER))
        for path in (SOURCE / floor).rglob("*.py")
    }
    assert {module: names for module, names in reaching_up.items() if names} == {}
