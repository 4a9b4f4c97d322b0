"""The medianstop rule: per-step true medians, decisions on synthetic curves, NaN, edges."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from earlystop.base import Comparison, RunningCurve, StopRule
from earlystop.medianstop import (
    MedianStop,
    MedianStopPolicy,
    MedianStopSettings,
    objective_curve,
    running_averages,
)
from tunery.trials import Objective, ObjectiveType, Observation

MIN = Objective(ObjectiveType.MINIMIZE, "loss")
MAX = Objective(ObjectiveType.MAXIMIZE, "loss")


def curve(values: Sequence[float | str], metric: str = "loss") -> list[Observation]:
    return [Observation.of(metric, v, step) for step, v in enumerate(values)]


def stopper(min_trials: int = 3, start_step: int = 2) -> MedianStop:
    return MedianStop(MedianStopSettings(min_trials_required=min_trials, start_step=start_step))


def decisions(policy: MedianStopPolicy, values: Sequence[float | str]) -> list[bool]:
    """The decision after each report (prefixes of the running trial's curve)."""
    obs = curve(values, policy.objective.metric_name)
    return [policy.decide(obs[: n + 1]).stop for n in range(len(obs))]


# Completed (minimising) curves and their running averages:
#   A [4, 2, 3, 3] -> 4, 3, 3, 3
#   B [2, 2, 2, 2] -> 2, 2, 2, 2
#   C [6, 4, 2, 0] -> 6, 5, 4, 3
#   D [8, 8]       -> 8, 8          (shorter: only counted at steps 1-2)
# Medians: step 2 of {3, 2, 5, 8} = 4; step 3 of {3, 2, 4} = 3; step 4 of {3, 2, 3} = 3;
# step 5: no completed trial reached it.
COMPLETED = [[4, 2, 3, 3], [2, 2, 2, 2], [6, 4, 2, 0], [8, 8]]


@pytest.fixture
def policy() -> MedianStopPolicy:
    return stopper().prepare(MIN, [curve(c) for c in COMPLETED])


def test_per_step_medians_of_running_averages(policy: MedianStopPolicy) -> None:
    assert policy.median_at(1) is None  # before start_step: not computed
    assert [(m.median, m.trials) for m in map(policy.median_at, (2, 3, 4))] == [
        (4.0, 4),
        (3.0, 3),
        (3.0, 3),
    ]
    assert policy.median_at(5) is None
    assert policy.max_step == 4


@pytest.mark.parametrize(
    ("name", "values", "expected"),
    [
        # stalls above the median from start_step on; past step 4 nothing to compare with
        ("plateau", [5, 4.5, 4.5, 4.5, 4.5], [False, True, True, True, False]),
        ("fast learner", [3, 2.5, 2, 1, 1], [False, False, False, False, False]),
        # below the median at step 2, above it at 3, below again at 4 (curves cross)
        ("crossing", [4, 3.9, 3.5, 2.9], [False, False, True, False]),
        ("tie is not worse", [4, 4, 3, 3], [False, False, False, False]),
        ("noisy", [5, 3.5, 6, 2.5], [False, False, True, False]),
        ("bad first report, not judged before start_step", [100, 1], [False, False]),
        ("best so far, not latest", [1, 50, 50, 50], [False, False, False, False]),
    ],
)
def test_synthetic_curves_minimize(
    policy: MedianStopPolicy, name: str, values: list[float], expected: list[bool]
) -> None:
    assert decisions(policy, values) == expected, name


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([5, 4.5, 4.5, 4.5, 4.5], [False, True, True, True, False]),
        ([4, 3.9, 3.5, 2.9], [False, False, True, False]),
        ([5, 3.5, 6, 2.5], [False, False, True, False]),
        ([4, 4, 3, 3], [False, False, False, False]),
    ],
)
def test_maximize_mirrors_minimize(values: list[float], expected: list[bool]) -> None:
    negated = stopper().prepare(MAX, [curve([-v for v in c]) for c in COMPLETED])
    assert negated.median_at(2).median == -4.0  # type: ignore[union-attr]
    assert decisions(negated, [-v for v in values]) == expected


def test_maximize_accuracy_curves() -> None:
    acc = Objective(ObjectiveType.MAXIMIZE, "accuracy")
    completed = [
        [0.5, 0.7, 0.8, 0.85],  # averages 0.5, 0.6, 0.666.., 0.7125
        [0.6, 0.8, 0.9, 0.92],  # 0.6, 0.7, 0.766.., 0.805
        [0.4, 0.5, 0.6, 0.65],  # 0.4, 0.45, 0.5, 0.5375
    ]
    policy = stopper().prepare(acc, [curve(c, "accuracy") for c in completed])
    assert policy.median_at(2).median == pytest.approx(0.6)  # type: ignore[union-attr]
    assert decisions(policy, [0.3, 0.55, 0.6, 0.9]) == [False, True, True, False]
    assert decisions(policy, [0.3, 0.61, 0.62, 0.63]) == [False, False, True, True]
    stop = policy.decide(curve([0.3, 0.55], "accuracy"))
    assert stop.stop and stop.reason == "TrialEarlyStopped"
    assert stop.message == (
        "best accuracy 0.55 at step 2 is worse than the median 0.6 of 3 completed trials' "
        "running averages"
    )


def test_stop_message_names_metric_step_and_median(policy: MedianStopPolicy) -> None:
    decision = policy.decide(curve([5, 4.5]))
    assert decision.stop
    assert decision.message == (
        "best loss 4.5 at step 2 is worse than the median 4 of 4 completed trials' "
        "running averages"
    )
    assert "not worse" in policy.decide(curve([5, 3])).message
    assert "before start_step 2" in policy.decide(curve([5])).message
    undecided = policy.decide(curve([5, 5, 5, 5, 5]))
    assert not undecided.stop
    assert "0 completed trials reached step 5" in undecided.message


# -- min_trials_required and start_step edges ------------------------------------------------


def test_min_trials_required_counts_trials_that_reached_the_step() -> None:
    policy = stopper(min_trials=4).prepare(MIN, [curve(c) for c in COMPLETED])
    # step 2 has 4 trials (decides), steps 3-4 only 3 (undecided)
    assert decisions(policy, [5, 4.5, 4.5, 4.5]) == [False, True, False, False]
    assert "3 completed trials reached step 3" in policy.decide(curve([5, 5, 5])).message


def test_exactly_min_trials_decides_one_fewer_does_not() -> None:
    three = stopper(min_trials=3).prepare(MIN, [curve(c) for c in COMPLETED[:3]])
    two = stopper(min_trials=3).prepare(MIN, [curve(c) for c in COMPLETED[:2]])
    assert three.decide(curve([9, 9])).stop
    assert not two.decide(curve([9, 9])).stop
    assert two.rules() == []


def test_no_completed_trials_never_stops() -> None:
    policy = stopper(min_trials=1, start_step=1).prepare(MIN, [])
    assert decisions(policy, [1e9, 1e9, float("nan")]) == [False, False, False]
    assert policy.rules() == []


def test_start_step_one_decides_at_the_first_report() -> None:
    policy = stopper(start_step=1).prepare(MIN, [curve(c) for c in COMPLETED])
    # step 1 median of {4, 2, 6, 8} = 5
    assert policy.median_at(1).median == 5.0  # type: ignore[union-attr]
    assert decisions(policy, [5.5]) == [True]
    assert decisions(policy, [5.0]) == [False]


def test_start_step_beyond_every_curve_never_decides() -> None:
    policy = stopper(start_step=10).prepare(MIN, [curve(c) for c in COMPLETED])
    assert not any(decisions(policy, [100] * 12))
    assert policy.rules() == []


def test_completed_trials_shorter_than_start_step_give_no_rule() -> None:
    policy = stopper(start_step=3).prepare(MIN, [curve([1, 1])] * 5)
    assert policy.rules() == []


# -- NaN, inf, unparsable, order --------------------------------------------------------------


def test_running_averages_skip_non_finite_values() -> None:
    assert running_averages([None, 2.0, None, 4.0]) == [None, 2.0, 2.0, 3.0]
    assert running_averages([]) == []


def test_objective_curve_orders_by_step_and_marks_non_finite() -> None:
    obs = [
        Observation.of("loss", 3.0, 7),
        Observation.of("acc", 0.9, 0),
        Observation.of("loss", "nan", 2),
        Observation.of("loss", "unavailable", 5),
        Observation.of("loss", "inf", 9),
        Observation.of("loss", 1.0, 0),
    ]
    assert objective_curve(obs, "loss") == [1.0, None, None, 3.0, None]


def test_equal_steps_keep_report_order() -> None:
    obs = [Observation.of("loss", v, 0) for v in (1.0, 2.0, 3.0)]
    assert objective_curve(obs, "loss") == [1.0, 2.0, 3.0]


def test_nan_reports_count_as_steps_but_not_in_averages() -> None:
    completed = [["nan", 2, 2], [4, "nan", 4], [6, 6, "nan"]]
    policy = stopper().prepare(MIN, [curve(c) for c in completed])
    # step 2 averages: 2 (only finite), 4, 6 -> 4; step 3: 2, 4, 6 -> 4
    assert policy.median_at(2).median == 4.0  # type: ignore[union-attr]
    assert policy.median_at(3).median == 4.0  # type: ignore[union-attr]


def test_completed_trial_without_finite_values_is_not_counted() -> None:
    completed = [[1, 1], [2, 2], ["nan", "nan"], ["unavailable"]]
    policy = stopper(min_trials=3).prepare(MIN, [curve(c) for c in completed])
    assert policy.median_at(2).trials == 2  # type: ignore[union-attr]
    assert policy.threshold(2) is None
    assert not policy.decide(curve([9, 9])).stop


def test_running_trial_with_only_nan_is_stopped_once_a_median_exists(
    policy: MedianStopPolicy,
) -> None:
    assert decisions(policy, ["nan", "nan", "nan", "nan", "nan"]) == [
        False,  # before start_step
        True,
        True,
        True,
        False,  # no completed trial reached step 5
    ]
    message = policy.decide(curve(["nan", "nan"])).message
    assert message == (
        "no finite loss in 2 reports, while the median of 4 completed trials' running "
        "averages at step 2 is 4"
    )


def test_non_finite_running_values_never_count_as_best(policy: MedianStopPolicy) -> None:
    assert decisions(policy, ["-inf", 5, 5]) == [False, True, True]
    assert decisions(policy, [1, "nan", "inf"]) == [False, False, False]
    maximize = stopper().prepare(MAX, [curve([-v for v in c]) for c in COMPLETED])
    assert decisions(maximize, ["inf", -5, -5]) == [False, True, True]


def test_other_metrics_are_ignored(policy: MedianStopPolicy) -> None:
    mixed = [Observation.of("acc", 0.1, 0), *curve([5, 4.5]), Observation.of("acc", 0.2, 1)]
    decision = policy.decide(mixed)
    assert decision.stop and "at step 2" in decision.message


def test_completed_observations_out_of_order_are_sorted_by_step() -> None:
    shuffled = [
        [Observation.of("loss", v, s) for s, v in reversed(list(enumerate(c)))] for c in COMPLETED
    ]
    policy = stopper().prepare(MIN, shuffled)
    assert policy.median_at(3).median == 3.0  # type: ignore[union-attr]


def test_explicit_step_numbers_with_gaps_count_reports() -> None:
    # steps 10, 20, 50: the third report is step 3 whatever its number
    gapped = [
        [Observation.of("loss", v, s) for s, v in zip((10, 20, 50), c, strict=True)]
        for c in ([1, 1, 1], [2, 2, 2], [3, 3, 3])
    ]
    policy = stopper().prepare(MIN, gapped)
    assert policy.median_at(3).median == 2.0  # type: ignore[union-attr]


# -- rules (Katib's wire form) -----------------------------------------------------------------


def test_rules_carry_the_median_at_start_step(policy: MedianStopPolicy) -> None:
    assert policy.rules() == [StopRule("loss", 4.0, Comparison.GREATER, 2)]
    maximize = stopper().prepare(MAX, [curve([-v for v in c]) for c in COMPLETED])
    assert maximize.rules() == [StopRule("loss", -4.0, Comparison.LESS, 2)]


def test_incremental_curve_matches_full_decision(policy: MedianStopPolicy) -> None:
    running = RunningCurve(MIN)
    obs = curve([5, 3.9, "nan", 3.5, 2.0])
    for n, o in enumerate(obs, start=1):
        running.add(o)
        assert policy.decide_curve(running) == policy.decide(obs[:n])


# -- property: the threshold is the true median of running averages ---------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
value_or_nan = st.one_of(finite, finite, finite, st.just(math.nan))
curves = st.lists(st.lists(value_or_nan, min_size=0, max_size=12), min_size=0, max_size=9)


def expected_median(completed: list[list[float]], step: int) -> tuple[float, int] | None:
    averages = []
    for values in completed:
        prefix = [v for v in values[:step] if not math.isnan(v)]
        if len(values) >= step and prefix:
            averages.append(statistics.fmean(prefix))
    return (statistics.median(averages), len(averages)) if averages else None


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    completed=curves,
    running=st.lists(value_or_nan, min_size=1, max_size=14),
    min_trials=st.integers(1, 5),
    start_step=st.integers(1, 6),
    maximize=st.booleans(),
)
def test_threshold_is_statistics_median_of_running_averages(
    completed: list[list[float]],
    running: list[float],
    min_trials: int,
    start_step: int,
    maximize: bool,
) -> None:
    objective = MAX if maximize else MIN
    policy = stopper(min_trials, start_step).prepare(objective, [curve(c) for c in completed])
    for step in range(start_step, 14):
        want = expected_median(completed, step)
        got = policy.median_at(step)
        if want is None:
            assert got is None
            continue
        assert got is not None
        assert got.trials == want[1]
        assert math.isclose(got.median, want[0], rel_tol=1e-9, abs_tol=1e-9)
        threshold = policy.threshold(step)
        assert (threshold is not None) == (want[1] >= min_trials)
    # the decision after the whole running curve follows the rule
    step = len(running)
    finite_values = [v for v in running if not math.isnan(v)]
    best = (max if maximize else min)(finite_values) if finite_values else None
    want = expected_median(completed, step)
    decision = policy.decide(curve(running))
    if step < start_step or want is None or want[1] < min_trials:
        assert not decision.stop
    elif best is None:
        assert decision.stop
    else:
        median = policy.median_at(step).median  # type: ignore[union-attr]
        assert decision.stop == (best < median if maximize else best > median)
