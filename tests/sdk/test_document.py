"""tunery.sdk.document: the Experiment document tune() builds, for both backends."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tunery import search
from tunery.experiment import load_experiment
from tunery.pythonpath import child_pythonpath, tunery_import_root
from tunery.sdk import document as documents
from tunery.sdk.errors import InvalidArgumentError, ObjectiveSerializationError

PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")


def _spec(**overrides: Any) -> documents.TuneSpec:
    values: dict[str, Any] = {
        "name": "doc-test",
        "parameters": {
            "lr": search.double(1e-4, 1e-1, distribution="logUniform"),
            "units": search.int(16, 128, step=16),
            "opt": search.categorical(["sgd", "adam"]),
            "batch": search.discrete([32, 64]),
            "epochs": 5,
        },
        "objective_metric_name": "loss",
        "objective_type": "minimize",
    }
    values.update(overrides)
    return documents.TuneSpec(**values)


def _local(spec: documents.TuneSpec, tmp_path: Path) -> dict[str, Any]:
    return documents.build_document(spec, documents.local_container(spec, tmp_path / "trial.json"))


def test_the_local_document_is_a_valid_katib_experiment(tmp_path: Path) -> None:
    spec = _spec(
        objective_goal=0.01,
        additional_metric_names=("acc",),
        algorithm_name="random",
        algorithm_settings={"random_state": 7},
        early_stopping="medianstop",
        max_trial_count=12,
        parallel_trial_count=2,
        max_failed_trial_count=3,
    )
    document = _local(spec, tmp_path)
    experiment = load_experiment(document)  # raises on any problem
    body = document["spec"]
    assert document["metadata"] == {"name": "doc-test"}
    assert body["objective"] == {
        "type": "minimize",
        "objectiveMetricName": "loss",
        "goal": 0.01,
        "additionalMetricNames": ["acc"],
    }
    assert body["algorithm"] == {
        "algorithmName": "random",
        "algorithmSettings": [{"name": "random_state", "value": "7"}],
    }
    assert body["earlyStopping"] == {"algorithmName": "medianstop"}
    assert (body["maxTrialCount"], body["parallelTrialCount"], body["maxFailedTrialCount"]) == (
        12,
        2,
        3,
    )
    assert [p["name"] for p in body["parameters"]] == ["lr", "units", "opt", "batch"]
    assert experiment.search_space().names == ("lr", "units", "opt", "batch")
    template = body["trialTemplate"]
    assert template["trialParameters"] == [
        {"name": n, "reference": n} for n in ("lr", "units", "opt", "batch")
    ]
    container = template["trialSpec"]["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == template["primaryContainerName"] == "training-container"
    assert container["command"][1:3] == ["-m", "tunery.sdk.trial_entry"]
    assert container["args"] == [
        "lr=${trialParameters.lr}",
        "units=${trialParameters.units}",
        "opt=${trialParameters.opt}",
        "batch=${trialParameters.batch}",
    ]
    assert body["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}


def test_budgets_left_out_are_not_written(tmp_path: Path) -> None:
    body = _local(_spec(), tmp_path)["spec"]
    assert not {"maxTrialCount", "parallelTrialCount", "maxFailedTrialCount", "earlyStopping"} & (
        set(body)
    )
    assert "goal" not in body["objective"] and "algorithmSettings" not in body["algorithm"]


def test_resources_map_gpus_to_nvidia_limits(tmp_path: Path) -> None:
    spec = _spec(resources_per_trial={"gpu": 2, "cpu": 4, "memory": "8Gi"})
    container = _local(spec, tmp_path)["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"][
        "spec"
    ]["containers"][0]
    assert container["resources"] == {
        "limits": {"nvidia.com/gpu": 2, "cpu": 4, "memory": "8Gi"},
        "requests": {"cpu": 4, "memory": "8Gi"},
    }
    assert documents.resources({"amd.com/gpu": 1}) == {"limits": {"amd.com/gpu": 1}}


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"gpus": 1}, "unknown resource 'gpus'"),
        ({"gpu": 1.5}, "must be a non-negative integer"),
        ({"gpu": -1}, "must be a non-negative integer"),
        ({"memory": ""}, "is not a quantity"),
        ({"cpu": True}, "is not a quantity"),
        (["gpu"], "must be a dict"),
    ],
)
def test_bad_resources_are_named(resources: Any, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        documents.resources(resources)


def test_early_stopping_forms() -> None:
    assert documents.early_stopping_spec(None) is None
    expected = {
        "algorithmName": "medianstop",
        "algorithmSettings": [
            {"name": "min_trials_required", "value": "2"},
            {"name": "start_step", "value": "3"},
        ],
    }
    assert (
        documents.early_stopping_spec(
            {
                "algorithm_name": "medianstop",
                "algorithm_settings": {"min_trials_required": 2, "start_step": 3},
            }
        )
        == expected
    )
    assert documents.early_stopping_spec(expected) == expected  # Katib's own form
    with pytest.raises(InvalidArgumentError, match="unknown key"):
        documents.early_stopping_spec({"name": "medianstop"})
    with pytest.raises(InvalidArgumentError, match="algorithm_name is required"):
        documents.early_stopping_spec({"algorithm_settings": {}})
    with pytest.raises(InvalidArgumentError, match="algorithm name"):
        documents.early_stopping_spec(3)  # type: ignore[arg-type]


def test_algorithm_settings_accept_dicts_and_katib_lists(tmp_path: Path) -> None:
    listed = [{"name": "n_startup_trials", "value": 5}, {"name": "flag", "value": True}]
    body = _local(_spec(algorithm_settings=listed), tmp_path)["spec"]
    assert body["algorithm"]["algorithmSettings"] == [
        {"name": "n_startup_trials", "value": "5"},
        {"name": "flag", "value": "true"},
    ]
    with pytest.raises(InvalidArgumentError, match="algorithm_settings"):
        _local(_spec(algorithm_settings="n=5"), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"parameters": {"epochs": 3}}, "nothing to tune"),
        ({"parameters": [search.int(1, 2)]}, "must be a dict"),
        ({"parameters": {"": search.int(1, 2)}}, "key '' must be a non-empty string"),
        ({"parameters": {"a}": search.int(1, 2)}}, "must not contain"),
        ({"parameters": {"a=b": search.int(1, 2)}}, "must not contain"),
        ({"objective_type": "max"}, "objective_type must be 'minimize' or 'maximize'"),
        ({"objective_metric_name": "val/loss"}, "objective_metric_name: 'val/loss'"),
        ({"additional_metric_names": ("acc", "x y")}, "additional_metric_names: 'x y'"),
        ({"additional_metric_names": "acc"}, "got the string 'acc'"),
        ({"additional_metric_names": ("loss",)}, "must not repeat the objective metric"),
    ],
)
def test_check_names_the_bad_argument(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        documents.check(_spec(**overrides))


def test_generated_names_are_valid_katib_names() -> None:
    def My_Objective__Function_With_A_Very_Long_Name_Indeed(p: dict) -> float:
        return 0.0

    for objective in (My_Objective__Function_With_A_Very_Long_Name_Indeed, lambda p: 0, print):
        name = documents.experiment_name(objective, None)
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name), name
        assert len(name) <= documents.MAX_NAME_LENGTH
        assert name.startswith("tune-")
    assert documents.experiment_name(print, "mine") == "mine"
    names = {documents.experiment_name(print, None) for _ in range(20)}
    assert len(names) == 20


def test_the_local_payload_is_written_beside_the_spec(tmp_path: Path) -> None:
    spec_path, pickle_path = documents.write_local_payload(_spec(), lambda p: 1.0, tmp_path)
    entry = json.loads(spec_path.read_text())
    assert entry["objective"] == {"kind": "pickle", "path": str(pickle_path)}
    assert entry["order"] == ["lr", "units", "opt", "batch", "epochs"]
    assert entry["parameters"][3] == {"name": "batch", "type": "discrete", "values": [32, 64]}
    assert entry["sys_path"] and all(entry["sys_path"])
    assert not list(tmp_path.glob(".*.tmp"))


def test_an_unpicklable_objective_is_a_clear_error(tmp_path: Path) -> None:
    import threading

    lock = threading.Lock()
    with pytest.raises(ObjectiveSerializationError, match="cannot pickle the objective"):
        documents.write_local_payload(_spec(), lambda p: lock.locked(), tmp_path)


def module_level(p: dict) -> float:
    import math

    return math.log(p["lr"])


def uses_a_global(p: dict) -> float:
    return float(json.dumps(p["lr"]))


def test_only_self_contained_functions_travel_as_source() -> None:
    source, name = documents.objective_source(module_level) or ("", "")
    assert name == "module_level" and source.startswith("def module_level(")
    assert documents.objective_source(uses_a_global) is None  # needs the module's `json`
    assert documents.objective_source(lambda p: 1) is None
    assert documents.objective_source(print) is None
    x = 1
    assert documents.objective_source(lambda p: p["lr"] + x) is None


def test_the_kubernetes_container_is_katib_shaped() -> None:
    spec = _spec(
        resources_per_trial={"gpu": 1},
        env_per_trial={"A": "1"},
        trial_active_deadline_seconds=600,
        retain_trials=True,
        namespace="team",
    )
    container, mode = documents.kubernetes_container(
        spec,
        module_level,
        base_image="ghcr.io/me/trainer:1",
        packages_to_install=["scikit-learn==1.5"],
        pip_index_urls=["https://a", "https://b"],
    )
    document = documents.build_document(spec, container)
    load_experiment(document)
    assert mode == "source"
    assert document["metadata"] == {"name": "doc-test", "namespace": "team"}
    template = document["spec"]["trialTemplate"]
    assert template["retain"] is True
    job = template["trialSpec"]
    assert job["spec"]["activeDeadlineSeconds"] == 600
    pod = job["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false"}
    assert pod["spec"]["restartPolicy"] == "Never"
    assert container["image"] == "ghcr.io/me/trainer:1"
    assert container["command"][:3] == ["python", "-u", "-c"]
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": 1}}
    entry = json.loads(container["args"][0])
    assert entry["packages"] == ["scikit-learn==1.5"]
    assert entry["pip_index_urls"] == ["https://a", "https://b"]
    assert entry["constants"] == {"epochs": 5}
    assert "sys_path" not in entry  # local paths mean nothing in a pod
    assert set(PLACEHOLDER.findall(json.dumps(document))) == {"lr", "units", "opt", "batch"}


def test_constants_that_json_cannot_carry_force_pickling() -> None:
    spec = _spec(parameters={"lr": search.double(0.1, 1), "shape": (1, 2)})
    _, mode = documents.kubernetes_container(spec, module_level, base_image="python")
    assert mode == "pickle"


def test_child_pythonpath_points_at_this_checkout() -> None:
    root = tunery_import_root()
    assert (root / "tunery" / "__init__.py").exists()
    path = child_pythonpath({"PYTHONPATH": "/x:/y"})
    if path is not None:  # a checkout, not an installed package
        assert path.split(":") == [str(root), "/x", "/y"]
