"""Conformance suite for early stoppers: every stopper in ``earlystop.REGISTRY``.

A stopper added to the registry is enrolled automatically. Each test checks one clause of the
contract in ``earlystop.base``: registry and settings (defaults valid, unknown names rejected
with Katib's message), nothing stopped without finished trials to compare with, a trial as good
as the best finished one never stopped, a clearly worse one stopped within the finished
trials' length, both objective directions, NaN/inf reports and other metrics tolerated,
wire rules on the objective metric, deterministic policies, and in-process checks that agree
with the policy.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import random

import pytest

import earlystop as earlystop_pkg
from earlystop import REGISTRY, get_early_stopper
from earlystop.base import (
    EarlyStopper,
    EarlyStoppingSettings,
    InvalidSettingsError,
    StopPolicy,
    parse_settings,
)
from earlystop.inprocess import InProcessEarlyStopping
from tunery.trials import Objective, ObjectiveType, Observation, StopDecision, TrialCondition

MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "loss")
STEPS = 20


def curve(values: list[float | str], metric: str = "loss") -> list[Observation]:
    return [Observation.of(metric, v, step) for step, v in enumerate(values)]


def learning_curve(rng: random.Random, final: float, objective: Objective) -> list[float]:
    """A decreasing loss towards ``final`` (negated when maximising), with a little noise."""
    out = []
    for step in range(1, STEPS + 1):
        value = final + 2.0 / step + rng.uniform(-0.01, 0.01)
        out.append(value if objective.type is ObjectiveType.MINIMIZE else -value)
    return out


def finished(objective: Objective, n: int = 12, seed: int = 0) -> list[list[Observation]]:
    rng = random.Random(seed)
    return [
        curve(learning_curve(rng, 1.0 + i / n, objective), objective.metric_name) for i in range(n)
    ]


def decisions(policy: StopPolicy, values: list[float | str]) -> list[StopDecision]:
    obs = curve(values, policy.objective.metric_name)
    return [policy.decide(obs[: k + 1]) for k in range(len(obs))]


@pytest.fixture(params=sorted(REGISTRY))
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_registry_keys_match_class_names(name: str) -> None:
    cls = get_early_stopper(name)
    assert cls.name == name
    assert issubclass(cls, EarlyStopper)
    assert issubclass(cls.settings_type, EarlyStoppingSettings)
    assert cls.compared_conditions and all(c.is_terminal for c in cls.compared_conditions)
    assert TrialCondition.SUCCEEDED in cls.compared_conditions


def test_every_stopper_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(earlystop_pkg.__path__)}
    infrastructure = {"base", "inprocess", "service", "server", "convert", "sources"}
    stoppers = {m for m in modules if not m.startswith("_") and m not in infrastructure}
    registered = {target.split(":")[0].rsplit(".", 1)[1] for target in REGISTRY.values()}
    assert stoppers <= registered, f"modules not in REGISTRY: {sorted(stoppers - registered)}"
    for target in REGISTRY.values():
        module, _, cls = target.partition(":")
        assert hasattr(importlib.import_module(module), cls), target


def test_defaults_are_valid_and_unknown_settings_rejected(name: str) -> None:
    cls = get_early_stopper(name)
    assert parse_settings(cls.settings_type, {}, name) == cls.settings_type()
    with pytest.raises(InvalidSettingsError) as info:
        parse_settings(cls.settings_type, {"no_such_setting": "1"}, name)
    assert str(info.value) == f"unknown setting no_such_setting for algorithm {name}"
    pairs = cls.settings_type().as_pairs()
    assert parse_settings(cls.settings_type, pairs, name) == cls.settings_type()


@pytest.mark.parametrize("objective", [MIN, MAX], ids=["minimize", "maximize"])
def test_nothing_is_stopped_without_finished_trials(name: str, objective: Objective) -> None:
    policy = get_early_stopper(name)().prepare(objective, [])
    values: list[float | str] = [float(v) for v in range(STEPS)]
    assert not any(d.stop for d in decisions(policy, values))
    assert policy.rules() == []


@pytest.mark.parametrize("objective", [MIN, MAX], ids=["minimize", "maximize"])
def test_the_best_continues_and_a_clearly_worse_trial_stops(
    name: str, objective: Objective
) -> None:
    policy = get_early_stopper(name)().prepare(objective, finished(objective))
    rng = random.Random(7)
    best = learning_curve(rng, 0.5, objective)  # better than every finished trial
    assert not any(d.stop for d in decisions(policy, list(best)))
    worse = learning_curve(rng, 10.0, objective)
    stops = [d.stop for d in decisions(policy, list(worse))]
    assert any(stops), f"{name} never stopped a trial far worse than every finished one"
    first = stops.index(True)
    assert decisions(policy, list(worse))[first].reason == "TrialEarlyStopped"


def test_rules_are_on_the_objective_metric(name: str) -> None:
    for objective in (MIN, MAX):
        rules = get_early_stopper(name)().prepare(objective, finished(objective)).rules()
        assert rules, f"{name} gives no wire rule with 12 finished trials"
        for rule in rules:
            assert rule.metric_name == objective.metric_name
            assert rule.start_step >= 1 and math.isfinite(rule.value)


def test_nan_inf_and_other_metrics_are_tolerated(name: str) -> None:
    runs = finished(MIN)
    runs[0] = curve(["nan", "inf", "-inf", "unavailable", *[1.5] * (STEPS - 4)])
    runs[1] = runs[1] + curve([0.1] * STEPS, "accuracy")
    policy = get_early_stopper(name)().prepare(MIN, runs)
    for d in decisions(policy, ["nan", 3.0, "inf", 2.0, 1.0]):
        assert isinstance(d, StopDecision)
    mixed = curve([5.0, 5.0], "accuracy") + curve([1.0])
    assert isinstance(policy.decide(mixed), StopDecision)


def test_policies_are_deterministic_and_checks_agree(name: str) -> None:
    stopper = get_early_stopper(name)()
    runs = finished(MAX, seed=3)
    values: list[float | str] = list(learning_curve(random.Random(1), 1.4, MAX))
    a = [d.stop for d in decisions(stopper.prepare(MAX, runs), values)]
    assert a == [d.stop for d in decisions(stopper.prepare(MAX, list(reversed(runs))), values)]
    snapshot = {f"t{i}": r for i, r in enumerate(runs)}
    check = InProcessEarlyStopping(stopper, MAX, lambda: snapshot).stop_check()
    obs = curve(values)
    assert [check(obs[: k + 1]).stop for k in range(len(obs))] == a
