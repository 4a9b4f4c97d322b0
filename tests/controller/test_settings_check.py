"""controller.settings_check: algorithm and early-stopping settings checked at their field paths
before an experiment is stored, for every registered algorithm and early stopper."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from controller.settings_check import settings_problems
from earlystop import REGISTRY as STOPPERS
from suggestion.algorithms import REGISTRY as ALGORITHMS
from tunery.experiment import load_experiment

DOCUMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata: {name: settings}
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  maxTrialCount: 4
  parameters:
    - {name: x, parameterType: double, feasibleSpace: {min: "0", max: "1", step: "0.1"}}
    - {name: y, parameterType: double, feasibleSpace: {min: "0", max: "1", step: "0.1"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}, {name: y, reference: y}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec: {template: {spec: {containers: [
        {name: main, command: [train, "${trialParameters.x}", "${trialParameters.y}"]}]}}}
"""


def _experiment(
    algorithm: str,
    settings: list[dict[str, str]] | None = None,
    early_stopping: dict[str, Any] | None = None,
    stepped: bool = True,
) -> Any:
    document = yaml.safe_load(DOCUMENT)
    spec = document["spec"]
    spec["algorithm"] = {"algorithmName": algorithm, "algorithmSettings": settings or []}
    if not stepped:
        for parameter in spec["parameters"]:
            del parameter["feasibleSpace"]["step"]
    if early_stopping is not None:
        spec["earlyStopping"] = early_stopping
    return load_experiment(document)


REQUIRED = {
    "hyperband": [
        {"name": "resource_name", "value": "y"},
        {"name": "r_l", "value": "3"},
    ],
    "pbt": [
        {"name": "suggestion_trial_dir", "value": "/ckpt"},
        {"name": "n_population", "value": "5"},
        {"name": "truncation_threshold", "value": "0.2"},
    ],
}
"""Settings an algorithm cannot do without (Katib requires these for hyperband and pbt)."""


def test_hyperband_settings_and_parallelism_are_checked_at_their_paths() -> None:
    problems = _shown(settings_problems(_experiment("hyperband")))
    assert problems == [
        "spec.algorithm.algorithmName: hyperband: r_l and resource_name must be set."
    ]
    bad_eta = [*REQUIRED["hyperband"], {"name": "eta", "value": "1"}]
    problems = _shown(settings_problems(_experiment("hyperband", bad_eta)))
    assert problems == [
        "spec.algorithm.algorithmSettings[2].value: eta must be an integer >= 2, got 1"
    ]
    wide = [{"name": "resource_name", "value": "y"}, {"name": "r_l", "value": "9"}]
    problems = _shown(settings_problems(_experiment("hyperband", wide)))
    assert problems == [
        "spec.parallelTrialCount: hyperband: parallelTrialCount must be not less than 9."
    ]


def _shown(problems: list[Any]) -> list[str]:
    return [str(p) for p in problems]


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_every_algorithm_accepts_its_defaults_and_names_an_unknown_setting(
    algorithm: str,
) -> None:
    required = REQUIRED.get(algorithm, [])
    assert settings_problems(_experiment(algorithm, required)) == []
    problems = _shown(
        settings_problems(
            _experiment(algorithm, [{"name": "no_such_knob", "value": "1"}, *required])
        )
    )
    assert len(problems) == 1
    assert problems[0].startswith(
        "spec.algorithm.algorithmSettings[0].name: unknown setting no_such_knob for algorithm "
        f"{algorithm}"
    )


def test_pbt_without_katibs_required_settings_names_them() -> None:
    assert _shown(settings_problems(_experiment("pbt"))) == [
        "spec.algorithm.algorithmName: pbt: Required params missing: suggestion_trial_dir, "
        "n_population, truncation_threshold"
    ]


def test_a_typo_gets_the_closest_name_and_a_bad_value_its_own_path() -> None:
    problems = settings_problems(
        _experiment(
            "tpe",
            [
                {"name": "n_startup_trials", "value": "5"},
                {"name": "gama", "value": "0.3"},
                {"name": "prior_weight", "value": "heavy"},
            ],
        )
    )
    assert _shown(problems) == [
        "spec.algorithm.algorithmSettings[1].name: unknown setting gama for algorithm tpe; "
        'did you mean "gamma"?',
        "spec.algorithm.algorithmSettings[2].value: failed to validate prior_weight(heavy): "
        "could not convert string to float: 'heavy'",
    ]


def test_settings_that_only_conflict_together_are_reported_on_the_list() -> None:
    problems = settings_problems(
        _experiment(
            "tpe",
            [
                {"name": "n_EI_candidates", "value": "10"},
                {"name": "n_ei_candidates", "value": "20"},
            ],
        )
    )
    assert [p.path for p in problems] == ["spec.algorithm.algorithmSettings"]
    assert "disagree" in problems[0].message


def test_a_space_the_algorithm_cannot_search_is_reported_on_the_algorithm() -> None:
    [problem] = settings_problems(_experiment("grid", stepped=False))
    assert problem.path == "spec.algorithm.algorithmName"
    assert problem.message.startswith("grid: ") and "step" in problem.message


@pytest.mark.parametrize("stopper", sorted(STOPPERS))
def test_early_stopping_settings_are_checked_at_their_paths(stopper: str) -> None:
    early = {"algorithmName": stopper, "algorithmSettings": [{"name": "strat_step", "value": "2"}]}
    [problem] = settings_problems(_experiment("random", early_stopping=early))
    assert problem.path == "spec.earlyStopping.algorithmSettings[0].name"
    assert "unknown setting strat_step" in problem.message


def test_algorithms_served_elsewhere_are_left_to_their_server() -> None:
    experiment = _experiment("tpe", [{"name": "custom_knob", "value": "1"}])
    assert settings_problems(experiment, served_elsewhere={"tpe"}) == []
