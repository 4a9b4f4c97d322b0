"""Tests of tunery.experiment: the Katib v1beta1 Experiment model, defaults and validation.

The corpus under ``experiments/`` drives most of it: every file in ``invalid/`` must fail with
the messages its ``# expect:`` lines name, every file in ``valid/`` must load and round-trip.
"""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tunery.experiment import (
    DEFAULT_METRICS_FILE_PATH,
    DEFAULT_TFEVENT_DIR_PATH,
    JOB_FAILURE_CONDITION,
    JOB_SUCCESS_CONDITION,
    KUBEFLOW_JOB_SUCCESS_CONDITION,
    CollectorKind,
    Experiment,
    ExperimentError,
    FieldError,
    FileFormat,
    FileSystemKind,
    ResumePolicy,
    crd_schema,
    load_experiment,
)
from tunery.space import Distribution, ParameterType
from tunery.trials import MetricStrategy, ObjectiveType

CORPUS = Path(__file__).parent / "experiments"
VALID = sorted((CORPUS / "valid").glob("*.yaml"))
INVALID = sorted((CORPUS / "invalid").glob("*.yaml"))

KATIB_ALGORITHMS = (
    "random",
    "tpe",
    "grid",
    "multivariate-tpe",
    "bayesianoptimization",
    "cmaes",
    "sobol",
    "hyperband",
    "pbt",
)
KATIB_EARLY_STOPPING = ("medianstop",)
JARGON = ("pydantic", "Input should", "Value error", "Field required", "Traceback", "ctx")


def load(source: Any) -> Experiment:
    return load_experiment(
        source, algorithm_names=KATIB_ALGORITHMS, early_stopping_names=KATIB_EARLY_STOPPING
    )


def expectations(path: Path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        line.removeprefix("# expect:").strip() for line in lines if line.startswith("# expect:")
    ]


def valid(name: str) -> Experiment:
    return load(CORPUS / "valid" / f"{name}.yaml")


def minimal(**spec_overrides: Any) -> dict[str, Any]:
    """A small valid document; ``spec_overrides`` replace spec fields."""
    doc: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "minimal"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [
                {
                    "name": "lr",
                    "parameterType": "double",
                    "feasibleSpace": {"min": "0.1", "max": "1"},
                }
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "lr", "reference": "lr"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": "t",
                                        "args": ["${trialParameters.lr}"],
                                    }
                                ],
                            }
                        }
                    },
                },
            },
        },
    }
    doc["spec"].update(spec_overrides)
    return doc


# -- the corpus -------------------------------------------------------------------------------


def test_corpus_is_large_enough() -> None:
    assert len(INVALID) >= 45
    assert len(VALID) >= 12
    assert all(expectations(path) for path in INVALID), "every invalid file has # expect: lines"


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid_document_reports_expected_problems(path: Path) -> None:
    with pytest.raises(ExperimentError) as info:
        load(path)
    text = str(info.value)
    for expected in expectations(path):
        assert expected in text, f"{expected!r} not in:\n{text}"
    for word in JARGON:
        assert word not in text
    assert text.splitlines() == [str(e) for e in info.value.errors]
    assert all(isinstance(e, FieldError) and e.message for e in info.value.errors)


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid_document_loads_and_round_trips(path: Path) -> None:
    experiment = load(path)
    document = experiment.to_document()
    assert json.loads(json.dumps(document)) == document
    assert load(document) == experiment
    assert load(experiment.to_yaml()) == experiment
    assert load(document).to_document() == document
    assert document["apiVersion"] == "kubeflow.org/v1beta1" and document["kind"] == "Experiment"
    assert experiment.search_space().names == experiment.parameter_names
    objective = experiment.objective()
    assert objective.metric_names == experiment.metric_names
    assert set(objective.strategies) == set(experiment.metric_names)


def test_sources_yaml_text_path_str_and_mapping_agree(tmp_path: Path) -> None:
    path = CORPUS / "valid" / "random.yaml"
    text = path.read_text(encoding="utf-8")
    from_path = load_experiment(path)
    assert load_experiment(str(path)) == from_path
    assert load_experiment(text) == from_path
    assert load_experiment(yaml.safe_load(text)) == from_path


def test_mapping_source_is_not_modified() -> None:
    doc = minimal()
    before = copy.deepcopy(doc)
    experiment = load_experiment(doc)
    assert doc == before
    experiment.spec.trial_template.trial_spec["kind"] = "Changed"  # type: ignore[index]
    assert doc == before


def test_missing_yaml_file_named_as_such() -> None:
    with pytest.raises(ExperimentError, match=r"^no such file: nowhere/experiment\.yaml$"):
        load_experiment("nowhere/experiment.yaml")


def test_source_of_wrong_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="YAML text, a path or a mapping"):
        load_experiment(42)  # type: ignore[arg-type]


# -- defaults ---------------------------------------------------------------------------------


def test_katib_defaults_are_applied() -> None:
    spec = load_experiment(minimal()).spec
    assert spec.parallel_trial_count == 3
    assert spec.max_trial_count is None and spec.max_failed_trial_count is None
    assert spec.resume_policy is ResumePolicy.NEVER
    assert spec.metrics_collector_spec.kind is CollectorKind.STDOUT
    assert spec.metrics_collector_spec.source is None
    assert spec.parameters is not None
    assert spec.parameters[0].feasible_space.distribution is Distribution.UNIFORM
    assert [(s.name, s.value) for s in spec.objective.metric_strategies] == [("loss", "min")]
    template = spec.trial_template
    assert template.success_condition == JOB_SUCCESS_CONDITION
    assert template.failure_condition == JOB_FAILURE_CONDITION
    assert template.primary_pod_labels is None
    assert template.retain is False


def test_defaults_appear_in_the_document() -> None:
    spec = load_experiment(minimal()).to_document()["spec"]
    assert spec["parallelTrialCount"] == 3
    assert spec["resumePolicy"] == "Never"
    assert spec["metricsCollectorSpec"] == {"collector": {"kind": "StdOut"}}
    assert spec["objective"]["metricStrategies"] == [{"name": "loss", "value": "min"}]
    assert spec["parameters"][0]["feasibleSpace"]["distribution"] == "uniform"
    assert "maxTrialCount" not in spec and "earlyStopping" not in spec


def test_empty_strings_default_like_katib() -> None:
    doc = minimal(resumePolicy="")
    doc["spec"]["parameters"][0]["feasibleSpace"]["distribution"] = ""
    spec = load_experiment(doc).spec
    assert spec.resume_policy is ResumePolicy.NEVER
    assert spec.parameters is not None
    assert spec.parameters[0].feasible_space.distribution is Distribution.UNIFORM


def test_every_additional_metric_gets_the_objective_direction() -> None:
    """Katib's code (not its comment): additional metrics default to min/max, not latest."""
    objective = valid("file-collector-custom-regex").spec.objective
    assert objective.type is ObjectiveType.MAXIMIZE
    assert [(s.name, s.value) for s in objective.metric_strategies] == [
        ("accuracy", MetricStrategy.MAX),
        ("loss", MetricStrategy.MAX),
    ]
    doc = minimal(
        objective={
            "type": "minimize",
            "objectiveMetricName": "loss",
            "additionalMetricNames": ["accuracy", "f1"],
        }
    )
    strategies = load_experiment(doc).objective().strategies
    assert strategies == {"loss": "min", "accuracy": "min", "f1": "min"}


def test_explicit_strategies_are_kept_and_missing_ones_appended() -> None:
    objective = valid("file-collector-json").spec.objective
    assert [(s.name, s.value) for s in objective.metric_strategies] == [
        ("loss", MetricStrategy.LATEST),
        ("accuracy", MetricStrategy.MAX),
    ]


def test_file_collector_defaults() -> None:
    doc = minimal(metricsCollectorSpec={"collector": {"kind": "File"}})
    fsp = load_experiment(doc).spec.metrics_collector_spec.source.file_system_path  # type: ignore[union-attr]
    assert fsp is not None
    assert (fsp.kind, fsp.path, fsp.format) == (
        FileSystemKind.FILE,
        DEFAULT_METRICS_FILE_PATH,
        FileFormat.TEXT,
    )
    custom = valid("file-collector-custom-regex").spec.metrics_collector_spec
    assert custom.source is not None and custom.source.file_system_path is not None
    assert custom.source.file_system_path.format is FileFormat.TEXT
    assert custom.source.file_system_path.path == "/katib/mnist.log"
    assert custom.metrics_formats == (r"{metricName: ([\w|-]+), metricValue: ((-?\d+)(\.\d+)?)}",)


def test_tensorflow_event_defaults() -> None:
    doc = minimal(metricsCollectorSpec={"collector": {"kind": "TensorFlowEvent"}})
    fsp = load_experiment(doc).spec.metrics_collector_spec.source.file_system_path  # type: ignore[union-attr]
    assert fsp is not None
    assert (fsp.kind, fsp.path, fsp.format) == (
        FileSystemKind.DIRECTORY,
        DEFAULT_TFEVENT_DIR_PATH,
        None,
    )


def test_blank_file_system_kind_and_format_read_as_absent() -> None:
    doc = minimal(
        metricsCollectorSpec={
            "collector": {"kind": "TensorFlowEvent"},
            "source": {"fileSystemPath": {"path": "/logs", "kind": "", "format": ""}},
        }
    )
    fsp = load_experiment(doc).spec.metrics_collector_spec.source.file_system_path  # type: ignore[union-attr]
    assert fsp is not None and (fsp.kind, fsp.format) == (FileSystemKind.DIRECTORY, None)


def test_prometheus_defaults() -> None:
    source = valid("prometheus").spec.metrics_collector_spec.source
    assert source is not None
    assert source.http_get == {"path": "/metrics", "port": 8080}
    doc = minimal(
        metricsCollectorSpec={
            "collector": {"kind": "PrometheusMetric"},
            "source": {"httpGet": {"port": 9090, "scheme": "HTTP", "httpHeaders": []}},
        }
    )
    source = load_experiment(doc).spec.metrics_collector_spec.source
    assert source is not None
    assert source.http_get == {
        "port": 9090,
        "scheme": "HTTP",
        "httpHeaders": [],
        "path": "/metrics",
    }


@pytest.mark.parametrize("name", ["pytorchjob", "mpijob-xgboost"])
def test_kubeflow_job_defaults(name: str) -> None:
    template = valid(name).spec.trial_template
    assert template.success_condition == KUBEFLOW_JOB_SUCCESS_CONDITION
    assert template.failure_condition == JOB_FAILURE_CONDITION
    assert template.primary_pod_labels == {"training.kubeflow.org/job-role": "master"}


def test_explicit_primary_pod_labels_are_kept() -> None:
    template = valid("tfjob-tfevent").spec.trial_template
    assert template.primary_pod_labels == {"training.kubeflow.org/replica-type": "worker"}
    assert template.success_condition == KUBEFLOW_JOB_SUCCESS_CONDITION


def test_trainjob_defaults() -> None:
    template = valid("trainjob").spec.trial_template
    assert template.kind == "TrainJob"
    assert template.success_condition == JOB_SUCCESS_CONDITION
    assert template.failure_condition == JOB_FAILURE_CONDITION
    assert template.primary_pod_labels == {
        "jobset.sigs.k8s.io/replicatedjob-name": "node",
        "batch.kubernetes.io/job-completion-index": "0",
    }


def test_configmap_templates_get_no_defaults() -> None:
    template = valid("configmap-template").spec.trial_template
    assert template.trial_spec is None and template.config_map is not None
    assert template.config_map.template_path == "defaultTrialTemplate.yaml"
    assert template.primary_pod_labels is None
    assert (
        template.success_condition == 'status.conditions.#(type=="Complete")#|#(status=="True")#'
    )


def test_int_step_defaults_to_one_in_the_space_but_not_in_the_document() -> None:
    experiment = valid("cmaes")
    assert experiment.search_space()["num-layers"].step == 1
    assert "step" not in experiment.to_document()["spec"]["parameters"][2]["feasibleSpace"]


# -- typed views ------------------------------------------------------------------------------


def test_search_space_types() -> None:
    space = valid("distributions").search_space()
    lr, momentum, decay, epochs, batch = (space[n] for n in space.names)
    assert (lr.type, lr.distribution, lr.low, lr.high, lr.step) == (
        ParameterType.DOUBLE,
        Distribution.NORMAL,
        0.01,
        0.05,
        0.01,
    )
    assert all(isinstance(v, float) for v in (lr.low, lr.high, lr.step, momentum.low))
    assert isinstance(momentum.high, float) and momentum.high == 1.0
    assert (decay.distribution, decay.low, decay.high) == (Distribution.LOG_UNIFORM, 1e-6, 1e-2)
    assert (epochs.type, epochs.distribution, epochs.low, epochs.high, epochs.step) == (
        ParameterType.INT,
        Distribution.LOG_UNIFORM,
        1,
        3,
        1,
    )
    assert batch.distribution is Distribution.LOG_NORMAL and batch.step == 8
    for value in (epochs.low, epochs.high, epochs.step, batch.low, batch.high, batch.step):
        assert type(value) is int


def test_search_space_discrete_and_categorical() -> None:
    space = valid("push-discrete").search_space()
    assert space["batch-size"].type is ParameterType.DISCRETE
    assert space["batch-size"].values == (16, 32, 64, 128)
    assert all(type(v) is int for v in space["batch-size"].values)
    assert space["warmup"].values == (0, 0.05, 0.1)
    categorical = valid("configmap-template").search_space()["optimizer"]
    assert categorical.type is ParameterType.CATEGORICAL
    assert categorical.values == ("sgd", "adam", "ftrl")


def test_grid_example_has_45_points() -> None:
    assert valid("grid").search_space().grid_size() == 45


def test_hyperband_int_parameter_may_be_fixed() -> None:
    assert valid("hyperband").search_space()["num-epochs"].grid_values() == (1,)


def test_yaml_numbers_are_read_as_katib_strings() -> None:
    experiment = valid("kubectl-export")
    params = experiment.spec.parameters
    assert params is not None
    assert (params[0].feasible_space.low, params[0].feasible_space.high) == ("0.001", "0.1")
    assert params[1].feasible_space.step == "1"
    assert experiment.search_space()["lr"].low == 0.001
    settings = valid("bayesianoptimization").spec.algorithm.settings
    assert settings == {"random_state": "10", "n_initial_points": "5", "base_estimator": "GP"}


def test_objective_view() -> None:
    objective = valid("medianstop").objective()
    assert objective.type is ObjectiveType.MAXIMIZE
    assert objective.metric_name == "accuracy" and objective.goal == 0.99
    assert objective.strategies == {"accuracy": MetricStrategy.MAX}
    assert load_experiment(minimal()).objective().goal is None


def test_names_and_metadata() -> None:
    experiment = valid("metadata-substitution")
    assert experiment.name == "trial-metadata-substitution"
    assert experiment.namespace == "kubeflow"
    assert experiment.metric_names == ("Validation-accuracy", "Train-accuracy")
    assert experiment.parameter_names == ("lr",)
    assert experiment.trial_parameter_names[:2] == ("learningRate", "trialName")
    trial_parameters = experiment.spec.trial_template.trial_parameters
    assert [tp.meta_key for tp in trial_parameters] == [
        None,
        ("Name", None),
        ("Namespace", None),
        ("Kind", None),
        ("APIVersion", None),
        ("Labels", "custom-key"),
        ("Annotations", "custom-key"),
    ]
    assert [tp.is_meta for tp in trial_parameters] == [False] + [True] * 6
    assert trial_parameters[0].placeholder == "${trialParameters.learningRate}"


def test_server_fields_and_status_are_kept() -> None:
    experiment = valid("kubectl-export")
    assert experiment.metadata.uid == "6f1c8f8e-2a4c-4c1e-9f0e-0d6c5a1b2c3d"
    assert experiment.metadata.creation_timestamp == "2025-03-01T10:00:00+00:00"
    assert experiment.status is not None and experiment.status["trials"] == 0
    assert experiment.to_document()["status"]["conditions"][0]["reason"] == "ExperimentCreated"


def test_early_stopping_and_retain() -> None:
    spec = valid("medianstop").spec
    assert spec.early_stopping is not None
    assert spec.early_stopping.algorithm_name == "medianstop"
    assert spec.early_stopping.settings == {"min_trials_required": "1", "start_step": "2"}
    assert spec.trial_template.retain is True


def test_experiment_is_frozen() -> None:
    experiment = load_experiment(minimal())
    with pytest.raises(ValidationError):
        experiment.spec.parallel_trial_count = 5  # type: ignore[misc]


_FINITE = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False, allow_infinity=False)


@st.composite
def feasible_spaces(draw: st.DrawFn) -> tuple[str, dict[str, Any], tuple[Any, ...]]:
    """(parameterType, feasibleSpace, expected bounds or values) of a valid parameter."""
    kind = draw(st.sampled_from(["double", "int", "discrete", "categorical"]))
    if kind == "double":
        low, high = sorted(draw(st.lists(_FINITE, min_size=2, max_size=2, unique=True)))
        logs = ["logUniform", "logNormal"] if low > 0 else []
        space = {"min": repr(low), "max": repr(high)}
        space["distribution"] = draw(st.sampled_from(["uniform", "normal", *logs]))
        return kind, space, (low, high)
    if kind == "int":
        low, high = sorted(draw(st.lists(st.integers(-(10**9), 10**9), min_size=2, max_size=2)))
        space = {"min": str(low), "max": str(high)}
        if high > low and draw(st.booleans()):
            space["step"] = str(draw(st.integers(1, high - low)))
        return kind, space, (low, high)
    if kind == "discrete":
        numbers = st.integers(-1000, 1000) | _FINITE
        values = draw(st.lists(numbers, min_size=1, max_size=5, unique_by=float))
        return kind, {"list": [repr(v) for v in values]}, tuple(values)
    labels = draw(st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=5, unique=True))
    return kind, {"list": labels}, tuple(labels)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(feasible_spaces())
def test_any_valid_parameter_loads_round_trips_and_parses(
    case: tuple[str, dict[str, Any], tuple[Any, ...]],
) -> None:
    kind, space, expected = case
    doc = minimal(parameters=[{"name": "lr", "parameterType": kind, "feasibleSpace": space}])
    experiment = load_experiment(doc)
    assert load_experiment(experiment.to_document()) == experiment
    assert load_experiment(experiment.to_yaml()) == experiment
    parameter = experiment.search_space()["lr"]
    if kind in ("double", "int"):
        assert (parameter.low, parameter.high) == expected
        number = float if kind == "double" else int
        assert type(parameter.low) is number and type(parameter.high) is number
    else:
        assert parameter.values == expected


# -- validation behaviour ---------------------------------------------------------------------


def test_algorithm_names_are_checked_only_when_given() -> None:
    doc = minimal(algorithm={"algorithmName": "my-custom-server"})
    assert load_experiment(doc).spec.algorithm.algorithm_name == "my-custom-server"
    with pytest.raises(ExperimentError) as info:
        load_experiment(doc, algorithm_names=["random", "grid"])
    assert str(info.value) == (
        'spec.algorithm.algorithmName: "my-custom-server" is not a known algorithm '
        "(known: grid, random)"
    )


def test_many_errors_are_all_reported_in_document_order() -> None:
    with pytest.raises(ExperimentError) as info:
        load(CORPUS / "invalid" / "many-errors.yaml")
    errors = info.value.errors
    assert len(errors) >= 10
    paths = [e.path for e in errors]
    assert paths[0] == "metadata.name"
    assert paths.index("spec.objective.type") < paths.index("spec.parameters[0].feasibleSpace.min")
    assert paths.index("spec.parameters[1].feasibleSpace.step") < paths.index(
        "spec.trialTemplate.primaryContainerName"
    )


def test_error_value_semantics() -> None:
    error = FieldError("spec.maxTrialCount", "0 must be greater than 0")
    assert str(error) == "spec.maxTrialCount: 0 must be greater than 0"
    assert str(FieldError("", "the document is empty")) == "the document is empty"
    exc = ExperimentError([error, FieldError("metadata.name", "is required")])
    assert isinstance(exc, ValueError)
    assert str(exc).splitlines() == [
        "spec.maxTrialCount: 0 must be greater than 0",
        "metadata.name: is required",
    ]
    clone = pickle.loads(pickle.dumps(exc))
    assert clone.errors == exc.errors and str(clone) == str(exc)


def test_model_validate_runs_the_same_checks() -> None:
    doc = minimal(maxTrialCount=2, parallelTrialCount=5)
    with pytest.raises(ValidationError):
        Experiment.model_validate(doc)


def test_free_form_objects_accept_any_fields() -> None:
    doc = minimal(
        metricsCollectorSpec={
            "collector": {
                "kind": "Custom",
                "customCollector": {"name": "c", "image": "c", "securityContext": {"x": 1}},
            }
        }
    )
    collector = load_experiment(doc).spec.metrics_collector_spec.collector
    assert collector.custom_collector == {"name": "c", "image": "c", "securityContext": {"x": 1}}


def test_unknown_field_without_close_match_lists_allowed_fields() -> None:
    doc = minimal()
    doc["spec"]["objective"]["weights"] = [1, 2]
    with pytest.raises(ExperimentError) as info:
        load_experiment(doc)
    assert str(info.value).startswith(
        "spec.objective.weights: unknown field (allowed here: type, goal, objectiveMetricName"
    )


# -- CRD schema -------------------------------------------------------------------------------


def _nodes(schema: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        found += _nodes(schema["additionalProperties"], f"{path}{{}}")
    return found


def test_crd_schema_is_structural() -> None:
    schema = crd_schema()
    text = json.dumps(schema)
    assert "$ref" not in text and "$defs" not in text
    preserve = "x-kubernetes-preserve-unknown-fields"
    for path, node in _nodes(schema):
        assert not {"anyOf", "oneOf", "allOf", "not", "const", "title"} & set(node), path
        assert node.get("type") or node.get(preserve), f"{path} has no type"
        if "properties" in node:
            assert node["type"] == "object" and "additionalProperties" not in node, path
            assert set(node.get("required", ())) <= set(node["properties"]), path
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), path
        assert node.get("additionalProperties", {}) is not False, path
        assert node.get("default", 0) is not None, path
        if "enum" in node and "default" in node:
            assert node["default"] in node["enum"], path


def test_crd_schema_content() -> None:
    schema = crd_schema()
    preserve = "x-kubernetes-preserve-unknown-fields"
    spec = schema["properties"]["spec"]["properties"]
    template = spec["trialTemplate"]["properties"]
    assert template["trialSpec"] == {**template["trialSpec"], "type": "object", preserve: True}
    collector = spec["metricsCollectorSpec"]["properties"]
    assert collector["collector"]["properties"]["customCollector"][preserve] is True
    assert collector["source"]["properties"]["httpGet"][preserve] is True
    assert schema["properties"]["status"][preserve] is True
    assert spec["parallelTrialCount"]["default"] == 3
    assert spec["resumePolicy"]["enum"] == ["Never", "LongRunning", "FromVolume"]
    parameter = spec["parameters"]["items"]["properties"]
    assert parameter["feasibleSpace"]["properties"]["list"]["items"]["type"] == "string"
    assert "collector" not in spec["metricsCollectorSpec"].get("required", [])
    assert set(schema["properties"]["spec"]["required"]) == {
        "objective",
        "algorithm",
        "trialTemplate",
    }
