"""tunery's search extensions over Katib's gRPC messages (issue 20 points 2, 3 and 5): the
controller puts conditions and constraints in reserved algorithm settings, the suggestion
service takes them out before the algorithm's settings are parsed, and an experiment without
extensions produces exactly Katib's messages."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from controller import protos
from suggestion.algorithms.base import InvalidRequestError
from suggestion.convert import experiment_from_proto, trial_from_proto
from suggestion.service import SuggestionService
from tunery.api import api_pb2
from tunery.store.base import TrialRecord
from tunery.trials import TrialCondition

PLAIN: dict[str, Any] = {
    "objective": {"type": "minimize", "objectiveMetricName": "loss"},
    "algorithm": {
        "algorithmName": "tpe",
        "algorithmSettings": [{"name": "gamma", "value": "0.3"}],
    },
    "parameters": [
        {
            "name": "opt",
            "parameterType": "categorical",
            "feasibleSpace": {"list": ["sgd", "adam"]},
        },
        {"name": "m", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
    ],
    "parallelTrialCount": 2,
    "maxTrialCount": 10,
}
EXTENDED: dict[str, Any] = {
    **PLAIN,
    "objective": {**PLAIN["objective"], "constraints": ["mem"]},
    "parameters": [
        PLAIN["parameters"][0],
        {**PLAIN["parameters"][1], "condition": {"parameter": "opt", "values": ["sgd"]}},
    ],
}


def test_a_plain_experiment_sends_exactly_katibs_settings() -> None:
    spec = protos.experiment_proto("e", PLAIN).spec
    assert [(s.name, s.value) for s in spec.algorithm.algorithm_settings] == [("gamma", "0.3")]
    assert list(spec.objective.additional_metric_names) == []


def test_extensions_travel_in_reserved_settings_and_additional_metrics() -> None:
    spec = protos.experiment_proto("e", EXTENDED).spec
    settings = {s.name: s.value for s in spec.algorithm.algorithm_settings}
    assert json.loads(settings["tunery.conditions"]) == {
        "m": {"parameter": "opt", "values": ["sgd"]}
    }
    assert json.loads(settings["tunery.constraints"]) == ["mem"]
    assert list(spec.objective.additional_metric_names) == ["mem"]  # collected by Katib too


def test_the_service_applies_them_and_hides_them_from_the_algorithm() -> None:
    view = experiment_from_proto(protos.experiment_proto("e", EXTENDED))
    assert dict(view.settings) == {"gamma": "0.3"}
    assert view.space.is_conditional and view.space["m"].condition is not None
    assert view.objective.constraints == ("mem",)
    # and a whole round trip suggests assignments without the inactive parameter
    service = SuggestionService()
    trials = [
        TrialRecord(
            name=f"t{i}",
            experiment_name="e",
            assignment={"opt": "adam"} if i % 2 else {"opt": "sgd", "m": str(i / 20)},
            condition=TrialCondition.SUCCEEDED,
            observation={
                "metrics": [
                    {"name": n, "min": v, "max": v, "latest": v}
                    for n, v in (("loss", str(i)), ("mem", str(i - 5)))
                ]
            },
        )
        for i in range(12)
    ]
    request = protos.suggestions_request("e", EXTENDED, trials, 3)
    reply = service.suggest(request)
    assert SuggestionService().suggest_wire(request.SerializeToString()) == reply
    for pa in reply.parameter_assignments:
        names = {a.name: a.value for a in pa.assignments}
        assert ("m" in names) == (names["opt"] == "sgd")


def test_trials_carry_their_constraint_values() -> None:
    view = experiment_from_proto(protos.experiment_proto("e", EXTENDED))
    record = TrialRecord(
        name="t",
        experiment_name="e",
        assignment={"opt": "adam"},
        condition=TrialCondition.SUCCEEDED,
        observation={"metrics": [{"name": "loss", "min": "1", "max": "1", "latest": "1"}]},
    )
    trial = trial_from_proto(
        protos.trial_proto(record, EXTENDED["objective"]), view.space, "loss", ("mem",)
    )
    assert trial.value == 1.0 and math.isnan(trial.constraint_values[0])
    assert not trial.is_feasible  # an unreported constraint is never met


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("tunery.conditions", "{", "not valid JSON"),
        ("tunery.conditions", '{"m": {"parameter": "x", "values": ["1"]}}', "'x' is not a"),
        ("tunery.conditions", '{"m": {"parameter": "opt", "values": ["nag"]}}', "'nag'"),
        ("tunery.constraints", '["nope"]', "not additional metrics"),
    ],
)
def test_malformed_extension_settings_are_invalid_requests(
    name: str, value: str, message: str
) -> None:
    experiment = protos.experiment_proto("e", PLAIN)
    experiment.spec.algorithm.algorithm_settings.append(
        api_pb2.AlgorithmSetting(name=name, value=value)
    )
    with pytest.raises(InvalidRequestError, match=message):
        experiment_from_proto(experiment)
