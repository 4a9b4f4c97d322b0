"""The api.v1.beta1.Suggestion service: one shared, stateless-by-contract service.

Two layers:

- :class:`SuggestionService` holds the logic in plain Python, on Katib's protos:
  ``suggest(GetSuggestionsRequest) -> GetSuggestionsReply`` and
  ``validate(ValidateAlgorithmSettingsRequest) -> ValidateAlgorithmSettingsReply``. It raises
  the suggestion package's errors (:mod:`suggestion.algorithms.base`). The controller calls it
  in-process with the same protos it would send over gRPC.
- :class:`SuggestionServicer` is the gRPC face (``suggestion.server`` registers it). It maps
  errors to status codes in one place, :func:`status_for`; an unexpected exception becomes
  INTERNAL with its message and the server keeps serving.

Any number of experiments share one service. Per experiment (keyed by name and a digest of the
spec) it keeps the algorithm instance and a trial-conversion cache in a bounded LRU, so a
request with N known trials and k new ones costs O(k) model work. Nothing else is kept: a
restarted server, or one that never saw the experiment, rebuilds from the request and answers
exactly as the warm one would (algorithms are pure functions of settings, seed and request;
an unset ``random_state`` is derived from the experiment name). Requests for one experiment
are serialised by its lock; different experiments run concurrently.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import grpc

from suggestion import trial_dirs
from suggestion.algorithms import get_algorithm
from suggestion.algorithms.base import (
    Algorithm,
    InvalidRequestError,
    InvalidSettingsError,
    SpaceExhaustedError,
    SuggestionError,
    SuggestRequest,
    UnknownAlgorithmError,
    UnsupportedSpaceError,
    parse_settings,
)
from suggestion.convert import (
    ExperimentView,
    TrialConverter,
    assignments_to_proto,
    experiment_from_proto,
    spec_digest,
)
from suggestion.wire import RequestDecoder, WireFormatError, check_trial_count, experiment_bytes
from tunery.api import api_pb2, api_pb2_grpc
from tunery.trials import TrialResult

log = logging.getLogger(__name__)

MAX_REQUEST_NUMBER = 10_000
"""Most assignments one request may ask for (a guard against a runaway controller)."""

MAX_TRIALS_PER_REQUEST = 100_000
"""Most trials one GetSuggestions may carry; a larger request is refused before its trials
are parsed (converting 100,000 trials from cold takes about 2 s, so the bound keeps any
request well within a typical deadline)."""

DEFAULT_MAX_EXPERIMENTS = 64
"""Experiments whose state the service keeps; the least recently used one is dropped first."""


@dataclass
class _Experiment:
    digest: bytes
    view: ExperimentView
    algorithm: Algorithm
    converter: TrialConverter
    decoder: RequestDecoder
    lock: threading.Lock = field(default_factory=threading.Lock)
    wire_digests: set[bytes] = field(default_factory=set)


class SuggestionService:
    """Suggestions for every experiment, from requests that carry the whole history.

    Args:
        max_experiments: how many experiments' caches to keep (LRU).
    """

    def __init__(
        self,
        *,
        max_experiments: int = DEFAULT_MAX_EXPERIMENTS,
        katib_data_dir: Path | None = None,
    ) -> None:
        if max_experiments < 1:
            raise ValueError("max_experiments must be at least 1")
        self.max_experiments = max_experiments
        self.katib_data_dir = katib_data_dir
        """Where to prepare pbt's checkpoint folders as Katib's service does, for a Katib
        controller (:mod:`suggestion.trial_dirs`); None: tunery's controller does it."""
        self._experiments: OrderedDict[str, _Experiment] = OrderedDict()
        self._by_wire: dict[bytes, _Experiment] = {}
        self._lock = threading.Lock()

    # -- public API ------------------------------------------------------------------------------

    def suggest(self, request: api_pb2.GetSuggestionsRequest) -> api_pb2.GetSuggestionsReply:
        """Exactly ``current_request_number`` new assignments.

        Raises:
            InvalidRequestError, InvalidSettingsError, UnknownAlgorithmError,
            UnsupportedSpaceError: the request cannot be served (not retryable).
            SpaceExhaustedError: a finite space has fewer unused points than requested.
        """
        # One path for every caller: the serialised form lets the experiment's previous
        # request be reused byte for byte (see suggestion.wire), which is exact and O(k).
        return self.suggest_wire(request.SerializeToString())

    def suggest_wire(self, data: bytes) -> api_pb2.GetSuggestionsReply:
        """:meth:`suggest` for a serialised ``GetSuggestionsRequest`` (what gRPC receives).

        Parses only what changed since the experiment's previous request (see
        :mod:`suggestion.wire`).
        """
        started = time.perf_counter()
        try:
            entry = self._entry_for_wire(experiment_bytes(data))

            def decode() -> tuple[list[TrialResult], int]:
                decoded = entry.decoder.decode(data)
                _check_count(decoded.current_request_number)
                return decoded.trials, decoded.current_request_number

            return self._suggest(entry, decode, started)
        except WireFormatError:
            pass  # an unusual layout: parse it all
        try:
            request = api_pb2.GetSuggestionsRequest.FromString(data)
        except Exception as exc:  # protobuf's DecodeError
            raise InvalidRequestError(f"malformed GetSuggestionsRequest: {exc}") from None
        _check_count(request.current_request_number)
        check_trial_count(len(request.trials), MAX_TRIALS_PER_REQUEST)
        parsed = self._entry(request.experiment)
        return self._suggest(
            parsed,
            lambda: (parsed.converter.convert(request.trials), request.current_request_number),
            started,
        )

    def _suggest(
        self,
        entry: _Experiment,
        read: Callable[[], tuple[list[TrialResult], int]],
        started: float,
    ) -> api_pb2.GetSuggestionsReply:
        view = entry.view
        try:
            with entry.lock:
                trials, count = read()
                if count == 0:
                    return api_pb2.GetSuggestionsReply()
                suggest_request = SuggestRequest(
                    space=view.space,
                    objective=view.objective,
                    trials=trials,
                    count=count,
                    experiment_name=view.name,
                    max_trial_count=view.max_trial_count,
                    parallel_trial_count=view.parallel_trial_count,
                )
                suggested = entry.algorithm.suggest_trials(suggest_request)
                state = entry.algorithm.reply_settings(suggest_request)
            assignments = [s.assignment for s in suggested]
        except (SuggestionError, WireFormatError):
            raise
        except BaseException:  # a bug, or the call interrupted (tunery.rpc): drop the state
            self._forget(entry)  # its state may be half-updated
            raise
        repeats = "repeats" in type(entry.algorithm).capabilities
        if (
            len(assignments) != count
            or not all(entry.algorithm.feasible(view.space, a) for a in assignments)
            or (not repeats and len({view.space.key(a) for a in assignments}) != count)
        ):  # a bug in the algorithm: never send it to a controller
            self._forget(entry)
            raise RuntimeError(
                f"algorithm {view.algorithm_name} returned {len(assignments)} assignments "
                f"for {count} requested, one outside the search space, or duplicates"
            )
        if self.katib_data_dir is not None:
            try:
                trial_dirs.prepare(self.katib_data_dir, view.name, view.settings, suggested)
            except OSError as exc:
                raise SuggestionError(f"the trials' checkpoint folders: {exc}") from None
        reply = api_pb2.GetSuggestionsReply(
            parameter_assignments=assignments_to_proto(view.space, assignments, suggested)
        )
        if state:  # Katib's way for a stateful algorithm to keep its state (hyperband)
            reply.algorithm.algorithm_name = view.algorithm_name
            reply.algorithm.algorithm_settings.extend(
                api_pb2.AlgorithmSetting(name=name, value=value) for name, value in state
            )
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "GetSuggestions experiment=%s algorithm=%s trials=%d completed=%d "
                "pending=%d count=%d took=%.2fms",
                view.name,
                view.algorithm_name,
                len(trials),
                sum(t.is_completed_with_value for t in trials),
                sum(t.is_pending for t in trials),
                count,
                (time.perf_counter() - started) * 1000,
            )
        return reply

    def validate(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest
    ) -> api_pb2.ValidateAlgorithmSettingsReply:
        """Check the experiment's algorithm, settings and search space.

        Raises:
            InvalidRequestError, InvalidSettingsError, UnknownAlgorithmError,
            UnsupportedSpaceError: with a message for the user.
        """
        started = time.perf_counter()
        view = experiment_from_proto(request.experiment)
        cls = get_algorithm(view.algorithm_name)
        settings = parse_settings(cls.settings_type, view.settings, view.algorithm_name)
        cls.check_objective(view.objective)
        cls.validate(view.space, view.objective, settings, view.max_trial_count)
        cls.validate_parallelism(settings, view.parallel_trial_count)
        log.debug(
            "ValidateAlgorithmSettings experiment=%s algorithm=%s ok took=%.2fms",
            view.name,
            view.algorithm_name,
            (time.perf_counter() - started) * 1000,
        )
        return api_pb2.ValidateAlgorithmSettingsReply()

    def cached_experiments(self) -> list[str]:
        """Names of the experiments whose state is cached, least recently used first."""
        with self._lock:
            return list(self._experiments)

    # -- cache -----------------------------------------------------------------------------------

    def _entry(self, experiment: api_pb2.Experiment) -> _Experiment:
        digest = spec_digest(experiment)
        name = experiment.name
        with self._lock:
            entry = self._experiments.get(name)
            if entry is not None and entry.digest == digest:
                self._experiments.move_to_end(name)
                return entry
        view = experiment_from_proto(experiment)
        cls = get_algorithm(view.algorithm_name)
        settings = parse_settings(cls.settings_type, view.settings, view.algorithm_name)
        cls.check_objective(view.objective)
        cls.validate(view.space, view.objective, settings)
        converter = TrialConverter(
            view.space,
            view.objective.metric_name,
            view.objective.constraints,
            view.objective.objective_metric_names if view.objective.is_multi else (),
        )
        decoder = RequestDecoder(converter, max_trials=MAX_TRIALS_PER_REQUEST)
        fresh = _Experiment(digest, view, cls(settings), converter, decoder)
        with self._lock:
            entry = self._experiments.get(name)
            if entry is not None and entry.digest == digest:  # another thread built it first
                self._experiments.move_to_end(name)
                return entry
            self._experiments[name] = fresh
            self._experiments.move_to_end(name)
            if entry is not None:
                self._drop_wire(entry)
            while len(self._experiments) > self.max_experiments:
                evicted_name, evicted = self._experiments.popitem(last=False)
                self._drop_wire(evicted)
                log.debug("dropped the cached state of experiment %s (LRU)", evicted_name)
        return fresh

    def _entry_for_wire(self, experiment: bytes) -> _Experiment:
        """The entry of a serialised ``Experiment``, found by its digest without parsing."""
        digest = hashlib.blake2b(experiment, digest_size=16).digest()
        with self._lock:
            entry = self._by_wire.get(digest)
            if entry is not None and self._experiments.get(entry.view.name) is entry:
                self._experiments.move_to_end(entry.view.name)
                return entry
        try:
            parsed = api_pb2.Experiment.FromString(experiment)
        except Exception as exc:  # protobuf's DecodeError
            raise InvalidRequestError(f"malformed experiment: {exc}") from None
        entry = self._entry(parsed)
        with self._lock:
            if self._experiments.get(entry.view.name) is entry:
                entry.wire_digests.add(digest)
                self._by_wire[digest] = entry
        return entry

    def _drop_wire(self, entry: _Experiment) -> None:
        for digest in entry.wire_digests:
            if self._by_wire.get(digest) is entry:
                del self._by_wire[digest]

    def _forget(self, entry: _Experiment) -> None:
        with self._lock:
            if self._experiments.get(entry.view.name) is entry:
                del self._experiments[entry.view.name]
                self._drop_wire(entry)


# -- gRPC ---------------------------------------------------------------------------------------


def status_for(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The one mapping from errors to gRPC status codes and messages."""
    if isinstance(
        exc,
        InvalidSettingsError | UnknownAlgorithmError | UnsupportedSpaceError | InvalidRequestError,
    ):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, SpaceExhaustedError):
        return grpc.StatusCode.OUT_OF_RANGE, str(exc)
    if isinstance(exc, SuggestionError):
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    return grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}"


_Req = TypeVar("_Req")
_Rep = TypeVar("_Rep")


class SuggestionServicer(api_pb2_grpc.SuggestionServicer):
    """gRPC face of :class:`SuggestionService` (``api.v1.beta1.Suggestion``)."""

    def __init__(self, service: SuggestionService | None = None) -> None:
        self.service = service if service is not None else SuggestionService()

    def GetSuggestions(
        self, request: api_pb2.GetSuggestionsRequest, context: grpc.ServicerContext
    ) -> api_pb2.GetSuggestionsReply:
        return self._call("GetSuggestions", self.service.suggest, request, context)

    def get_suggestions_wire(
        self, request: bytes, context: grpc.ServicerContext
    ) -> api_pb2.GetSuggestionsReply:
        """``GetSuggestions`` on the undecoded request (see :func:`add_to_server`)."""
        return self._call("GetSuggestions", self.service.suggest_wire, request, context)

    def ValidateAlgorithmSettings(
        self, request: api_pb2.ValidateAlgorithmSettingsRequest, context: grpc.ServicerContext
    ) -> api_pb2.ValidateAlgorithmSettingsReply:
        return self._call("ValidateAlgorithmSettings", self.service.validate, request, context)

    @staticmethod
    def _call(
        method: str,
        handler: Callable[[_Req], _Rep],
        request: _Req,
        context: grpc.ServicerContext,
    ) -> _Rep:
        try:
            return handler(request)
        except Exception as exc:
            code, message = status_for(exc)
            if code is grpc.StatusCode.INTERNAL:
                log.exception("%s failed", method)
            else:
                log.debug("%s rejected: %s: %s", method, code.name, message)
            context.abort(code, message)
            raise  # unreachable: abort raises


def add_to_server(servicer: SuggestionServicer, server: grpc.Server) -> str:
    """Register ``servicer`` as ``api.v1.beta1.Suggestion``; returns the service name.

    Same wire contract as the generated ``add_SuggestionServicer_to_server``, except that
    ``GetSuggestions`` receives the request undecoded so that only what changed since the
    experiment's previous request is parsed.
    """
    name = api_pb2.DESCRIPTOR.services_by_name["Suggestion"].full_name
    handlers = {
        "GetSuggestions": grpc.unary_unary_rpc_method_handler(
            servicer.get_suggestions_wire,
            request_deserializer=None,
            response_serializer=api_pb2.GetSuggestionsReply.SerializeToString,
        ),
        "ValidateAlgorithmSettings": grpc.unary_unary_rpc_method_handler(
            servicer.ValidateAlgorithmSettings,
            request_deserializer=api_pb2.ValidateAlgorithmSettingsRequest.FromString,
            response_serializer=api_pb2.ValidateAlgorithmSettingsReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    return name


def _check_count(count: int) -> None:
    if count < 0:
        raise InvalidRequestError(f"current_request_number {count} must not be negative")
    if count > MAX_REQUEST_NUMBER:
        raise InvalidRequestError(
            f"current_request_number {count} is above the limit of {MAX_REQUEST_NUMBER} "
            "suggestions per request"
        )
