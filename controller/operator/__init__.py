"""The Kubernetes operator (``tunery operator``): Experiment custom resources run as trial jobs.

:func:`run_operator` is what the CLI calls. It connects to the cluster (in-cluster service
account, else ``$KUBECONFIG``/``~/.kube/config``), opens the store, and runs the kopf
application of ``controller.operator.app`` until stopped. The logic is in
``controller.operator.core``; the custom resources' documents in ``controller.operator.mirror``.

Several replicas may run: each first waits to hold the Lease of
``controller.operator.leader`` and only the holder reconciles; one that loses it stops (exit
status 1, so its pod restarts and waits again). ``TUNERY_LEADER_ELECTION=false`` skips it. kopf
itself runs standalone (no kopf peering): the Lease is the one exclusion.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from controller.operator.core import (
    ClusterGpus,
    ExperimentOperator,
    OperatorSettings,
    StoreWatcher,
)

log = logging.getLogger(__name__)

__all__ = [
    "ClusterGpus",
    "ExperimentOperator",
    "LeadershipLostError",
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


class LeadershipLostError(RuntimeError):
    """The replica could not renew its Lease in time and stopped reconciling."""


def run_operator(
    settings: OperatorSettings | None = None,
    *,
    kube_config: Any = None,
    store: Any = None,
    stop_flag: threading.Event | None = None,
    ready_flag: threading.Event | None = None,
    suggestion_factory: Any = None,
    early_stopping_factory: Any = None,
    lease: Any = None,
) -> None:
    """Run the operator until ``stop_flag`` is set (or SIGINT/SIGTERM).

    ``settings`` defaults to :meth:`OperatorSettings.from_env`; empty ``namespaces`` watches
    the whole cluster. ``store`` defaults to
    ``tunery.store.open_store(settings.db_url)``; ``kube_config`` to
    :func:`kube_configuration`. The factories replace the gRPC service clients (tests).
    ``lease`` (a :class:`~controller.operator.leader.LeaseSettings`) defaults to
    ``LeaseSettings.from_env()``: the operator waits until it leads before reconciling.

    Raises:
        LeadershipLostError: the Lease could not be renewed; the operator stopped.
    """
    from kubernetes import client

    from controller.operator.leader import LeaderElector, LeaseSettings, standby_liveness
    from controller.runners.kubernetes import KubeApi

    settings = settings or OperatorSettings.from_env()
    lease = lease or LeaseSettings.from_env()
    kube_config = kube_config or kube_configuration()
    # a waiting or renewing replica stops on the caller's flag; kopf gets that flag itself
    # (a flag of our own would keep one of kopf's executor threads waiting after a SIGTERM)
    stop = threading.Event()
    if stop_flag is not None:
        threading.Thread(
            target=lambda: stop_flag.wait() or stop.set(), name="stop-flag", daemon=True
        ).start()
    elector = None
    lost = threading.Event()

    def on_lost() -> None:
        lost.set()
        if stop_flag is not None:
            stop_flag.set()
        else:  # kopf stops gracefully on SIGTERM, as when the pod is deleted
            os.kill(os.getpid(), signal.SIGTERM)

    if lease.enabled:
        # each Lease request is bounded, so a leader cut off from the API server notices at its
        # renew deadline, well before the others may take over (lease duration)
        timeout = min(lease.retry_period, (lease.duration - lease.renew_deadline) / 2)
        elector = LeaderElector(KubeApi(client.ApiClient(kube_config), timeout=timeout), lease)
        log.warning("identity %s: waiting to lead (Lease %s/%s)", lease.identity,
                    lease.namespace, lease.name)  # fmt: skip
        with standby_liveness(settings.liveness_endpoint):
            if not elector.acquire(stop):
                return
        elector.keep(stop, on_lost)
    try:
        _run_kopf(
            settings, kube_config, store, stop_flag, ready_flag, suggestion_factory,
            early_stopping_factory, lease.identity if lease.enabled else "",
        )  # fmt: skip
    finally:
        stop.set()  # ends the renewal thread
        if elector is not None and not lost.is_set():
            elector.release()
    if lost.is_set():
        raise LeadershipLostError(
            f"lost the Lease {lease.namespace}/{lease.name}; stopped so that another replica "
            "leads (restart to wait for it again)"
        )


def _run_kopf(
    settings: OperatorSettings,
    kube_config: Any,
    store: Any,
    stop_flag: threading.Event | None,
    ready_flag: threading.Event | None,
    suggestion_factory: Any,
    early_stopping_factory: Any,
    identity: str,
) -> None:
    """The operator's kopf application until ``stop_flag`` (or SIGINT/SIGTERM)."""
    import kopf
    from kubernetes import client
    from prometheus_client import REGISTRY

    from controller.metrics import store_gauges
    from controller.operator.app import build_registry
    from controller.runners.kubernetes import KubeApi

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
        identity=identity,
    )
    registry = build_registry(operator, settings, kube_config)
    gauges = store_gauges(store)
    REGISTRY.register(gauges)
    try:
        kopf.run(
            registry=registry,
            standalone=True,  # no kopf peering: the Lease is the exclusion
            clusterwide=not settings.namespaces,
            namespaces=settings.namespaces,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            liveness_endpoint=settings.liveness_endpoint,
        )
    finally:
        REGISTRY.unregister(gauges)
        operator.close()
        if own_store:
            store.close()
