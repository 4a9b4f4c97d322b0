"""tunery: hyperparameter tuning, wire- and YAML-compatible with Kubeflow Katib v1beta1.

The kernel (``space``, ``experiment``, ``trials``, ``store``, ``api``) lives here together with
the public face in its own packages (``sdk``, ``cli``). The SDK's names are exported
lazily, so ``import tunery`` stays light::

    from tunery import Client, report_metrics, search, tune

Type checkers see these names through ``__init__.pyi``; at run time :func:`__getattr__` imports
``tunery.sdk`` on first use. The kernel modules (``tunery.space``, ``tunery.store``, ...) never
import the SDK; this ``__init__`` belongs to the public face.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = ["Client", "TuneResult", "__version__", "report_metrics", "search", "tune"]

_SDK_NAMES = frozenset({"Client", "TuneResult", "report_metrics", "tune"})


def __getattr__(name: str) -> Any:
    if name in _SDK_NAMES:
        return getattr(importlib.import_module("tunery.sdk"), name)
    if name == "search":  # a submodule: importing it binds it, so this runs only once
        return importlib.import_module("tunery.sdk.search")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names only (not this module's imports)."""
    return sorted(__all__)
