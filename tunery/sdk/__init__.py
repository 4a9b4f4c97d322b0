"""The Python SDK: ``tune(objective, parameters)``, ``report_metrics``, ``Client`` and ``search``.

The public face for Python users (``from tunery import tune, search, report_metrics, Client``).
One module per role:

- ``tuning``: :func:`tune` builds a Katib Experiment around a Python function and runs it,
  locally (through the controller, in this process) or on Kubernetes
- ``client``: :class:`Client`, Katib's ``KatibClient`` method names over either backend
- ``local``: the local backend (the controller's :mod:`controller.local_backend` in SDK terms)
- ``kubernetes``: the cluster backend (``kubeflow.org/v1beta1`` custom objects)
- ``metrics``: :func:`report_metrics` from inside a trial
- ``search``: the search-space helpers; ``document``: the Experiment that ``tune`` builds
- ``trial_entry``: the program every ``tune`` trial runs; ``records``: result values;
  ``experiments``: reading Experiment documents; ``progress``: the live view; ``export``:
  trials as a DataFrame or an HTML table; ``errors``

Every error raised here is a :class:`TuneryError` (see ``tunery.sdk.errors`` for the tree);
errors of the store, controller, collector and Kubernetes client are mapped at this boundary.
Names are loaded on first use, so a trial process (``python -m tunery.sdk.trial_entry``)
imports only what it needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tunery.sdk.client import Client
    from tunery.sdk.errors import (
        AlreadyExistsError,
        BackendUnavailableError,
        DriverExitedError,
        ExperimentFailedError,
        InvalidArgumentError,
        InvalidExperimentError,
        MissingDependencyError,
        NoResultError,
        NotFoundError,
        ObjectiveSerializationError,
        ReportMetricsError,
        TuneryError,
        UnsupportedError,
        WaitTimeoutError,
    )
    from tunery.sdk.metrics import report_metrics
    from tunery.sdk.records import OptimalTrial, TrialInfo, TuneResult
    from tunery.sdk.search import SearchSpec
    from tunery.sdk.tuning import tune

_EXPORTS = {
    "Client": "tunery.sdk.client",
    "tune": "tunery.sdk.tuning",
    "report_metrics": "tunery.sdk.metrics",
    "OptimalTrial": "tunery.sdk.records",
    "TrialInfo": "tunery.sdk.records",
    "TuneResult": "tunery.sdk.records",
    "SearchSpec": "tunery.sdk.search",
    **dict.fromkeys(
        (
            "AlreadyExistsError",
            "BackendUnavailableError",
            "DriverExitedError",
            "ExperimentFailedError",
            "InvalidArgumentError",
            "InvalidExperimentError",
            "MissingDependencyError",
            "NoResultError",
            "NotFoundError",
            "ObjectiveSerializationError",
            "ReportMetricsError",
            "TuneryError",
            "UnsupportedError",
            "WaitTimeoutError",
        ),
        "tunery.sdk.errors",
    ),
}

__all__ = [
    "AlreadyExistsError",
    "BackendUnavailableError",
    "Client",
    "DriverExitedError",
    "ExperimentFailedError",
    "InvalidArgumentError",
    "InvalidExperimentError",
    "MissingDependencyError",
    "NoResultError",
    "NotFoundError",
    "ObjectiveSerializationError",
    "OptimalTrial",
    "ReportMetricsError",
    "SearchSpec",
    "TrialInfo",
    "TuneResult",
    "TuneryError",
    "UnsupportedError",
    "WaitTimeoutError",
    "report_metrics",
    "tune",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public names only (not this module's imports)."""
    return sorted(__all__)
