"""A DBManager gRPC client that looks like the store's observation-log API.

Used by the Kubernetes sidecar (as the :class:`~metrics_collector.collector.ObservationSink`
of its :class:`~metrics_collector.collector.TrialCollector`) and by ``report_metrics`` when
the trial pushes through a DBManager (ours, or Katib's ``katib-db-manager``). Speaks only the
Katib wire: ``ReportObservationLog`` / ``GetObservationLog`` / ``DeleteObservationLog``.

The wire has no step: the server numbers each metric's rows in arrival order, and rows read
back get their ordinal per metric (``keeps_steps = False`` tells replays to match rows by
metric and value). gRPC failures become store errors, so callers retry the same way:
UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED and ABORTED are
:class:`~tunery.store.errors.StoreUnavailableError` (retryable); NOT_FOUND is
:class:`~tunery.store.errors.NotFoundError`; anything else
:class:`~tunery.store.errors.StoreError`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence

import grpc

from metrics_collector.errors import InvalidTimestampError
from metrics_collector.timefmt import format_rfc3339_nano, parse_rfc3339
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store.errors import NotFoundError, StoreError, StoreUnavailableError
from tunery.tls import open_channel
from tunery.trials import Observation

DEFAULT_TIMEOUT = 60.0
KATIB_DB_MANAGER_SERVICE = "katib-db-manager"
KATIB_DEFAULT_NAMESPACE = "kubeflow"
DEFAULT_PORT = 6789
ADDRESS_ENV = "TUNERY_DB_MANAGER_ADDRESS"
"""The one variable naming the DBManager (the operator sets it on trial containers; the
early-stopping service's ``--db-manager-address`` reads it too)."""
NAMESPACE_METADATA_KEY = "tunery-namespace"
"""gRPC metadata key naming the trial's namespace, which tunery's DBManager reads
(``metrics_collector.dbmanager``: Katib's wire names a trial without it); Katib's ignores it."""
NAMESPACE_ENV = "POD_NAMESPACE"
"""Where the collector sidecar finds its trial's namespace (the operator sets it from the
downward API, ``metadata.namespace``)."""
DEPRECATED_ADDRESS_ENV = "TUNERY_DBMANAGER_ADDRESS"
"""The name docs/sdk.md used to give; still read when the new one is unset."""
_RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}


def default_dbmanager_address(environ: Mapping[str, str] | None = None) -> str:
    """``$TUNERY_DB_MANAGER_ADDRESS``, else Katib's: ``katib-db-manager.kubeflow:6789``.

    The deprecated ``$TUNERY_DBMANAGER_ADDRESS`` is read when the first is unset. Katib's
    overrides apply: ``KATIB_DB_MANAGER_SERVICE_IP`` (host), ``KATIB_DB_MANAGER_SERVICE_PORT``
    and ``KATIB_DB_MANAGER_SERVICE_NAMESPACE``.
    """
    env = os.environ if environ is None else environ
    for key in (ADDRESS_ENV, DEPRECATED_ADDRESS_ENV):
        if env.get(key):
            return env[key]
    namespace = env.get("KATIB_DB_MANAGER_SERVICE_NAMESPACE") or KATIB_DEFAULT_NAMESPACE
    host = env.get("KATIB_DB_MANAGER_SERVICE_IP") or f"{KATIB_DB_MANAGER_SERVICE}.{namespace}"
    port = env.get("KATIB_DB_MANAGER_SERVICE_PORT") or str(DEFAULT_PORT)
    return f"{host}:{port}"


def store_error(error: grpc.RpcError, what: str) -> StoreError:
    """The store error for a failed DBManager call (retryable ones as unavailable)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    message = f"{what}: {code.name}: {details}"
    if code in _RETRYABLE:
        return StoreUnavailableError(message)
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFoundError(message)
    return StoreError(message)


class DBManagerClient:
    """``add_observations`` / ``get_observations`` / ``delete_observations`` over gRPC.

    Calls wait for the server to become ready, up to ``timeout`` seconds each. With
    ``namespace`` every call carries it in the metadata key :data:`NAMESPACE_METADATA_KEY`, so
    a trial name held in several namespaces reaches the right trial.
    """

    keeps_steps = False

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
        namespace: str | None = None,
    ) -> None:
        self.address = address or default_dbmanager_address()
        self.timeout = timeout
        self.namespace = namespace or None
        self._metadata = ((NAMESPACE_METADATA_KEY, namespace),) if namespace else None
        self._own_channel = channel is None
        self._channel = channel or open_channel(self.address)
        self._stub = api_pb2_grpc.DBManagerStub(self._channel)

    def add_observations(self, trial_name: str, observations: Sequence[Observation]) -> int:
        """One ``ReportObservationLog`` with every observation; returns how many were sent."""
        if not observations:
            return 0
        request = api_pb2.ReportObservationLogRequest(
            trial_name=trial_name,
            observation_log=observation_log(observations),
        )
        self._call(self._stub.ReportObservationLog, request, f"report metrics of {trial_name}")
        return len(observations)

    def get_observations(
        self,
        trial_name: str,
        metric_name: str | None = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
    ) -> list[Observation]:
        """The trial's rows ordered by time; steps are ordinals per metric in that order."""
        request = api_pb2.GetObservationLogRequest(
            trial_name=trial_name,
            metric_name=metric_name or "",
            start_time=format_rfc3339_nano(start_time) if start_time else "",
            end_time=format_rfc3339_nano(end_time) if end_time else "",
        )
        reply = self._call(self._stub.GetObservationLog, request, f"read metrics of {trial_name}")
        ordinals: dict[str, int] = {}
        out = []
        for metric_log in reply.observation_log.metric_logs:
            name = metric_log.metric.name
            step = ordinals.get(name, 0)
            ordinals[name] = step + 1
            try:
                time = parse_rfc3339(metric_log.time_stamp)
            except InvalidTimestampError as e:
                raise StoreError(f"DBManager at {self.address} returned {e}") from None
            out.append(Observation.of(name, metric_log.metric.value, step, time))
        return out

    def delete_observations(self, trial_name: str) -> None:
        request = api_pb2.DeleteObservationLogRequest(trial_name=trial_name)
        self._call(self._stub.DeleteObservationLog, request, f"delete metrics of {trial_name}")

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> DBManagerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method, request, what: str):  # type: ignore[no-untyped-def]
        try:
            return method(
                request, timeout=self.timeout, wait_for_ready=True, metadata=self._metadata
            )
        except grpc.RpcError as e:
            raise store_error(e, f"DBManager at {self.address}: {what}") from None


def observation_log(observations: Sequence[Observation]) -> api_pb2.ObservationLog:
    """Katib's ``ObservationLog`` of observations (time as RFC3339Nano UTC)."""
    return api_pb2.ObservationLog(
        metric_logs=[
            api_pb2.MetricLog(
                time_stamp=format_rfc3339_nano(o.time),
                metric=api_pb2.Metric(name=o.metric_name, value=o.value),
            )
            for o in observations
        ]
    )
