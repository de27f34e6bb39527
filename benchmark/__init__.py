"""prunebench: a benchmark harness that makes neural-network pruning results comparable.

The public surface a plug-in imports (`from prunebench import Method, register_method,
PruningPlan`) is below; everything else is reached through its module (`prunebench.runner`,
`prunebench.report`, ...). Names resolve on first use, so `import prunebench` (and `bench list`,
`validate`, `compare`) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module of the package that defines it
_PUBLIC = {
    "Method": "method",
    "MethodSettings": "method",
    "PhaseSettings": "method",
    "Choices": "method",
    "PruneContext": "method",
    "Target": "method",
    "kept": "method",
    "register_method": "method",
    "METHODS": "method",
    "PruningPlan": "pruning",
    "BnL1": "penalties",
    "GrowingL2": "penalties",
    "GroupLasso": "penalties",
    "Masks": "pruning",
    "LRSchedule": "schedule",
    "Recipe": "config",
    "Protocol": "config",
    "Suite": "config",
    "UserError": "errors",
    "ProtocolViolation": "errors",
}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # the names above, for type checkers and IDEs
    from prunebench.config import Protocol, Recipe, Suite  # noqa: F401
    from prunebench.errors import ProtocolViolation, UserError  # noqa: F401
    from prunebench.method import (  # noqa: F401
        METHODS,
        Choices,
        Method,
        MethodSettings,
        PhaseSettings,
        PruneContext,
        Target,
        kept,
        register_method,
    )
    from prunebench.penalties import BnL1, GroupLasso, GrowingL2  # noqa: F401
    from prunebench.pruning import Masks, PruningPlan  # noqa: F401
    from prunebench.schedule import LRSchedule  # noqa: F401


def _package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prunebench")
    except PackageNotFoundError:
        return "unknown"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return _package_version()
    if name not in _PUBLIC:
        raise AttributeError(f"module 'prunebench' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"prunebench.{_PUBLIC[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(_PUBLIC)
