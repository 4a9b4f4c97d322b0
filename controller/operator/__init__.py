"""The Kubernetes operator (``tunery operator``): Experiment custom resources run as trial jobs.

:func:`run_operator` is what the CLI calls. It connects to the cluster (in-cluster service
account, else ``$KUBECONFIG``/``~/.kube/config``), opens the store, and runs the kopf
application of ``controller.operator.app`` until stopped. The logic is in
``controller.operator.core``; the custom resources' documents in ``controller.operator.mirror``.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from controller.operator.core import (
    ClusterGpus,
    ExperimentOperator,
    OperatorSettings,
    StoreWatcher,
)

__all__ = [
    "ClusterGpus",
    "ExperimentOperator",
    "OperatorSettings",
    "StoreWatcher",
    "kube_configuration",
    "run_operator",
]


def kube_configuration(context: str | None = None) -> Any:
    """The ``kubernetes`` client configuration: in-cluster if possible, else kubeconfig."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(context=context, client_configuration=configuration)
    return configuration


def run_operator(
    settings: OperatorSettings | None = None,
    *,
    kube_config: Any = None,
    store: Any = None,
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    suggestion_factory: Any = None,
    early_stopping_factory: Any = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or SIGINT/SIGTERM).

    ``settings`` defaults to :meth:`OperatorSettings.from_env`; empty ``namespaces`` watches
    the whole cluster. ``store`` defaults to
    ``tunery.store.open_store(settings.db_url)``; ``kube_config`` to
    :func:`kube_configuration`. The factories replace the gRPC service clients (tests).
    """
    import kopf
    from kubernetes import client

    from controller.operator.app import build_registry
    from controller.runners.kubernetes import KubeApi

    settings = settings or OperatorSettings.from_env()
    kube_config = kube_config or kube_configuration()
    own_store = store is None
    if store is None:
        from tunery.store import open_store  # type: ignore[attr-defined]

        store = open_store(settings.db_url)
    operator = ExperimentOperator(
        KubeApi(client.ApiClient(kube_config)),
        store,
        settings,
        suggestion_factory=suggestion_factory,
        early_stopping_factory=early_stopping_factory,
    )
    registry = build_registry(operator, settings, kube_config)
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=settings.liveness_endpoint,
        )
    finally:
        operator.close()
        if own_store:
            store.close()
