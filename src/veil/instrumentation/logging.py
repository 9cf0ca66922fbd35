"""Deprecated alias of `veil.instrumentation.stdlib_logging`, the standard-library `logging` instrumentation.

The module was renamed so that `veil.instrumentation` no longer holds a submodule called `logging`. Every name
read from here is the one of `veil.instrumentation.stdlib_logging`, with a DeprecationWarning; the alias goes
away after one release. The entry point `logging` already names the new module.
"""

from __future__ import annotations

import warnings

from veil.instrumentation import stdlib_logging as _target


def __getattr__(name: str) -> object:
    value = getattr(_target, name)  # an unknown name raises AttributeError before any warning
    warnings.warn(
        "veil.instrumentation.logging is deprecated: import from veil.instrumentation.stdlib_logging",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
