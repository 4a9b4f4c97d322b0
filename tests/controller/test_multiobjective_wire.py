"""Multi-objective over Katib's gRPC API: the controller's request carries the further
objectives in the ``tunery.io/objectives`` algorithm setting and their values as additional
metrics; the Suggestion service decodes both; a Katib-style request without the setting is
single-objective as before; the status gets the ``paretoFront`` extension and goals count per
objective."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from controller import status
from controller.protos import experiment_proto, suggestions_request
from controller.reconcile import objective_from_spec
from controller.trial_view import TrialView
from suggestion.algorithms.base import InvalidRequestError, UnsupportedSpaceError
from suggestion.convert import experiment_from_proto, trial_from_proto
from suggestion.service import SuggestionService
from tests.tunery.test_experiment import minimal
from tunery.experiment import load_experiment
from tunery.store.base import TrialRecord
from tunery.trials import OBJECTIVES_SETTING, TrialCondition

OBJECTIVES = [
    {"name": "loss", "type": "minimize", "goal": 0.2},
    {"name": "acc", "type": "maximize", "goal": 0.9},
]


def spec(algorithm: str = "motpe") -> dict[str, Any]:
    doc = minimal(
        objective={"objectives": OBJECTIVES},
        algorithm={
            "algorithmName": algorithm,
            "algorithmSettings": [{"name": "random_state", "value": "3"}],
        },
    )
    return load_experiment(doc).to_document()["spec"]


def record(
    i: int, loss: float | None, acc: float | None, condition=TrialCondition.SUCCEEDED
) -> TrialRecord:
    metrics = [
        {"name": n, "min": str(v), "max": str(v), "latest": str(v)}
        for n, v in (("loss", loss), ("acc", acc))
        if v is not None
    ]
    return TrialRecord(
        f"t{i}",
        "minimal",
        {"lr": str(0.1 + i / 100)},
        condition,
        observation={"metrics": metrics},
    )


def test_the_request_carries_the_objectives_setting() -> None:
    proto = experiment_proto("minimal", spec())
    settings = {s.name: s.value for s in proto.spec.algorithm.algorithm_settings}
    assert json.loads(settings[OBJECTIVES_SETTING]) == [
        {"name": "acc", "type": "maximize", "goal": 0.9}
    ]
    assert list(proto.spec.objective.additional_metric_names) == ["acc"]
    view = experiment_from_proto(proto)
    assert view.objective.objective_metric_names == ("loss", "acc")
    assert OBJECTIVES_SETTING not in view.settings  # the algorithm never sees it as a setting
    single = experiment_proto("minimal", load_experiment(minimal()).to_document()["spec"])
    assert OBJECTIVES_SETTING not in {s.name for s in single.spec.algorithm.algorithm_settings}


def test_trial_values_come_from_the_observation() -> None:
    proto = suggestions_request("minimal", spec(), [record(0, 0.5, 0.7), record(1, 0.4, None)], 1)
    view = experiment_from_proto(proto.experiment)
    names = view.objective.objective_metric_names
    first = trial_from_proto(proto.trials[0], view.space, "loss", objective_metrics=names)
    second = trial_from_proto(proto.trials[1], view.space, "loss", objective_metrics=names)
    assert first.values == (0.5, 0.7)
    assert second.value == 0.4 and second.values is None  # acc missing: not multi-complete


def test_the_service_hands_the_algorithm_every_objective(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from suggestion.algorithms.motpe import Motpe

    seen = []
    original = Motpe.suggest

    def spy(self: Motpe, request: Any) -> Any:
        seen.append(request)
        return original(self, request)

    monkeypatch.setattr(Motpe, "suggest", spy)
    service = SuggestionService()
    trials = [record(i, 0.5 - i / 100, 0.5 + i / 50) for i in range(12)]
    reply = service.suggest(suggestions_request("minimal", spec(), trials, 3))
    assert len(reply.parameter_assignments) == 3
    (request,) = seen
    assert request.objective.objective_metric_names == ("loss", "acc")
    assert [t.values for t in request.trials] == [(0.5 - i / 100, 0.5 + i / 50) for i in range(12)]


def test_single_objective_algorithms_are_refused_by_validate() -> None:
    service = SuggestionService()
    request = suggestions_request("minimal", spec("tpe"), [], 1)
    from tunery.api import api_pb2

    with pytest.raises(UnsupportedSpaceError, match="multi-objective algorithm"):
        service.validate(api_pb2.ValidateAlgorithmSettingsRequest(experiment=request.experiment))


def test_a_bad_objectives_setting_is_an_invalid_request() -> None:
    proto = experiment_proto("minimal", spec())
    for s in proto.spec.algorithm.algorithm_settings:
        if s.name == OBJECTIVES_SETTING:
            s.value = '[{"name": "loss", "type": "minimize"}]'
    with pytest.raises(InvalidRequestError, match="repeats the objective metric 'loss'"):
        experiment_from_proto(proto)


def test_status_lists_the_pareto_front_and_goals_count_per_objective() -> None:
    objective = objective_from_spec(spec())
    trials = [
        record(0, 0.5, 0.7),
        record(1, 0.3, 0.6),  # on the front (best loss)
        record(2, 0.6, 0.8),  # on the front (best acc)
        record(3, 0.55, 0.65),  # dominated by t0
        record(4, 0.1, 0.99, TrialCondition.FAILED),  # Failed: never on the front
    ]
    doc = status.build_status({}, TrialView.of(trials, objective), None, dt.datetime.now(dt.UTC))
    assert doc["currentOptimalTrial"]["bestTrialName"] == "t1"  # Katib's: the first objective
    assert doc["paretoFrontSize"] == 3
    front = doc["paretoFront"]
    assert [e["trialName"] for e in front] == ["t1", "t0", "t2"]  # by loss
    assert front[0]["values"] == [{"name": "loss", "value": 0.3}, {"name": "acc", "value": 0.6}]
    assert not status.multi_goal_reached(trials, objective)  # t4 reached both, but Failed
    assert status.multi_goal_reached([*trials, record(5, 0.2, 0.95)], objective)
    assert not status.multi_goal_reached([record(6, 0.1, 0.5), record(7, 0.5, 0.95)], objective)
    counts = TrialView.of(trials, objective).counts()
    assert (
        status.decide_condition(counts, 0.1, objective, None, None, goal_met=False)[0] == "Running"
    )
    assert status.decide_condition(counts, 0.9, objective, None, None, goal_met=True)[1] == (
        "ExperimentGoalReached"
    )
