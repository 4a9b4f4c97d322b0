"""End to end through ``tunery run``: hostile parameter values in shell-script templates.

Eleven hostile values (command substitution, backticks, ``;``, quotes, a newline, ``|``,
``&&``, ``$HOME``, ``*``, mixed quotes) x the template shapes of issue 14: every trial
Succeeded, each program received ``--v=<value>`` verbatim, and nothing the values spell ran.
Also: ``tunery validate``/``run`` refuse an unanalysable template at its field (exit 2).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from controller.settings_check import load_checked
from tunery.cli import EXIT_INVALID, main
from tunery.experiment import ExperimentError
from tunery.store import open_store

pytestmark = pytest.mark.slow

HOSTILE = [
    "$(touch X1)",
    "`touch X2`",
    "; touch X3",
    "it's",
    'say "hi"',
    "a\ntouch X4",
    "| touch X5",
    "&& touch X6",
    "$HOME",
    "*",
    "'\"`touch X7`\"' $(touch X8)",
]
P = "${trialParameters.v}"
OUT = '"$TUNERY_TRIAL_NAME.out"'
PRINT = "printf '%s\\0'"
SHAPES: dict[str, dict[str, list[str]]] = {
    "sh-c-double": {"command": ["sh", "-c", f'{PRINT} "--v={P}" > {OUT}; echo loss=1']},
    "sh-c-single": {"command": ["sh", "-c", f"{PRINT} '--v={P}' > {OUT}; echo loss=1"]},
    "sh-c-bare": {"command": ["sh", "-c", f"{PRINT} --v={P} > {OUT} && echo loss=1"]},
    "bash-pipefail": {
        "command": ["bash", "-o", "pipefail", "-c", f"{PRINT} --v={P} | cat > {OUT}; echo loss=1"]
    },
    "env-sh": {"command": ["/usr/bin/env", "sh", "-c", f'{PRINT} "--v={P}" > {OUT}; echo loss=1']},
    "command-args": {
        "command": ["sh"],
        "args": ["-c", f"cd . && {PRINT} '--v={P}' > {OUT}\necho loss=1"],
    },
    "env-assign-bash-ec": {
        "command": ["env", "A=1", "bash", "-ec", f'X={P}; {PRINT} "--v=$X" > {OUT}; echo loss=1']
    },
}


def document(name: str, container: dict[str, Any], workdir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "grid"},
            "parallelTrialCount": 4,
            "maxTrialCount": len(HOSTILE),
            "parameters": [
                {"name": "v", "parameterType": "categorical", "feasibleSpace": {"list": HOSTILE}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "v", "reference": "v"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "main", "workingDir": str(workdir), **container}
                                ]
                            }
                        }
                    },
                },
            },
        },
    }


def run_cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        [*args, "--db", f"sqlite:///{tmp_path}/t.db", "--logs-dir", str(tmp_path / "logs")],
        catch_exceptions=False,
    )
    return result.exit_code, result.output


@pytest.mark.parametrize("shape", SHAPES)
def test_hostile_values_arrive_verbatim_and_nothing_runs(tmp_path: Path, shape: str) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(document(shape, SHAPES[shape], workdir)))
    code, output = run_cli(tmp_path, "run", str(path), "-o", "json")
    assert code == 0, output
    result = json.loads(output[output.index("{") :])
    assert result["trials"] == result["succeeded"] == len(HOSTILE), output
    trials = open_store(f"sqlite:///{tmp_path}/t.db").list_trials(shape)
    received = {
        t.assignment["v"]: (workdir / f"{t.name}.out").read_bytes().decode() for t in trials
    }
    assert received == {value: f"--v={value}\0" for value in HOSTILE}
    assert sorted(p.suffix for p in workdir.iterdir()) == [".out"] * len(HOSTILE)
    assert not list(tmp_path.rglob("X*"))


@pytest.mark.parametrize(
    ("container", "field", "why"),
    [
        (
            {"command": ["sh", "-c", f"cat <<EOF > cfg\nlr: {P}\nEOF\npython t.py"]},
            "command[2]",
            "inside a here-document",
        ),
        ({"command": ["bash"], "args": ["-lc", f"eval prog {P}"]}, "args[1]", "eval"),
        ({"command": ["sh", "-c", f"sh -c 'prog {P}'"]}, "command[2]", "nested sh -c"),
        ({"command": ["env", "-S", f"sh -c 'prog {P}'"]}, "command[2]", "env -S"),
    ],
)
def test_unanalysable_templates_are_invalid_input(
    tmp_path: Path, container: dict[str, Any], field: str, why: str
) -> None:
    doc = document("bad", container, tmp_path)
    at = f"spec.trialTemplate.trialSpec.spec.template.spec.containers[0].{field}: "
    with pytest.raises(ExperimentError) as caught:
        load_checked(doc)
    assert str(caught.value).startswith(at) and why in str(caught.value)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    validate = CliRunner().invoke(main, ["validate", str(path)], catch_exceptions=False)
    for code, output in [
        (validate.exit_code, validate.output),
        run_cli(tmp_path, "run", str(path)),
    ]:
        assert code == EXIT_INVALID, output
        assert at in output and why in output and "Traceback" not in output
