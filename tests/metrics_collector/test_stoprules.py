"""Katib's early-stopping rules as the sidecar applies them."""

from __future__ import annotations

import math

import pytest

from metrics_collector.errors import InvalidStopRuleError
from metrics_collector.stoprules import (
    Comparison,
    KatibStopRules,
    StopRule,
    objective_for,
)
from tunery.api import api_pb2
from tunery.trials import ObjectiveType, Observation


def reports(name: str, *values: float) -> list[Observation]:
    return [Observation.of(name, v, i) for i, v in enumerate(values)]


def run(rules: KatibStopRules, observations: list[Observation]) -> int | None:
    """Feed observations one by one as a collector does; the 1-based report that stops."""
    for i in range(1, len(observations) + 1):
        if rules(observations[:i]).stop:
            return i
    return None


def test_parse_katib_form() -> None:
    rule = StopRule.parse("accuracy;0.6;less;2")
    assert rule == StopRule("accuracy", 0.6, Comparison.LESS, 2)
    assert StopRule.parse(str(rule)) == rule
    assert StopRule.parse("loss;1e-3;GREATER;0").start_step == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy;0.6;LESS", "must be name;value;comparison;startStep"),
        (";0.6;LESS;2", "no metric name"),
        ("accuracy;high;LESS;2", "value 'high' is not a number"),
        ("accuracy;0.6;BELOW;2", "comparison 'BELOW'"),
        ("accuracy;0.6;LESS;two", "startStep 'two'"),
    ],
)
def test_parse_errors_quote_the_rule(text: str, message: str) -> None:
    with pytest.raises(InvalidStopRuleError, match=message):
        StopRule.parse(text)


def test_from_proto() -> None:
    proto = api_pb2.EarlyStoppingRule(
        name="loss", value="0.5", comparison=api_pb2.GREATER, start_step=4
    )
    assert StopRule.from_proto(proto) == StopRule("loss", 0.5, Comparison.GREATER, 4)


def test_objective_is_compared_as_best_so_far_at_the_start_step() -> None:
    maximize = objective_for(["accuracy", "loss"], ObjectiveType.MAXIMIZE)
    rule = StopRule("accuracy", 0.6, Comparison.LESS, 3)
    # Best so far at the 3rd report is 0.7 (not the 0.1 reported then): no stop, ever.
    assert run(KatibStopRules([rule], maximize), reports("accuracy", 0.7, 0.2, 0.1, 0.0)) is None
    # Best so far 0.5 < 0.6 at the 3rd report: stop there, not before.
    assert run(KatibStopRules([rule], maximize), reports("accuracy", 0.4, 0.5, 0.3, 0.9)) == 3


def test_rule_is_evaluated_only_at_its_start_step() -> None:
    minimize = objective_for(["loss"], ObjectiveType.MINIMIZE)
    rule = StopRule("loss", 1.0, Comparison.GREATER, 2)
    # At report 2 the best loss is 0.5: not above 1.0. Later reports never re-evaluate.
    assert run(KatibStopRules([rule], minimize), reports("loss", 0.5, 2.0, 3.0, 4.0)) is None


def test_start_step_zero_checks_every_report_and_other_metrics_use_raw_values() -> None:
    minimize = objective_for(["loss", "grad_norm"], ObjectiveType.MINIMIZE)
    rule = StopRule("grad_norm", 100.0, Comparison.GREATER, 0)
    rules = KatibStopRules([rule], minimize)
    assert run(rules, reports("grad_norm", 1.0, 200.0, 3.0)) == 2
    decision = rules(reports("grad_norm", 1.0, 200.0, 3.0))
    assert decision.reason == "TrialEarlyStopped"
    assert "grad_norm 200 > 100" in decision.message


def test_all_rules_must_hold() -> None:
    minimize = objective_for(["loss", "acc"], ObjectiveType.MINIMIZE)
    rules = KatibStopRules(
        [StopRule("loss", 1.0, Comparison.GREATER, 0), StopRule("acc", 0.5, Comparison.LESS, 0)],
        minimize,
    )
    observations = reports("loss", 2.0, 3.0)
    assert not rules(observations).stop
    observations += [Observation.of("acc", 0.4, 0)]
    assert rules(observations).stop


def test_nan_never_satisfies_nor_becomes_best() -> None:
    minimize = objective_for(["loss"], ObjectiveType.MINIMIZE)
    rules = KatibStopRules([StopRule("loss", 1.0, Comparison.GREATER, 0)], minimize)
    assert run(rules, reports("loss", math.nan, math.nan)) is None
    equal = KatibStopRules([StopRule("loss", 2.0, Comparison.EQUAL, 0)], minimize)
    assert run(equal, reports("loss", math.nan, 2.0)) == 2
