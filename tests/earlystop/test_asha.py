"""The asha rule: rung steps, cutoffs (the best 1/eta), promotion decisions, settings, the
wire rule, and the reference set (EarlyStopped trials count, in-process and in the service)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from earlystop import get_early_stopper
from earlystop.asha import Asha, AshaPolicy, AshaSettings, prefix_best
from earlystop.base import Comparison, InvalidSettingsError, StopRule
from earlystop.inprocess import InProcessEarlyStopping
from tunery.trials import Objective, ObjectiveType, Observation, TrialCondition

MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "acc")


def curve(values: Sequence[float | str], metric: str = "loss") -> list[Observation]:
    return [Observation.of(metric, v, step) for step, v in enumerate(values)]


def asha(**settings: int) -> Asha:
    return Asha(AshaSettings(**settings))


def decisions(policy: AshaPolicy, values: Sequence[float | str]) -> list[bool]:
    obs = curve(values, policy.objective.metric_name)
    return [policy.decide(obs[: n + 1]).stop for n in range(len(obs))]


def test_rungs_are_geometric_up_to_the_longest_curve_or_max_resource() -> None:
    assert AshaSettings(min_resource=1, reduction_factor=3).rungs(30) == [1, 3, 9, 27]
    assert AshaSettings(min_resource=2, reduction_factor=2).rungs(20) == [2, 4, 8, 16]
    assert AshaSettings(min_resource=1, reduction_factor=3, max_resource=10).rungs(100) == [
        1,
        3,
        9,
    ]


def test_prefix_best_skips_missing_values() -> None:
    assert prefix_best([None, 3.0, 5.0, 1.0], minimize=True) == [None, 3.0, 3.0, 1.0]
    assert prefix_best([2.0, None, 5.0], minimize=False) == [2.0, 2.0, 5.0]


def test_cutoff_is_the_best_third_of_the_rung() -> None:
    """Nine finished curves with rung-1 values 1..9: at eta 3 the cutoff is the 1/3 quantile
    (linear: 3.666...), so values 1-3 continue and 4-9 stop."""
    finished = [curve([float(v), float(v)]) for v in range(1, 10)]
    policy = asha(min_resource=1, reduction_factor=3).prepare(MIN, finished)
    rung = policy.cutoff(1)
    assert rung is not None and rung.trials == 9
    assert rung.cutoff == pytest.approx(1 + (9 - 1) / 3)
    assert [policy.decide_at(1, float(v)).stop for v in range(1, 10)] == [False] * 3 + [True] * 6


def test_maximize_keeps_the_largest() -> None:
    finished = [curve([float(v)], "acc") for v in range(1, 10)]
    policy = asha(reduction_factor=3).prepare(MAX, finished)
    assert [policy.decide_at(1, float(v)).stop for v in range(1, 10)] == [True] * 6 + [False] * 3


def test_decisions_only_at_rungs_with_the_best_so_far() -> None:
    # references (minimising): rung 1 values {1, 2, 3}, rung 3 best-so-far {1, 0.5, 3}
    finished = [curve([1, 1, 1]), curve([2, 1, 0.5]), curve([3, 3, 3])]
    policy = asha(min_resource=1, reduction_factor=3).prepare(MIN, finished)
    # cutoff rung 1 = 1/3 quantile of {1,2,3} = 1.666; rung 3 of {0.5,1,3} = 0.8333
    assert decisions(policy, [1.5, 9, 0.9, 9]) == [False, False, True, False]
    assert decisions(policy, [1.5, 0.7, 9]) == [False, False, False]  # best 0.7 at rung 3
    assert decisions(policy, [2.0]) == [True]
    assert decisions(policy, ["nan"]) == [True]  # no finite value at a decided rung


def test_grace_period_and_min_trials_required() -> None:
    finished = [curve([1, 1, 1]), curve([2, 2, 2])]
    assert not asha(grace_period=3).prepare(MIN, finished).decide_at(1, 100.0).stop
    assert asha(grace_period=3).prepare(MIN, finished).decide_at(3, 100.0).stop
    assert not asha(min_trials_required=3).prepare(MIN, finished).decide_at(1, 100.0).stop
    assert asha().prepare(MIN, []).decide_at(1, 100.0).stop is False  # nothing to compare


def test_a_shorter_reference_counts_only_at_rungs_it_reached() -> None:
    finished = [curve([5]), curve([1, 1, 1]), curve([2, 2, 2])]
    policy = asha(reduction_factor=3).prepare(MIN, finished)
    assert policy.cutoff(1) is not None and policy.cutoff(1).trials == 3  # type: ignore[union-attr]
    assert policy.cutoff(3) is not None and policy.cutoff(3).trials == 2  # type: ignore[union-attr]


def test_wire_rule_is_the_first_decided_rung() -> None:
    finished = [curve([1, 1, 1]), curve([2, 2, 2]), curve([4, 4, 4])]
    policy = asha(reduction_factor=2, grace_period=2).prepare(MIN, finished)
    [rule] = policy.rules()
    assert rule == StopRule("loss", 2.0, Comparison.GREATER, 2)  # the median of {1, 2, 4}
    assert asha().prepare(MIN, []).rules() == []


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("min_resource", 0, "min_resource must be greater or equal than one"),
        ("reduction_factor", 1, "reduction_factor must be greater or equal than two"),
        ("grace_period", 0, "grace_period must be greater or equal than one"),
        ("max_resource", -1, "max_resource must be zero"),
        ("min_trials_required", 0, "min_trials_required must be greater than zero"),
    ],
)
def test_bad_settings_name_the_field(name: str, value: int, message: str) -> None:
    with pytest.raises(InvalidSettingsError, match=message):
        AshaSettings(**{name: value})


def test_settings_from_katib_strings() -> None:
    stopper = get_early_stopper("asha").from_settings(
        {"min_resource": "2", "reduction_factor": "4", "grace_period": "4"}
    )
    assert stopper.settings == AshaSettings(min_resource=2, reduction_factor=4, grace_period=4)
    with pytest.raises(InvalidSettingsError, match="unknown setting eta for algorithm asha"):
        get_early_stopper("asha").from_settings({"eta": "3"})


def test_early_stopped_trials_are_references() -> None:
    assert TrialCondition.EARLY_STOPPED in Asha.compared_conditions
    assert Asha.compared_conditions >= {TrialCondition.SUCCEEDED}


def test_in_process_checks_share_one_policy_and_stop_a_bad_trial() -> None:
    snapshot = {"a": curve([1, 1, 1]), "b": curve([2, 2, 2]), "c": curve([3, 3, 3])}
    stopping = InProcessEarlyStopping(asha(), MIN, lambda: snapshot)
    good, bad = stopping.stop_check(), stopping.stop_check()
    assert not good(curve([1.2])).stop
    assert bad(curve([2.9])).stop
