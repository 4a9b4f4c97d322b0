"""``tunery run`` end to end with a conditional parameter and a constraint (issue 20 points 2
and 3): the YAML extensions validate, the inactive parameter's argv element is left out of the
trial's command, TPE runs with both extensions through the suggestion service, and ``tunery
best`` / ``tunery trials`` rank and mark infeasible trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tunery.cli import EXIT_INVALID, main

SCRIPT = """
import sys
args = dict(a[2:].split('=', 1) for a in sys.argv[1:])
if ('momentum' in args) != (args['opt'] == 'sgd'):
    sys.exit(f'momentum given={"momentum" in args} for opt={args["opt"]}')
lr = float(args['lr'])
momentum = float(args.get('momentum', '0'))
print(f'loss={-10 * lr + 0.01 * (1 - momentum)}')
print(f'slow={lr - 0.05}')
"""

EXPERIMENT = """
apiVersion: kubeflow.org/v1beta1
kind: Experiment
metadata:
  name: cond-test
spec:
  objective:
    type: minimize
    objectiveMetricName: loss
    constraints: [slow]
  algorithm:
    algorithmName: tpe
    algorithmSettings: [{name: n_startup_trials, value: "4"}, {name: random_state, value: "7"}]
  parallelTrialCount: 2
  maxTrialCount: 10
  parameters:
    - {name: opt, parameterType: categorical, feasibleSpace: {list: [sgd, adam]}}
    - name: momentum
      parameterType: double
      feasibleSpace: {min: "0.0", max: "0.9"}
      condition: {parameter: opt, values: [sgd]}
    - {name: lr, parameterType: double, feasibleSpace: {min: "0.01", max: "0.1"}}
  trialTemplate:
    primaryContainerName: main
    trialParameters:
      - {name: opt, reference: opt}
      - {name: momentum, reference: momentum}
      - {name: lr, reference: lr}
    trialSpec:
      apiVersion: batch/v1
      kind: Job
      spec:
        template:
          spec:
            containers:
              - name: main
                command:
                  - PYTHON
                  - -c
                  - SCRIPT
                  - --opt=${trialParameters.opt}
                  - --momentum=${trialParameters.momentum}
                  - --lr=${trialParameters.lr}
"""


def _experiment(**replace: str) -> str:
    text = EXPERIMENT.replace("PYTHON", sys.executable).replace("SCRIPT", json.dumps(SCRIPT))
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TUNERY_DB_URL", f"sqlite:///{tmp_path}/t.db")
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_run_a_conditional_constrained_experiment(cli, tmp_path: Path) -> None:
    (tmp_path / "exp.yaml").write_text(_experiment())
    result = cli("run", "exp.yaml")
    assert result.exit_code == 0, result.output

    trials = json.loads(cli("trials", "cond-test", "-o", "json").output)
    assert len(trials) == 10
    assert all(t["condition"] == "Succeeded" for t in trials), [t["message"] for t in trials]
    for t in trials:
        assert ("momentum" in t["parameters"]) == (t["parameters"]["opt"] == "sgd")
        assert t["feasible"] == (t["values"]["slow"] <= 0)
    feasible = [t for t in trials if t["feasible"]]
    assert feasible and len(feasible) < len(trials)

    best = json.loads(cli("best", "cond-test", "-o", "json").output)
    expected = min(feasible, key=lambda t: t["values"]["loss"])
    assert best["bestTrialName"] == expected["name"]
    status = json.loads(cli("status", "cond-test", "-o", "json").output)
    assert status["currentOptimalTrial"]["bestTrialName"] == expected["name"]

    table = cli("trials", "cond-test").output
    assert table.count("Succeeded (infeasible)") == len(trials) - len(feasible)


def test_a_conditional_placeholder_in_a_shell_script_is_refused(cli, tmp_path: Path) -> None:
    text = _experiment()
    start = text.index("                command:")
    end = text.index("--lr=${trialParameters.lr}") + len("--lr=${trialParameters.lr}")
    text = (
        text[:start]
        + "                command: [sh, -c, 'echo ${trialParameters.momentum}"
        + " ${trialParameters.opt} ${trialParameters.lr}']"
        + text[end:]
    )
    (tmp_path / "exp.yaml").write_text(text)
    result = cli("run", "exp.yaml")
    assert result.exit_code == EXIT_INVALID, result.output
    assert "containers[0].command[2]: ${trialParameters.momentum} refers to a conditional" in (
        result.output
    )


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (
            {"{parameter: opt, values: [sgd]}": "{parameter: optim, values: [sgd]}"},
            "parameters[1].condition.parameter",
        ),
        (
            {"{parameter: opt, values: [sgd]}": "{parameter: opt, values: [nag]}"},
            "parameters[1].condition.values[0]",
        ),
        ({"constraints: [slow]": "constraints: [loss]"}, "objective.constraints[0]"),
        (
            {
                "- name: main": "- name: main\n"
                + " " * 16
                + 'workingDir: "${trialParameters.momentum}"'
            },
            "containers[0].workingDir: ${trialParameters.momentum} refers to conditional",
        ),
    ],
)
def test_bad_extensions_are_refused_naming_the_field(
    cli, tmp_path: Path, replace: dict[str, str], message: str
) -> None:
    (tmp_path / "exp.yaml").write_text(_experiment(**replace))
    result = cli("run", "exp.yaml")
    assert result.exit_code == EXIT_INVALID, result.output
    assert message in result.output
