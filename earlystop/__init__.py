"""Early stoppers and the ``api.v1.beta1.EarlyStopping`` gRPC service.

Registry of early stoppers: Katib ``earlyStopping.algorithmName`` -> ``"module:Class"``.
Adding a stopper is one module in this package plus one line here; the service, settings
validation and the tests all read :data:`REGISTRY`. Imports are lazy, as for algorithms.
"""

from __future__ import annotations

import importlib

from earlystop.base import EarlyStopper, UnknownAlgorithmError

REGISTRY: dict[str, str] = {
    "medianstop": "earlystop.medianstop:MedianStop",
}


def get_early_stopper(name: str) -> type[EarlyStopper]:
    """The EarlyStopper class registered as ``name``.

    Raises:
        UnknownAlgorithmError: no such stopper; Katib's message plus the valid names.
    """
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownAlgorithmError(
            f"unknown algorithm name {name}; available: {', '.join(sorted(REGISTRY))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    cls: type[EarlyStopper] = getattr(importlib.import_module(module_name), class_name)
    return cls
