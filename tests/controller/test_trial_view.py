"""controller.trial_view: the incremental view agrees with a full recount after any sequence
of changes (counts, the best trial with Katib's tie rule, the trials a step looks at), and the
status document's name lists stay bounded while its counters stay exact."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random

from controller import status
from controller.trial_view import TrialView
from tunery.store.base import TrialRecord
from tunery.trials import Objective, ObjectiveType, TrialCondition

OBJECTIVE = Objective(ObjectiveType.MINIMIZE, "loss")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _trial(name: str, condition: TrialCondition = TrialCondition.CREATED) -> TrialRecord:
    return TrialRecord(name=name, experiment_name="e", assignment={"x": "1"}, condition=condition)


def _with_loss(trial: TrialRecord, condition: TrialCondition, value: float) -> TrialRecord:
    metric = {"name": "loss", "min": str(value), "max": str(value), "latest": str(value)}
    return dataclasses.replace(
        trial, condition=condition, observation={"metrics": [metric]}, completion_time=NOW
    )


def test_random_changes_match_a_full_recount() -> None:
    rng = random.Random(7)
    view = TrialView(OBJECTIVE)
    current: dict[str, TrialRecord] = {}
    for step in range(400):
        changed = []
        for i in range(rng.randint(0, 3)):  # new trials
            changed.append(_trial(f"t{step}-{i}"))
        for name in rng.sample(sorted(current), min(len(current), rng.randint(0, 4))):
            condition = rng.choice(list(TrialCondition))
            if rng.random() < 0.6:
                changed.append(
                    _with_loss(current[name], condition, rng.choice([0.1, 0.2, 0.3, 0.5]))
                )
            else:  # e.g. the best trial losing its metrics or failing
                changed.append(dataclasses.replace(current[name], condition=condition))
        view.apply(changed)
        for t in changed:
            current[t.name] = t
        records = list(current.values())
        assert view.trials() == records
        assert view.counts() == status.count_trials(records)
        expected = status.optimal_trial(records, OBJECTIVE)
        got = view.best()
        assert (None if expected is None else (expected[0].name, expected[1])) == (
            None if got is None else (got[0].name, got[1])
        )
        assert [t.name for t in view.unfinished()] == [
            t.name
            for t in records
            if t.condition is TrialCondition.RUNNING
            or (t.condition is TrialCondition.EARLY_STOPPED and t.completion_time is None)
        ]


def test_a_later_trial_with_an_equal_value_does_not_replace_the_best() -> None:
    a, b = _trial("a"), _trial("b")
    view = TrialView.of([a, b], OBJECTIVE)
    view.apply([_with_loss(b, TrialCondition.SUCCEEDED, 0.2)])
    view.apply([_with_loss(a, TrialCondition.SUCCEEDED, 0.2)])  # created first: wins the tie
    best = view.best()
    assert best is not None and best[0].name == "a"


def test_status_lists_are_bounded_and_counters_exact() -> None:
    trials = [_with_loss(_trial(f"t{i:04d}"), TrialCondition.SUCCEEDED, i) for i in range(1000)]
    trials.append(_trial("run", TrialCondition.RUNNING))
    built = status.build_status({}, TrialView.of(trials, OBJECTIVE), None, NOW)
    assert built["trialsSucceeded"] == 1000 and built["trials"] == 1001
    assert len(built["succeededTrialList"]) == status.STATUS_LIST_LIMIT
    assert built["succeededTrialList"][-1] == "t0999"  # the most recent ones
    assert built["runningTrialList"] == ["run"] and built["trialsRunning"] == 1
    assert built["currentOptimalTrial"]["bestTrialName"] == "t0000"
