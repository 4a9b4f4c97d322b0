"""Early stoppers and the ``api.v1.beta1.EarlyStopping`` gRPC service.

Registry of early stoppers: Katib ``earlyStopping.algorithmName`` -> ``"module:Class"``.
Adding a stopper is one module in this package plus one line here; the service, settings
validation and the tests all read :data:`REGISTRY`. Imports are lazy, as for algorithms.
"""

from __future__ import annotations

from earlystop.base import EarlyStopper, UnknownAlgorithmError
from tunery.registry import load_registered

REGISTRY: dict[str, str] = {
    "medianstop": "earlystop.medianstop:MedianStop",
    "asha": "earlystop.asha:Asha",
}


def get_early_stopper(name: str) -> type[EarlyStopper]:
    """The EarlyStopper class registered as ``name``.

    Raises:
        UnknownAlgorithmError: no such stopper; Katib's message plus the valid names.
    """
    cls: type[EarlyStopper] = load_registered(REGISTRY, name, UnknownAlgorithmError)
    return cls
