"""suggestion.service in-process: the controller's API, caching, restart-safety, threads."""

from __future__ import annotations

import logging
import random
import sys
import threading
import types
from collections.abc import Iterator

import pytest

import suggestion.convert
from suggestion.algorithms import REGISTRY, get_algorithm
from suggestion.algorithms._encoding import SpaceEncoding
from suggestion.algorithms.base import (
    Algorithm,
    InvalidRequestError,
    InvalidSettingsError,
    SpaceExhaustedError,
    SuggestRequest,
    UnknownAlgorithmError,
    UnsupportedSpaceError,
)
from suggestion.service import SuggestionService
from tunery.api import api_pb2
from tunery.space import Assignment

from .helpers import add_trial, experiment, objective_value, wire

UNSTAGED = sorted(a for a in REGISTRY if "staged" not in get_algorithm(a).capabilities)
"""Algorithms that always answer (staged ones, e.g. hyperband, wait for rungs to finish;
tests/suggestion/test_hyperband.py drives them)."""

STEPPED = (
    ("lr", api_pb2.DOUBLE, {"min": "0.1", "max": "0.9", "step": "0.2"}),
    ("layers", api_pb2.INT, {"min": "1", "max": "6"}),
    ("width", api_pb2.INT, {"min": "8", "max": "64", "step": "8"}),
    ("opt", api_pb2.CATEGORICAL, {"list": ["sgd", "adam"]}),
)
"""A space every registered algorithm searches (grid needs steps, cmaes two numbers)."""


def request_for(exp: api_pb2.Experiment, count: int = 1) -> api_pb2.GetSuggestionsRequest:
    return api_pb2.GetSuggestionsRequest(experiment=exp, current_request_number=count)


def loop(
    service: SuggestionService, req: api_pb2.GetSuggestionsRequest, steps: int, *, wire_path: bool
) -> api_pb2.GetSuggestionsRequest:
    """A controller: ask, run (complete every other trial later), repeat."""
    for _ in range(steps):
        reply = (
            service.suggest_wire(req.SerializeToString()) if wire_path else service.suggest(req)
        )
        for pa in reply.parameter_assignments:
            add_trial(req, pa.assignments, api_pb2.TrialStatus.RUNNING)
        for trial in req.trials:
            if trial.status.condition == api_pb2.TrialStatus.RUNNING and random.random() < 0.6:
                trial.status.condition = api_pb2.TrialStatus.SUCCEEDED
                values = {a.name: a.value for a in trial.spec.parameter_assignments.assignments}
                trial.status.observation.metrics.add(name="loss", value=objective_value(values))
    return req


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    state = random.getstate()
    random.seed(0)
    yield
    random.setstate(state)


def test_returns_exactly_the_requested_count() -> None:
    service = SuggestionService()
    for count in (1, 3, 8):
        reply = service.suggest(request_for(experiment("random"), count))
        assert len(reply.parameter_assignments) == count
        for pa in reply.parameter_assignments:
            values = wire(pa)
            assert set(values) == {"lr", "layers", "opt"}
            assert values["layers"].isdigit()
    assert len(service.suggest(request_for(experiment("random"), 0)).parameter_assignments) == 0
    with pytest.raises(InvalidRequestError, match="current_request_number -1"):
        service.suggest(request_for(experiment("random"), -1))
    with pytest.raises(InvalidRequestError, match="above the limit of 10000"):
        service.suggest(request_for(experiment("random"), 10_001))


@pytest.mark.parametrize("algorithm", UNSTAGED)
def test_wire_path_equals_proto_path_and_a_restarted_service(algorithm: str) -> None:
    exp = experiment(algorithm, params=STEPPED, settings={"random_state": "3"})
    warm_wire, warm_proto = SuggestionService(), SuggestionService()
    req = request_for(exp, 2)
    for step in range(12):
        data = req.SerializeToString()
        a = warm_wire.suggest_wire(data)
        assert warm_proto.suggest(req) == a
        assert SuggestionService().suggest_wire(data) == a  # a restarted server
        for pa in a.parameter_assignments:
            add_trial(req, pa.assignments, api_pb2.TrialStatus.RUNNING)
        # the controller finishes some trials, in any order
        for trial in req.trials:
            if trial.status.condition == api_pb2.TrialStatus.RUNNING and random.random() < 0.5:
                trial.status.condition = random.choice(
                    [api_pb2.TrialStatus.SUCCEEDED] * 3 + [api_pb2.TrialStatus.FAILED]
                )
                trial.status.observation.metrics.add(name="loss", value=str(step))
        if step == 6:  # trials disappear and the order changes
            del req.trials[1]
            first, third = api_pb2.Trial(), api_pb2.Trial()
            first.CopyFrom(req.trials[0])
            third.CopyFrom(req.trials[2])
            req.trials[0].CopyFrom(third)
            req.trials[2].CopyFrom(first)


def test_unchanged_trials_are_not_converted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"convert": 0, "encode": 0}
    real_convert = suggestion.convert.trial_from_proto
    real_encode = SpaceEncoding.encode

    def convert(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["convert"] += 1
        return real_convert(*args, **kwargs)

    def encode(self, assignment):  # type: ignore[no-untyped-def]
        calls["encode"] += 1
        return real_encode(self, assignment)

    monkeypatch.setattr(suggestion.convert, "trial_from_proto", convert)
    monkeypatch.setattr(SpaceEncoding, "encode", encode)
    for algorithm in ("random", "tpe"):
        service = SuggestionService()
        exp = experiment(
            algorithm,
            name=algorithm,
            params=(*STEPPED[:3], ("opt", api_pb2.CATEGORICAL, {"list": ["wire", "proto"]})),
        )
        req = loop(service, request_for(exp), 60, wire_path=True)
        service.suggest(req)  # the service has seen the history as it is now
        for path in ("wire", "proto"):
            calls.update(convert=0, encode=0)
            for i in range(3):
                values = {"lr": "0.1", "layers": str(i + 1), "width": "8", "opt": path}
                add_trial(req, values, value="1.5")
                service.suggest_wire(req.SerializeToString()) if path == "wire" else (
                    service.suggest(req)
                )
            assert calls["convert"] == 3, algorithm  # only the new trials
            assert calls["encode"] <= 3 * 2, algorithm  # new trials, and tpe's liar picks


def test_experiments_are_cached_per_spec_and_bounded() -> None:
    service = SuggestionService(max_experiments=2)
    for name in ("a", "b", "c"):
        service.suggest(request_for(experiment("random", name=name)))
    assert service.cached_experiments() == ["b", "c"]
    service.suggest_wire(request_for(experiment("random", name="b")).SerializeToString())
    assert service.cached_experiments() == ["c", "b"]
    # the same name with another spec is another experiment: grid now answers
    grid = experiment("grid", name="b", params=STEPPED)
    first = wire(service.suggest(request_for(grid)).parameter_assignments[0])
    assert first == {"lr": "0.1", "layers": "1", "width": "8", "opt": "sgd"}
    with pytest.raises(ValueError, match="max_experiments"):
        SuggestionService(max_experiments=0)


def test_unset_random_state_is_derived_from_the_experiment_name() -> None:
    req = request_for(experiment("tpe", name="stable"), 3)
    assert SuggestionService().suggest(req) == SuggestionService().suggest(req)
    other = request_for(experiment("tpe", name="other"), 3)
    assert SuggestionService().suggest(other) != SuggestionService().suggest(req)


class Exploding(Algorithm):
    name = "exploding"
    calls = 0

    def suggest(self, request: SuggestRequest) -> list[Assignment]:
        Exploding.calls += 1
        if Exploding.calls == 1:
            raise RuntimeError("boom")
        return [{p.name: p.grid_values()[0] for p in request.space}] * request.count


@pytest.fixture
def exploding(monkeypatch: pytest.MonkeyPatch) -> str:
    module = types.ModuleType("tunery_test_exploding")
    module.Exploding = Exploding  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tunery_test_exploding", module)
    monkeypatch.setitem(REGISTRY, "exploding", "tunery_test_exploding:Exploding")
    Exploding.calls = 0
    return "exploding"


def test_a_crashing_algorithm_is_dropped_and_rebuilt(exploding: str) -> None:
    service = SuggestionService()
    req = request_for(experiment(exploding, params=STEPPED), 1)
    with pytest.raises(RuntimeError, match="boom"):
        service.suggest(req)
    assert service.cached_experiments() == []
    assert len(service.suggest(req).parameter_assignments) == 1
    with pytest.raises(
        RuntimeError,
        match="returned 2 assignments for 2 requested, one outside the search space, or dup",
    ):
        service.suggest(request_for(experiment(exploding, params=STEPPED), 2))  # duplicates


@pytest.mark.parametrize(
    ("exp", "error", "message"),
    [
        (experiment("nope"), UnknownAlgorithmError, "unknown algorithm name nope; available"),
        (
            experiment("tpe", settings={"foo": "1"}),
            InvalidSettingsError,
            "unknown setting foo for algorithm tpe",
        ),
        (
            experiment("tpe", settings={"gamma": "2"}),
            InvalidSettingsError,
            "gamma should be in the range of (0, 1)",
        ),
        (
            experiment("random", settings={"random_state": "-3"}),
            InvalidSettingsError,
            "random_state should be great or equal than zero",
        ),
        (
            experiment("grid", params=STEPPED, max_trial_count=481),
            InvalidSettingsError,
            "Max Trial Count: 481 > all possible search combinations: 480",
        ),
        (experiment("grid"), UnsupportedSpaceError, "Param lr step is nil"),
        (
            experiment("cmaes", params=(STEPPED[0], STEPPED[3])),
            UnsupportedSpaceError,
            "cmaes only supports two or more dimensional continuous search space.",
        ),
        (
            experiment("random", params=(("x", api_pb2.DOUBLE, {"min": "2", "max": "1"}),)),
            InvalidRequestError,
            "parameter x: min 2.0 must be less than max 1.0",
        ),
    ],
)
def test_validate_rejects_with_a_clear_message(
    exp: api_pb2.Experiment, error: type[Exception], message: str
) -> None:
    service = SuggestionService()
    with pytest.raises(error) as info:
        service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp))
    assert message in str(info.value)


def test_validate_accepts_every_algorithm_with_default_settings() -> None:
    service = SuggestionService()
    for name in REGISTRY:
        if "resource" in get_algorithm(name).capabilities:
            continue  # hyperband requires resource_name and r_l (tests/suggestion/test_hyperband)
        exp = experiment(name, params=STEPPED, max_trial_count=480)
        reply = service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=exp))
        assert reply == api_pb2.ValidateAlgorithmSettingsReply()


def test_exhausted_space_is_reported() -> None:
    params = (
        ("n", api_pb2.INT, {"min": "1", "max": "2"}),
        ("m", api_pb2.INT, {"min": "1", "max": "2"}),
    )
    service = SuggestionService()
    req = request_for(experiment("tpe", params=params), 3)
    loop(service, req, 1, wire_path=False)
    with pytest.raises(SpaceExhaustedError, match="exhausted"):
        service.suggest(req)


def test_concurrent_requests_for_two_experiments_and_for_one() -> None:
    service = SuggestionService()
    errors: list[BaseException] = []
    results: dict[str, api_pb2.GetSuggestionsRequest] = {}

    def drive(name: str, algorithm: str) -> None:
        try:
            req = request_for(experiment(algorithm, name=name, params=STEPPED), 2)
            results[name] = loop(service, req, 15, wire_path=name.endswith("w"))
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=drive, args=(f"e{i}{'w' if i % 2 else ''}", algo))
        for i, algo in enumerate(["tpe", "random", "cmaes", "multivariate-tpe"])
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    for req in results.values():
        keys = [tuple(wire_values(t)) for t in req.trials]
        assert len(keys) == len(set(keys)) == 30

    # the same request from many threads: one answer
    req = results["e0"]
    answers: list[api_pb2.GetSuggestionsReply] = []
    same = [
        threading.Thread(target=lambda: answers.append(service.suggest(req))) for _ in range(6)
    ]
    for t in same:
        t.start()
    for t in same:
        t.join(timeout=60)
    assert len(answers) == 6 and all(a == answers[0] for a in answers)


def wire_values(trial: api_pb2.Trial) -> list[str]:
    return [a.value for a in trial.spec.parameter_assignments.assignments]


def test_one_debug_line_per_request(caplog: pytest.LogCaptureFixture) -> None:
    service = SuggestionService()
    caplog.set_level(logging.DEBUG, logger="suggestion.service")
    req = request_for(experiment("random", name="logged"), 2)
    add_trial(req, {"lr": "0.01", "layers": "2", "opt": "sgd"}, value="1")
    add_trial(req, {"lr": "0.02", "layers": "2", "opt": "sgd"}, api_pb2.TrialStatus.RUNNING)
    service.suggest_wire(req.SerializeToString())
    lines = [r.getMessage() for r in caplog.records if r.name == "suggestion.service"]
    assert len(lines) == 1
    assert lines[0].startswith(
        "GetSuggestions experiment=logged algorithm=random trials=2 completed=1 pending=1 count=2"
    )
