"""The ``api.v1.beta1.EarlyStopping`` servicer: Katib's wire form of early stopping.

Served by ``earlystop.server`` (``tunery serve earlystop``); Katib's suggestion controller and
metrics-collector sidecar, or tunery's gRPC client, call it.

- ``GetEarlyStoppingRules`` returns, once enough completed (Succeeded; for asha also
  EarlyStopped: the stopper's ``compared_conditions``) trials reached
  ``start_step``, the rule ``{objective metric, current median threshold, GREATER when
  minimising / LESS when maximising, start_step}``, else no rule. The wire form can carry only
  one threshold per rule, checked once by a Katib sidecar at the ``start_step``-th report, so
  it is the median at ``start_step``; the in-process form (``earlystop.inprocess``) applies
  the step-wise rule at every step. Observations come from the service's Store when it has
  one, else from the DBManager the service was configured with (``--db-manager-address``).
  The request's ``db_manager_address`` is ignored: a request never chooses where the service
  connects. Completed trials are cached (they never change), so a request with N old trials
  and k new ones reads k logs. A completed trial without logs is skipped.
- ``SetTrialStatus`` marks the trial EarlyStopped (reason ``TrialEarlyStopped``, message
  ``Trial is early stopped``) in the Store, unless it is already terminal.
- ``ValidateEarlyStoppingSettings`` checks the algorithm name and settings (Katib's messages).

Every domain error maps to a gRPC status in :func:`grpc_status`, the one place that does so;
an unexpected error becomes INTERNAL with a message, and the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, TypeVar

import grpc

from earlystop.base import (
    EarlyStopError,
    InvalidRequestError,
    InvalidSettingsError,
    NoStoreError,
    ObservationsUnavailableError,
    StopPolicy,
    StopRule,
    TrialNotFoundError,
    UnknownAlgorithmError,
)
from earlystop.convert import objective_from_proto, rule_to_proto, stopper_from_proto
from earlystop.sources import (
    CurveCache,
    DBManagerObservationSource,
    ObservationSource,
    StoreObservationSource,
    parse_address,
)
from tunery.api import api_pb2, api_pb2_grpc
from tunery.store.base import Store, utcnow
from tunery.store.errors import (
    AmbiguousTrialError,
    NotFoundError,
    StoreError,
    StoreUnavailableError,
)
from tunery.trials import TRIAL_REASONS, Observation, TrialCondition

log = logging.getLogger(__name__)

_WIRE_CONDITIONS = {
    TrialCondition.SUCCEEDED: api_pb2.TrialStatus.SUCCEEDED,
    TrialCondition.EARLY_STOPPED: api_pb2.TrialStatus.EARLYSTOPPED,
}
"""The finished trial conditions a stopper may compare with, as Katib's wire enum."""

EARLY_STOPPED_MESSAGE = "Trial is early stopped"
"""Katib's message on the EarlyStopped condition set by SetTrialStatus."""

_CODES: tuple[tuple[type[BaseException], grpc.StatusCode], ...] = (
    (InvalidSettingsError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownAlgorithmError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (TrialNotFoundError, grpc.StatusCode.NOT_FOUND),
    (NotFoundError, grpc.StatusCode.NOT_FOUND),
    (NoStoreError, grpc.StatusCode.FAILED_PRECONDITION),
    (AmbiguousTrialError, grpc.StatusCode.FAILED_PRECONDITION),
    (ObservationsUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def grpc_status(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status for an error raised while serving a request."""
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code, str(exc)
    if isinstance(exc, EarlyStopError | StoreError):
        return grpc.StatusCode.INTERNAL, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


_Method = TypeVar("_Method", bound=Callable[..., Any])


def _rpc(method: _Method) -> _Method:
    """Run a servicer method, turning any error into its gRPC status (see grpc_status)."""

    @functools.wraps(method)
    def wrapper(self: EarlyStoppingServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            code, message = grpc_status(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method.__name__)
            else:
                log.info("%s: %s: %s", method.__name__, code.name, message)
            context.abort(code, message)

    return wrapper  # type: ignore[return-value]


class EarlyStoppingServicer(api_pb2_grpc.EarlyStoppingServicer):
    """Katib's EarlyStopping service over any registered early stopper.

    Args:
        store: where observations are read and trial statuses written; without one,
            observations come from ``dbmanager_address`` and SetTrialStatus is refused.
        dbmanager_address: ``host:port`` of the DBManager to read observations from when
            there is no store (the requests' own ``db_manager_address`` is ignored).
        dbmanager_timeout: seconds per ``GetObservationLog`` call.
        cache_entries: completed trials' observation logs kept in memory.

    Raises:
        InvalidSettingsError: ``dbmanager_address`` is not ``host:port``.
    """

    def __init__(
        self,
        store: Store | None = None,
        *,
        dbmanager_address: str | None = None,
        dbmanager_timeout: float = 30.0,
        cache_entries: int = 100_000,
    ) -> None:
        self.store = store
        self.curves = CurveCache(cache_entries)
        self._source: ObservationSource | None = None
        if store is not None:
            self._source = StoreObservationSource(store)
        elif dbmanager_address:
            self._source = DBManagerObservationSource(
                parse_address(dbmanager_address), timeout=dbmanager_timeout
            )
        self._lock = threading.Lock()
        self._policies: OrderedDict[str, tuple[Hashable, StopPolicy]] = OrderedDict()
        self._max_policies = 1024

    # -- domain operations (no gRPC) -------------------------------------------------------------

    def rules_for(self, request: api_pb2.GetEarlyStoppingRulesRequest) -> list[StopRule]:
        """The rules for new trials of the request's experiment.

        Raises:
            InvalidRequestError, UnknownAlgorithmError, InvalidSettingsError: bad request.
            ObservationsUnavailableError: the observation logs cannot be read (retryable).
        """
        experiment = request.experiment
        objective = objective_from_proto(experiment.spec.objective)
        stopper = stopper_from_proto(experiment.spec.early_stopping)
        compared = {_WIRE_CONDITIONS[c] for c in stopper.compared_conditions}
        completed: dict[str, str] = {}  # name -> completion time; a repeated trial counts once
        for index, trial in enumerate(request.trials):
            if not trial.name:
                raise InvalidRequestError(f"trials[{index}].name is empty")
            if trial.status.condition in compared:
                completed[trial.name] = trial.status.completion_time
        if not completed:
            return []
        source = self._source
        if source is None:
            raise NoStoreError(
                "this EarlyStopping service has no observation source; start it with a "
                "database URL (tunery serve earlystop --db URL; python -m earlystop --db-url "
                "URL) or a DBManager address (--db-manager-address)"
            )
        key = (
            source.key,
            stopper.name,
            stopper.settings,
            objective.type,
            objective.metric_name,
            frozenset(completed.items()),
        )
        with self._lock:
            cached = self._policies.get(experiment.name)
        if cached is not None and cached[0] == key:
            return cached[1].rules()
        curves = [
            self._curve(source, experiment.name, name, done, objective.metric_name)
            for name, done in completed.items()
        ]
        policy = stopper.prepare(objective, curves)
        with self._lock:
            self._policies[experiment.name] = (key, policy)
            self._policies.move_to_end(experiment.name)
            while len(self._policies) > self._max_policies:
                self._policies.popitem(last=False)
        return policy.rules()

    def set_trial_status(self, trial_name: str) -> TrialCondition:
        """Mark the trial EarlyStopped unless it is already terminal; returns its condition.

        Raises:
            InvalidRequestError: empty name. NoStoreError: the service has no store.
            TrialNotFoundError: no such trial. StoreUnavailableError: retryable.
            AmbiguousTrialError: several namespaces hold a trial of that name.
        """
        if not trial_name:
            raise InvalidRequestError("trial_name is empty")
        if self.store is None:
            raise NoStoreError(
                "SetTrialStatus needs a store; start the EarlyStopping service with a "
                "database URL (tunery serve earlystop --db URL; python -m earlystop --db-url "
                "URL)"
            )
        condition = TrialCondition.EARLY_STOPPED
        try:
            record = self.store.for_trial(trial_name).update_trial(
                trial_name,
                condition=condition,
                reason=TRIAL_REASONS[condition],
                message=EARLY_STOPPED_MESSAGE,
                completion_time=utcnow(),
                expect_condition=(TrialCondition.CREATED, TrialCondition.RUNNING),
            )
        except NotFoundError:
            raise TrialNotFoundError(f"trial {trial_name} not found") from None
        if record.condition is not condition:
            log.info(
                "trial %s is already %s; not marked EarlyStopped", trial_name, record.condition
            )
        return record.condition

    def close(self) -> None:
        """Close the DBManager channel, if any."""
        if self._source is not None:
            self._source.close()

    # -- gRPC methods ----------------------------------------------------------------------------

    @_rpc
    def GetEarlyStoppingRules(
        self, request: api_pb2.GetEarlyStoppingRulesRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetEarlyStoppingRulesReply:
        rules = self.rules_for(request)
        return api_pb2.GetEarlyStoppingRulesReply(
            early_stopping_rules=[rule_to_proto(rule) for rule in rules]
        )

    @_rpc
    def SetTrialStatus(
        self, request: api_pb2.SetTrialStatusRequest, context: grpc.ServicerContext
    ) -> api_pb2.SetTrialStatusReply:
        self.set_trial_status(request.trial_name)
        return api_pb2.SetTrialStatusReply()

    @_rpc
    def ValidateEarlyStoppingSettings(
        self, request: api_pb2.ValidateEarlyStoppingSettingsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ValidateEarlyStoppingSettingsReply:
        stopper_from_proto(request.early_stopping)
        return api_pb2.ValidateEarlyStoppingSettingsReply()

    # -- helpers ---------------------------------------------------------------------------------

    def _curve(
        self,
        source: ObservationSource,
        experiment_name: str,
        trial_name: str,
        completion_time: str,
        metric_name: str,
    ) -> Sequence[Observation]:
        def load() -> tuple[Observation, ...]:
            observations = tuple(source.observations(trial_name, metric_name))
            if not observations:
                log.info(
                    "completed trial %s has no %s logs; it is left out of the median",
                    trial_name,
                    metric_name,
                )
            return observations

        key = (source.key, experiment_name, trial_name, completion_time, metric_name)
        return self.curves.get_or_load(key, load)
