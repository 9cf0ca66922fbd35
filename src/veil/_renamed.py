"""Public names kept for one release after a rename: a module-level `__getattr__` that answers the old name."""

from __future__ import annotations

import warnings
from collections.abc import Callable


def old_name(module: str, old: str, value: object, new: str) -> Callable[[str], object]:
    """The `__getattr__` of `module` that answers `old` with `value` (now called `new`) and a DeprecationWarning
    pointing at the importer; any other missing name raises AttributeError as usual."""

    def __getattr__(name: str) -> object:
        if name == old:
            warnings.warn(f"{module}.{old} is deprecated: use {new} (the same class)", DeprecationWarning, stacklevel=2)
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
