"""tunery.sdk.search: the SDK's helpers build the YAML parameter specs and validate early."""

from __future__ import annotations

import numpy as np
import pytest

from tunery import search
from tunery.experiment import load_experiment
from tunery.space import Distribution, ParameterType


def _yaml_parameter(name: str, spec: search.SearchSpec) -> dict:
    """The parameter as load_experiment reads and defaults it from YAML."""
    document = {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": "x"},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parameters": [spec.to_parameter_spec(name)],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": name, "reference": name}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": "python",
                                        "command": ["run", f"${{trialParameters.{name}}}"],
                                    }
                                ],
                                "restartPolicy": "Never",
                            }
                        }
                    },
                },
            },
        },
    }
    return load_experiment(document).search_space()[name]


def test_double_spec_is_the_yaml_spec() -> None:
    spec = search.double(0.001, 0.1, distribution="logUniform")
    assert spec.to_parameter_spec("lr") == {
        "name": "lr",
        "parameterType": "double",
        "feasibleSpace": {"min": "0.001", "max": "0.1", "distribution": "logUniform"},
    }
    assert _yaml_parameter("lr", spec) == spec.to_parameter("lr")


def test_int_spec_with_step_and_default_step() -> None:
    assert search.int(16, 256, step=16).feasible_space() == {
        "min": "16",
        "max": "256",
        "step": "16",
        "distribution": "uniform",
    }
    parameter = search.int(1, 5).to_parameter("layers")
    assert parameter.type is ParameterType.INT and parameter.step == 1
    assert _yaml_parameter("layers", search.int(1, 5)) == parameter


def test_categorical_and_discrete_lists() -> None:
    cat = search.categorical(["sgd", "adam"])
    assert cat.to_parameter_spec("opt")["feasibleSpace"] == {"list": ["sgd", "adam"]}
    assert _yaml_parameter("opt", cat).values == ("sgd", "adam")
    disc = search.discrete([32, 64, 0.5])
    assert disc.feasible_space() == {"list": ["32", "64", "0.5"]}
    parsed = _yaml_parameter("bs", disc)
    assert parsed.values == (32, 64, 0.5)
    assert [type(v) for v in parsed.values] == [int, int, float]


def test_numpy_numbers_become_plain_python() -> None:
    spec = search.discrete([np.int64(3), np.float32(0.5)])
    assert spec.values == (3, 0.5)
    assert [type(v) for v in spec.values] == [int, float]
    assert search.int(np.int32(1), np.int64(4)).max == 4
    assert type(search.double(np.float64(0.5), 2).min) is float


@pytest.mark.parametrize(
    "alias", ["logUniform", "loguniform", "log_uniform", "LOG-UNIFORM", Distribution.LOG_UNIFORM]
)
def test_distribution_aliases(alias: str) -> None:
    assert search.double(1e-3, 1, distribution=alias).distribution is Distribution.LOG_UNIFORM


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: search.double(1, 1), ValueError, "min 1.0 must be less than max 1.0"),
        (lambda: search.double(0, 1, step=0), ValueError, "step 0.0 must be greater than 0"),
        (lambda: search.double(0, 1, step=2), ValueError, "larger than the range"),
        (lambda: search.double(0, 1, distribution="log"), ValueError, "distribution 'log'"),
        (
            lambda: search.double(0, 1, distribution="logUniform"),
            ValueError,
            "must be greater than 0 for distribution logUniform",
        ),
        (lambda: search.double("0", 1), TypeError, "min must be a number, got '0'"),
        (lambda: search.double(0, float("inf")), ValueError, "max must be finite"),
        (lambda: search.double(True, 2), TypeError, "min must be a number"),
        (lambda: search.int(1.5, 3), TypeError, "min must be an integer, got 1.5"),
        (lambda: search.int(5, 1), ValueError, "must be less than max"),
        (lambda: search.int(1, 5, step=0), ValueError, "step 0 must be greater than 0"),
        (lambda: search.categorical([]), ValueError, "must not be empty"),
        (lambda: search.categorical(["a", "a"]), ValueError, "duplicates"),
        (lambda: search.categorical([1, 2]), TypeError, "use search.discrete"),
        (lambda: search.categorical("abc"), TypeError, "got the string 'abc'"),
        (lambda: search.discrete(["a"]), TypeError, "use search.categorical"),
        (lambda: search.discrete([1, 1.0]), ValueError, "duplicates"),
        (lambda: search.discrete([float("nan")]), ValueError, "finite"),
    ],
)
def test_bad_specs_fail_where_they_are_written(build, error, message) -> None:
    with pytest.raises(error, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()


def test_int_equal_bounds_is_a_fixed_value() -> None:
    assert search.int(3, 3).to_parameter("x").grid_values() == (3,)


def test_specs_are_frozen_values() -> None:
    spec = search.double(0.0, 1.0)
    assert spec == search.double(0.0, 1.0)
    with pytest.raises(AttributeError):
        spec.min = 3  # type: ignore[misc]
