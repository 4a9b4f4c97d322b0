"""The ``tunery`` command: exit codes, inspection commands, JSON output, bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import EXIT_FAILED, EXIT_INVALID, main

EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: cli-test
spec:
  objective: {type: minimize, objectiveMetricName: loss}
  algorithm: {algorithmName: random}
  parallelTrialCount: 2
  maxTrialCount: 4
  parameters:
    - {name: x, parameterType: int, feasibleSpace: {min: "0", max: "50"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters: [{name: x, reference: x}]
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command: [PYTHON, -c, SCRIPT, "${trialParameters.x}"]
""".replace("PYTHON", sys.executable).replace(
    "SCRIPT", "\"import sys; x = int(sys.argv[1]); print(f'loss={(x - 20) ** 2}')\""
)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_run_then_inspect(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output
    assert "experiment cli-test: Succeeded (ExperimentMaxTrialsReached)" in result.output
    assert "best trial: cli-test-" in result.output

    listing = json.loads(cli("list", "-o", "json").output)
    assert [(e["name"], e["condition"], e["trials"]) for e in listing] == [
        ("cli-test", "Succeeded", 4)
    ]
    assert "cli-test" in cli("list").output

    trials = json.loads(cli("trials", "cli-test", "-o", "json").output)
    assert len(trials) == 4 and all(t["condition"] == "Succeeded" for t in trials)
    assert all(isinstance(t["objective"], float) for t in trials)
    table = cli("trials", "cli-test").output.splitlines()
    assert table[0].split() == ["TRIAL", "STATUS", "LOSS", "PARAMETERS"] and len(table) == 5

    best = json.loads(cli("best", "cli-test", "-o", "json").output)
    best_value = min(t["objective"] for t in trials)
    loss = {m["name"]: m for m in best["observation"]["metrics"]}["loss"]
    assert float(loss["min"]) == best_value

    status = json.loads(cli("status", "cli-test", "-o", "json").output)
    assert status["trialsSucceeded"] == 4 and status["currentOptimalTrial"]["bestTrialName"]

    logs = cli("logs", trials[0]["name"])
    assert logs.exit_code == 0 and logs.output.startswith("loss=")

    again = cli("run", "exp.yaml")  # a finished experiment: resubmitting changes nothing
    assert again.exit_code == 0 and "resuming" in again.output

    assert cli("delete", "cli-test", "-y").exit_code == 0
    assert json.loads(cli("list", "-o", "json").output) == []


def test_unknown_names_exit_1_with_a_message(cli) -> None:
    result = cli("status", "nope")
    assert result.exit_code == EXIT_FAILED
    assert "nope" in result.output and "Traceback" not in result.output
    assert cli("logs", "no-such-trial").exit_code == EXIT_FAILED
    assert cli("best", "nope").exit_code == EXIT_FAILED


def test_invalid_yaml_lists_every_problem_and_exits_2(cli, tmp_path: Path) -> None:
    bad = EXPERIMENT.replace('min: "0"', 'min: "abc"').replace("random", "randm")
    (tmp_path / "bad.yaml").write_text(bad)
    for command in ("validate", "run"):
        result = cli(command, "bad.yaml")
        assert result.exit_code == EXIT_INVALID
        assert 'spec.parameters[0].feasibleSpace.min: "abc" is not a number' in result.output
        assert 'spec.algorithm.algorithmName: "randm"' in result.output
        assert "Traceback" not in result.output
    (tmp_path / "garbage.yaml").write_text("{ not: yaml: at all")
    result = cli("validate", "garbage.yaml")
    assert result.exit_code == EXIT_INVALID and "Traceback" not in result.output


def test_bad_algorithm_settings_are_invalid_input_and_nothing_is_stored(
    cli, tmp_path: Path
) -> None:
    bad = EXPERIMENT.replace(
        "algorithm: {algorithmName: random}",
        "algorithm: {algorithmName: tpe, algorithmSettings: [{name: gama, value: '0.3'}]}",
    )
    (tmp_path / "bad.yaml").write_text(bad)
    for command in ("validate", "run"):
        result = cli(command, "bad.yaml")
        assert result.exit_code == EXIT_INVALID, result.output
        assert (
            "spec.algorithm.algorithmSettings[0].name: unknown setting gama for algorithm tpe; "
            'did you mean "gamma"?'
        ) in result.output
    assert cli("list", "-o", "json").output.strip() == "[]"  # run stored nothing
    # a server given for the name answers for its settings, as the reconciler asks it
    served = cli("validate", "bad.yaml", "--suggestion-endpoint", "tpe=localhost:1")
    assert served.exit_code == 0, served.output


def test_changed_spec_under_the_same_name_is_refused(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    (tmp_path / "exp2.yaml").write_text(EXPERIMENT.replace('max: "50"', 'max: "60"'))
    result = cli("run", "exp2.yaml")
    assert result.exit_code == EXIT_INVALID
    assert "already exists with a different spec (changed: spec.parameters)" in result.output


def test_raising_max_trials_continues_only_when_resume_policy_allows(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    assert cli("run", "exp.yaml").exit_code == 0
    refused = cli("resume", "cli-test", "--max-trials", "6")
    assert refused.exit_code == EXIT_INVALID and "resumePolicy" in refused.output

    (tmp_path / "long.yaml").write_text(
        EXPERIMENT.replace("cli-test", "long-running").replace(
            "  maxTrialCount: 4", "  maxTrialCount: 4\n  resumePolicy: LongRunning"
        )
    )
    assert cli("run", "long.yaml").exit_code == 0
    resumed = cli("resume", "long-running", "--max-trials", "6")
    assert resumed.exit_code == 0, resumed.output
    status = json.loads(cli("status", "long-running", "-o", "json").output)
    assert status["trials"] == 6
    reasons = [c["reason"] for c in status["conditions"]]
    assert "ExperimentRestarting" in reasons


def test_bad_endpoint_flag_is_invalid_input(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(EXPERIMENT)
    result = cli("run", "exp.yaml", "--suggestion-endpoint", "nonsense")
    assert result.exit_code == EXIT_INVALID and "NAME=HOST:PORT" in result.output
