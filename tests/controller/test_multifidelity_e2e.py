"""``tunery run`` of the multi-fidelity examples: Katib's hyperband example (run locally), the
whole Hyperband schedule, and random search with asha early stopping. Trials are real local
processes; the store is a fresh SQLite file per test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from suggestion.algorithms.hyperband import schedule
from tunery.cli import main
from tunery.store import open_store
from tunery.trials import TrialCondition

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(tmp_path: Path, relative: str) -> dict:
    result = CliRunner().invoke(
        main,
        [
            "run",
            str(EXAMPLES / relative),
            "-o",
            "json",
            "--db",
            f"sqlite:///{tmp_path}/t.db",
            "--logs-dir",
            str(tmp_path / "logs"),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    output = result.output
    return json.loads(output[output.index("{") :])


def test_katibs_hyperband_example_runs(tmp_path: Path) -> None:
    result = run(tmp_path, "hyperband/hyperband.yaml")
    assert (result["condition"], result["reason"]) == ("Succeeded", "ExperimentMaxTrialsReached")
    assert result["trials"] == result["succeeded"] == 2
    trials = open_store(f"sqlite:///{tmp_path}/t.db").list_trials("hyperband")
    # bracket s_max=1's master rung: two configurations at num-epochs int(r_l * eta**-1) = 1
    assert [t.assignment["num-epochs"] for t in trials] == ["1", "1"]
    assert trials[0].assignment["lr"] != trials[1].assignment["lr"]


def test_the_whole_hyperband_schedule_runs_and_promotes_the_best(tmp_path: Path) -> None:
    result = run(tmp_path, "hyperband/hyperband-full.yaml")
    assert (result["condition"], result["reason"]) == (
        "Succeeded",
        "ExperimentSuggestionEndReached",
    )
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    trials = store.list_trials("hyperband-full")
    rungs = schedule(4, 2)
    assert len(trials) == sum(r.size for r in rungs) == 15
    expected = [str(r.resource) for r in rungs for _ in range(r.size)]
    assert [t.assignment["num-epochs"] for t in trials] == expected
    assert all(t.condition is TrialCondition.SUCCEEDED for t in trials)

    def loss(t):  # type: ignore[no-untyped-def]
        return float(t.observation["metrics"][0]["min"])

    def config(t):  # type: ignore[no-untyped-def]
        return (t.assignment["lr"], t.assignment["momentum"])

    first, second, third = trials[:4], trials[4:6], trials[6]
    assert [config(t) for t in second] == [config(t) for t in sorted(first, key=loss)[:2]]
    assert config(third) == config(min(second, key=loss))
    assert len({config(t) for t in trials[7:10]} | {config(t) for t in first}) == 7


def test_asha_example_stops_trials_at_rungs(tmp_path: Path) -> None:
    result = run(tmp_path, "early-stopping/asha.yaml")
    assert result["condition"] == "Succeeded" and result["trials"] == 10
    store = open_store(f"sqlite:///{tmp_path}/t.db")
    trials = store.list_trials("asha")
    stopped = [t for t in trials if t.condition is TrialCondition.EARLY_STOPPED]
    assert stopped and any(t.condition is TrialCondition.SUCCEEDED for t in trials)
    for trial in stopped:
        assert trial.reason == "TrialEarlyStopped" and "rung step" in trial.message
    # stopped at a rung (1, 3 or 9 reports) or just after it, well before the 10 epochs
    assert min(len(store.get_observations(t.name, "accuracy")) for t in stopped) < 10
