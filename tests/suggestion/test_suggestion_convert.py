"""suggestion.convert: Katib protos to kernel types and back, with Katib's trial filtering."""

from __future__ import annotations

import math

import pytest

from suggestion.algorithms.base import InvalidRequestError
from suggestion.convert import (
    TrialConverter,
    assignments_to_proto,
    experiment_from_proto,
    objective_from_proto,
    parameter_from_proto,
    settings_from_proto,
    space_from_proto,
    spec_digest,
    trial_from_proto,
)
from tunery.api import api_pb2
from tunery.space import Distribution, Parameter, ParameterType, SearchSpace
from tunery.trials import ObjectiveType, TrialCondition

from .helpers import add_trial, experiment


def spec(name: str, ptype: int, **fs: object) -> api_pb2.ParameterSpec:
    return api_pb2.ParameterSpec(
        name=name, parameter_type=ptype, feasible_space=api_pb2.FeasibleSpace(**fs)
    )


# -- parameters ---------------------------------------------------------------------------------


def test_double_with_each_distribution() -> None:
    for wire, dist in [
        (api_pb2.DISTRIBUTION_UNSPECIFIED, Distribution.UNIFORM),
        (api_pb2.UNIFORM, Distribution.UNIFORM),
        (api_pb2.LOG_UNIFORM, Distribution.LOG_UNIFORM),
        (api_pb2.NORMAL, Distribution.NORMAL),
        (api_pb2.LOG_NORMAL, Distribution.LOG_NORMAL),
    ]:
        p = parameter_from_proto(
            spec("lr", api_pb2.DOUBLE, min="0.01", max="1", distribution=wire)
        )
        assert p == Parameter.double("lr", 0.01, 1.0, distribution=dist)


def test_double_step_and_no_step() -> None:
    assert parameter_from_proto(spec("a", api_pb2.DOUBLE, min="0", max="1")).step is None
    stepped = parameter_from_proto(spec("a", api_pb2.DOUBLE, min="0", max="1", step="0.25"))
    assert stepped.step == 0.25
    assert stepped.grid_size() == 5


def test_int_step_defaults_to_one_and_parses_integral_floats() -> None:
    p = parameter_from_proto(spec("n", api_pb2.INT, min="1", max="5"))
    assert (p.low, p.high, p.step) == (1, 5, 1)
    assert type(p.low) is int
    q = parameter_from_proto(spec("n", api_pb2.INT, min="2.0", max="10", step="2"))
    assert (q.low, q.high, q.step) == (2, 10, 2)


def test_lists() -> None:
    d = parameter_from_proto(spec("units", api_pb2.DISCRETE, list=["16", "32", "0.5"]))
    assert d.type is ParameterType.DISCRETE
    assert d.values == (16, 32, 0.5)
    c = parameter_from_proto(spec("opt", api_pb2.CATEGORICAL, list=["sgd", "adam"]))
    assert c.values == ("sgd", "adam")


@pytest.mark.parametrize(
    ("param", "message"),
    [
        (spec("a", api_pb2.DOUBLE, max="1"), "parameter a: min is required"),
        (spec("a", api_pb2.DOUBLE, min="x", max="1"), "parameter a: 'x' is not a number"),
        (spec("a", api_pb2.DOUBLE, min="2", max="1"), "parameter a: min 2.0 must be less than"),
        (spec("a", api_pb2.DOUBLE, min="0", max="1", step="-1"), "step -1.0 must be greater"),
        (spec("a", api_pb2.DOUBLE, min="0", max="1", list=["1"]), "takes min/max, not a list"),
        (
            spec("a", api_pb2.DOUBLE, min="0", max="1", distribution=api_pb2.LOG_UNIFORM),
            "min 0.0 must be greater than 0 for distribution logUniform",
        ),
        (spec("n", api_pb2.INT, min="1.5", max="3"), "parameter n: min '1.5' is not an integer"),
        (spec("o", api_pb2.CATEGORICAL, list=[]), "the list of values must not be empty"),
        (spec("o", api_pb2.CATEGORICAL, list=["a"], min="1"), "takes a list, not min/max/step"),
        (spec("o", api_pb2.DISCRETE, list=["1", "x"]), "'x' is not a number"),
        (spec("o", api_pb2.CATEGORICAL, list=["a", "a"]), "duplicates"),
        (spec("u", api_pb2.UNKNOWN_TYPE, min="0", max="1"), "parameter type UNKNOWN_TYPE"),
        (spec("u", 9, min="0", max="1"), "parameter type 9 is not supported"),
    ],
)
def test_bad_parameters_are_named(param: api_pb2.ParameterSpec, message: str) -> None:
    with pytest.raises(InvalidRequestError, match="parameter") as info:
        parameter_from_proto(param)
    assert message in str(info.value)


def test_space_rejects_empty_duplicate_and_nas() -> None:
    with pytest.raises(InvalidRequestError, match="no parameters"):
        space_from_proto(api_pb2.ExperimentSpec())
    nas = api_pb2.ExperimentSpec(nas_config=api_pb2.NasConfig())
    with pytest.raises(InvalidRequestError, match="nasConfig"):
        space_from_proto(nas)
    dup = api_pb2.ExperimentSpec(
        parameter_specs=api_pb2.ExperimentSpec.ParameterSpecs(
            parameters=[
                spec("a", api_pb2.INT, min="1", max="2"),
                spec("a", api_pb2.INT, min="1", max="2"),
            ]
        )
    )
    with pytest.raises(InvalidRequestError, match="duplicate parameter name 'a'"):
        space_from_proto(dup)


# -- objective, settings, experiment --------------------------------------------------------------


def test_objective() -> None:
    o = objective_from_proto(
        api_pb2.ObjectiveSpec(
            type=api_pb2.MAXIMIZE,
            objective_metric_name="acc",
            goal=0.99,
            additional_metric_names=["loss"],
        )
    )
    assert (o.type, o.metric_name, o.goal, o.additional_metric_names) == (
        ObjectiveType.MAXIMIZE,
        "acc",
        0.99,
        ("loss",),
    )
    assert (
        objective_from_proto(
            api_pb2.ObjectiveSpec(type=api_pb2.MINIMIZE, objective_metric_name="l")
        ).goal
        is None
    )
    with pytest.raises(InvalidRequestError, match="MINIMIZE or MAXIMIZE"):
        objective_from_proto(api_pb2.ObjectiveSpec(objective_metric_name="l"))
    with pytest.raises(InvalidRequestError, match="metric name must not be empty"):
        objective_from_proto(api_pb2.ObjectiveSpec(type=api_pb2.MINIMIZE))


def test_settings_reject_duplicates() -> None:
    algo = api_pb2.AlgorithmSpec(
        algorithm_name="tpe",
        algorithm_settings=[
            api_pb2.AlgorithmSetting(name="gamma", value="0.2"),
            api_pb2.AlgorithmSetting(name="gamma", value="0.3"),
        ],
    )
    with pytest.raises(InvalidRequestError, match="gamma is given more than once"):
        settings_from_proto(algo)


def test_experiment_view() -> None:
    view = experiment_from_proto(
        experiment("tpe", name="e1", settings={"gamma": "0.3"}, max_trial_count=12)
    )
    assert view.name == "e1"
    assert view.algorithm_name == "tpe"
    assert view.settings == {"gamma": "0.3"}
    assert view.max_trial_count == 12
    assert view.parallel_trial_count == 3
    assert view.space.names == ("lr", "layers", "opt")
    empty = experiment("")
    with pytest.raises(InvalidRequestError, match="algorithm name must not be empty"):
        experiment_from_proto(empty)


def test_spec_digest_changes_with_the_spec_only() -> None:
    a = experiment("tpe", name="x")
    b = experiment("tpe", name="y")
    assert spec_digest(a) == spec_digest(b)
    assert spec_digest(a) != spec_digest(experiment("tpe", name="x", max_trial_count=5))
    assert spec_digest(a) != spec_digest(experiment("random", name="x"))


# -- trials ---------------------------------------------------------------------------------------

SPACE = SearchSpace(
    (
        Parameter.double("lr", 0.001, 0.1),
        Parameter.integer("n", 1, 5),
        Parameter.categorical("opt", ["a", "b"]),
    )
)
WIRE = {"lr": "0.01", "n": "3", "opt": "b"}


def one_trial(condition: int, value: str | None = None, metric: str = "loss") -> api_pb2.Trial:
    request = api_pb2.GetSuggestionsRequest()
    return add_trial(request, WIRE, condition, value, metric=metric, name="t1")


def test_completed_trials_with_the_metric_are_history() -> None:
    for condition, expected in [
        (api_pb2.TrialStatus.SUCCEEDED, TrialCondition.SUCCEEDED),
        (api_pb2.TrialStatus.EARLYSTOPPED, TrialCondition.EARLY_STOPPED),
    ]:
        t = trial_from_proto(one_trial(condition, "0.25"), SPACE, "loss")
        assert t.condition is expected
        assert t.value == 0.25
        assert t.is_completed_with_value
        assert t.assignment == {"lr": 0.01, "n": 3, "opt": "b"}
        assert type(t.assignment["n"]) is int


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "abc", "unavailable", ""])
def test_unusable_values_are_not_history(value: str) -> None:
    t = trial_from_proto(one_trial(api_pb2.TrialStatus.SUCCEEDED, value), SPACE, "loss")
    assert t.value is None
    assert not t.is_completed_with_value
    assert not t.is_pending


def test_other_metric_or_none_is_not_history() -> None:
    t = trial_from_proto(one_trial(api_pb2.TrialStatus.SUCCEEDED, "1", "acc"), SPACE, "loss")
    assert t.value is None
    assert trial_from_proto(one_trial(api_pb2.TrialStatus.SUCCEEDED), SPACE, "loss").value is None


def test_conditions() -> None:
    status = api_pb2.TrialStatus
    expected = {
        status.CREATED: (TrialCondition.CREATED, True),
        status.RUNNING: (TrialCondition.RUNNING, True),
        status.FAILED: (TrialCondition.FAILED, False),
        status.KILLED: (TrialCondition.KILLED, False),
        status.METRICSUNAVAILABLE: (TrialCondition.METRICS_UNAVAILABLE, False),
        status.UNKNOWN: (TrialCondition.METRICS_UNAVAILABLE, False),
    }
    for wire, (condition, pending) in expected.items():
        t = trial_from_proto(one_trial(wire, "0.5"), SPACE, "loss")
        assert t.condition is condition
        assert t.value is None  # only completed trials carry a value
        assert t.is_pending is pending


def test_bad_trial_assignment_names_the_trial() -> None:
    request = api_pb2.GetSuggestionsRequest()
    bad = add_trial(request, {"lr": "x", "n": "3", "opt": "b"}, name="trial-7")
    with pytest.raises(InvalidRequestError, match="trial trial-7: lr: 'x' is not a number"):
        trial_from_proto(bad, SPACE, "loss")
    missing = add_trial(request, {"lr": "0.1"}, name="trial-8")
    with pytest.raises(InvalidRequestError, match="trial trial-8: missing parameter"):
        trial_from_proto(missing, SPACE, "loss")


def test_converter_reuses_unchanged_trials_and_keeps_assignments() -> None:
    request = api_pb2.GetSuggestionsRequest()
    add_trial(request, WIRE, api_pb2.TrialStatus.RUNNING, name="a")
    add_trial(request, {"lr": "0.02", "n": "1", "opt": "a"}, api_pb2.TrialStatus.SUCCEEDED, "1")
    converter = TrialConverter(SPACE, "loss")
    first = converter.convert(request.trials)
    again = converter.convert(request.trials)
    assert all(x is y for x, y in zip(first, again, strict=True))
    request.trials[0].status.condition = api_pb2.TrialStatus.SUCCEEDED
    request.trials[0].status.observation.metrics.add(name="loss", value="0.5")
    changed = converter.convert(request.trials)
    assert changed[0] is not first[0]
    assert changed[0].value == 0.5
    assert changed[0].assignment is first[0].assignment
    assert changed[1] is first[1]


def test_converter_rereads_a_value_that_arrives_later() -> None:
    request = api_pb2.GetSuggestionsRequest()
    add_trial(request, WIRE, api_pb2.TrialStatus.EARLYSTOPPED, name="a")
    converter = TrialConverter(SPACE, "loss")
    assert converter.convert(request.trials)[0].value is None
    request.trials[0].status.observation.metrics.add(name="loss", value="2")
    assert converter.convert(request.trials)[0].value == 2.0


def test_assignments_print_ints_as_integers_and_floats_round_trip() -> None:
    [pa] = assignments_to_proto(SPACE, [{"lr": 0.1 + 0.2, "n": 3, "opt": "a"}])
    values = {a.name: a.value for a in pa.assignments}
    assert values == {"lr": repr(0.1 + 0.2), "n": "3", "opt": "a"}
    assert float(values["lr"]) == 0.1 + 0.2
    assert [a.name for a in pa.assignments] == ["lr", "n", "opt"]
    assert not math.isnan(float(values["lr"]))
