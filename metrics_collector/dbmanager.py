"""The ``api.v1.beta1.DBManager`` gRPC service over a tunery store (Katib's katib-db-manager).

Run by ``tunery serve dbmanager --db URL`` (:func:`serve`); tests and embedders use
:func:`create_dbmanager_server`. Sidecars, ``report_metrics`` and Katib clients (the
``kubeflow-katib`` SDK's ``get_trial_metrics``, Katib's medianstop) talk to it unchanged.

Katib semantics kept: a log with an empty ``time_stamp`` is skipped; timestamps are RFC3339
(nanoseconds allowed, kept to the microsecond) and returned as RFC3339Nano in UTC; values are
stored as text (plus their numeric value); ``GetObservationLog`` filters by metric name and an
inclusive time range and orders by time; an unknown trial simply has no logs. Each stored row
also gets a step: its ordinal among the trial's rows of that metric, continuing from what is
stored. Stricter than Katib: an empty trial or metric name is rejected.

Namespaces: the store keys trials by (namespace, name), but Katib's wire carries a trial name
alone. Each call finds the trial's namespace (:meth:`DBManagerServicer.store_for`): the one
given in the gRPC metadata key ``tunery-namespace`` (:data:`NAMESPACE_METADATA_KEY`) if the
caller sends it; else the one namespace holding a trial of that name; else, for a trial no
namespace holds yet, the namespace the server's store is bound to (``default``). A name held in
several namespaces without the metadata is refused with FAILED_PRECONDITION naming them.

Errors map to status codes in one place (:func:`_status_of`): a bad request
(bad timestamp, empty or overlong name) is INVALID_ARGUMENT naming the field; an ambiguous
trial name FAILED_PRECONDITION; a store that
cannot be reached is UNAVAILABLE (clients retry); anything else from the store is INTERNAL.
Health and reflection come from :func:`tunery.serving.create_server`; health follows the
database (NOT_SERVING while ``store.ping`` fails, SERVING again once it answers), as Katib's
db-manager does.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import zlib
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import grpc

from metrics_collector.dbclient import NAMESPACE_METADATA_KEY
from metrics_collector.errors import InvalidRequestError, InvalidTimestampError
from metrics_collector.timefmt import format_rfc3339_nano, parse_rfc3339
from tunery.api import api_pb2, api_pb2_grpc
from tunery.serving import DEFAULT_HOST, address, create_server, serve_forever, service_name
from tunery.store.base import Store
from tunery.store.errors import (
    AmbiguousTrialError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from tunery.tls import ServerTls
from tunery.trials import Observation

log = logging.getLogger(__name__)

DEFAULT_PORT = 6789
_LOCK_STRIPES = 64


_Reply = TypeVar("_Reply")


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The one mapping of domain errors to gRPC status codes."""
    if isinstance(error, AmbiguousTrialError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(error)
    if isinstance(error, StoreUnavailableError):
        return grpc.StatusCode.UNAVAILABLE, f"database unavailable: {error}"
    if isinstance(error, NotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(error)
    if isinstance(error, StoreError):
        return grpc.StatusCode.INTERNAL, f"database error: {error}"
    if isinstance(error, ValueError):  # a bad field: ours, or the store's name checks
        return grpc.StatusCode.INVALID_ARGUMENT, str(error)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(error).__name__}: {error}"


def _rpc(
    method: Callable[[Any, Any, grpc.ServicerContext], _Reply],
) -> Callable[[Any, Any, grpc.ServicerContext], _Reply]:
    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> _Reply:
        try:
            return method(self, request, context)
        except Exception as e:
            code, message = _status_of(e)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__name__)
            context.abort(code, message)
            raise  # abort raises; this keeps type checkers content

    return wrapper


def _time_field(text: str, field: str) -> Any:
    try:
        return parse_rfc3339(text)
    except InvalidTimestampError as e:
        raise InvalidTimestampError(f"{field}: {e}") from None


class DBManagerServicer(api_pb2_grpc.DBManagerServicer):
    """Katib's DBManager over a :class:`~tunery.store.Store` (thread-safe)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Steps continue from the stored count: one report per trial at a time.
        self._locks = [threading.Lock() for _ in range(_LOCK_STRIPES)]

    def _lock(self, store: Store, trial_name: str) -> threading.Lock:
        key = f"{store.namespace}/{trial_name}".encode()
        return self._locks[zlib.crc32(key) % _LOCK_STRIPES]

    def store_for(self, trial_name: str, context: grpc.ServicerContext | None) -> Store:
        """The store bound to the trial's namespace (see the module docstring).

        Raises:
            AmbiguousTrialError: several namespaces hold the name and none was given.
            ValueError: the namespace given in the metadata is invalid.
        """
        metadata = dict(context.invocation_metadata() or ()) if context is not None else {}
        given = metadata.get(NAMESPACE_METADATA_KEY)
        if given:
            return self.store.in_namespace(str(given))
        try:
            return self.store.for_trial(trial_name)
        except AmbiguousTrialError as exc:
            raise AmbiguousTrialError(
                f"{exc}; Katib's DBManager API names a trial without its namespace, so pass it "
                f"in the gRPC metadata key {NAMESPACE_METADATA_KEY!r}",
                exc.namespaces,
            ) from None

    @_rpc
    def ReportObservationLog(
        self, request: api_pb2.ReportObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.ReportObservationLogReply:
        trial = request.trial_name
        if not trial:
            raise InvalidRequestError("trial_name is empty")
        rows = []
        for i, metric_log in enumerate(request.observation_log.metric_logs):
            if not metric_log.time_stamp:
                continue  # Katib skips logs without a time stamp
            time = _time_field(
                metric_log.time_stamp, f"observation_log.metric_logs[{i}].time_stamp"
            )
            name = metric_log.metric.name
            if not name:
                raise InvalidRequestError(f"observation_log.metric_logs[{i}].metric.name is empty")
            rows.append((name, metric_log.metric.value, time))
        if not rows:
            return api_pb2.ReportObservationLogReply()
        store = self.store_for(trial, context)
        with self._lock(store, trial):
            counts = dict(store.observation_counts(trial))
            observations = []
            for name, value, time in rows:
                step = counts.get(name, 0)
                counts[name] = step + 1
                observations.append(Observation.of(name, value, step, time))
            store.add_observations(trial, observations)
        return api_pb2.ReportObservationLogReply()

    @_rpc
    def GetObservationLog(
        self, request: api_pb2.GetObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetObservationLogReply:
        if not request.trial_name:
            raise InvalidRequestError("trial_name is empty")
        start = _time_field(request.start_time, "start_time") if request.start_time else None
        end = _time_field(request.end_time, "end_time") if request.end_time else None
        store = self.store_for(request.trial_name, context)
        observations = store.get_observations(
            request.trial_name, request.metric_name or None, start, end
        )
        return api_pb2.GetObservationLogReply(
            observation_log=api_pb2.ObservationLog(
                metric_logs=[
                    api_pb2.MetricLog(
                        time_stamp=format_rfc3339_nano(o.time),
                        metric=api_pb2.Metric(name=o.metric_name, value=o.value),
                    )
                    for o in observations
                ]
            )
        )

    @_rpc
    def DeleteObservationLog(
        self, request: api_pb2.DeleteObservationLogRequest, context: grpc.ServicerContext
    ) -> api_pb2.DeleteObservationLogReply:
        if not request.trial_name:
            raise InvalidRequestError("trial_name is empty")
        store = self.store_for(request.trial_name, context)
        with self._lock(store, request.trial_name):
            store.delete_observations(request.trial_name)
        return api_pb2.DeleteObservationLogReply()


def create_dbmanager_server(
    bind: str, store: Store, *, max_workers: int = 16, tls: ServerTls | None = None
) -> tuple[grpc.Server, int]:
    """A not-yet-started server with the DBManager, health and reflection; returns its port.

    ``bind`` like ``"127.0.0.1:6789"``; port 0 picks a free one (tests). TLS with ``tls``.
    """
    servicer = DBManagerServicer(store)

    def register(server: grpc.Server) -> str:
        api_pb2_grpc.add_DBManagerServicer_to_server(servicer, server)
        return service_name("DBManager")

    return create_server([register], bind, max_workers=max_workers, probe=store.ping, tls=tls)


def katib_db_url(environ: Mapping[str, str] | None = None) -> str | None:
    """The database URL from Katib's db-manager environment (``DB_NAME=mysql|postgres``...).

    Lets tunery's DBManager replace ``katib-db-manager`` in a Katib install unchanged.
    None when ``DB_NAME`` is not set.
    """
    env = os.environ if environ is None else environ
    kind = env.get("DB_NAME", "").lower()
    if not kind:
        return None
    from urllib.parse import quote

    password = env.get("DB_PASSWORD", "")
    if kind == "mysql":
        user = env.get("DB_USER") or "root"
        host = env.get("KATIB_MYSQL_DB_HOST") or "katib-mysql"
        port = env.get("KATIB_MYSQL_DB_PORT") or "3306"
        database = env.get("KATIB_MYSQL_DB_DATABASE") or "katib"
        scheme = "mysql"
    elif kind == "postgres":
        user = env.get("DB_USER") or "katib"
        host = env.get("KATIB_POSTGRESQL_DB_HOST") or "katib-postgres"
        port = env.get("KATIB_POSTGRESQL_DB_PORT") or "5432"
        database = env.get("KATIB_POSTGRESQL_DB_DATABASE") or "katib"
        scheme = "postgresql"
    else:
        raise ValueError(f"DB_NAME must be mysql or postgres, got {env['DB_NAME']!r}")
    auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
    url = f"{scheme}://{auth}@{host}:{port}/{database}"
    if kind == "postgres":
        url += f"?sslmode={env.get('KATIB_POSTGRESQL_SSL_MODE') or 'disable'}"
    return url


def serve(
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    db_url: str | None = None,
    *,
    tls: ServerTls | None = None,
) -> None:
    """Serve DBManager until SIGTERM/SIGINT, then stop gracefully.

    The database: ``db_url``, else ``$TUNERY_DB_URL``, else Katib's ``DB_NAME``/... variables
    (:func:`katib_db_url`), else the local SQLite file ``.tunery/tunery.db``.

    Raises:
        ValueError: the database URL is malformed.
        StoreUnavailableError: the database cannot be reached.
    """
    from tunery.store import open_store

    url = db_url or os.environ.get("TUNERY_DB_URL") or katib_db_url()
    store = open_store(url)
    try:
        server, bound = create_dbmanager_server(address(host, port), store, tls=tls)
        log.info("DBManager listening on %s%s", address(host, bound), " with TLS" if tls else "")
        serve_forever(server)
    finally:
        store.close()
