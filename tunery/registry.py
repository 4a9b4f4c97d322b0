"""Lazy plug-in registries: a name maps to ``"module:Class"``, imported on first use.

Used by ``suggestion.algorithms`` (algorithms) and ``earlystop`` (early stoppers), so adding a
plug-in is one module plus one registry line, and a server imports only what it is asked for.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def load_registered(
    registry: Mapping[str, str], name: str, unknown: Callable[[str], Exception]
) -> Any:
    """The class registered as ``name``.

    Raises:
        the exception ``unknown(message)`` builds, with Katib's "unknown algorithm name X"
        message and the registered names, when ``name`` is not registered.
    """
    try:
        target = registry[name]
    except KeyError:
        raise unknown(
            f"unknown algorithm name {name}; available: {', '.join(sorted(registry))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)
