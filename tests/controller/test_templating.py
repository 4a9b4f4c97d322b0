"""controller.templating: Katib's substitution, meta references, shell-safe values."""

from __future__ import annotations

import subprocess

import pytest

from controller.templating import (
    TemplateError,
    TrialMeta,
    primary_container,
    render_trial_job,
    script_problems,
)

JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "training",
                        "command": ["python", "train.py"],
                        "args": ["--lr=${trialParameters.lr}", "--name", "${trialParameters.n}"],
                        "env": [{"name": "OPT", "value": "${trialParameters.opt}"}],
                    }
                ]
            }
        }
    },
}
PARAMS = [
    {"name": "lr", "reference": "learning_rate"},
    {"name": "n", "reference": "${trialSpec.Name}"},
    {"name": "opt", "reference": "optimizer"},
]
META = TrialMeta(
    name="exp-abc",
    namespace="ns",
    kind="Job",
    api_version="batch/v1",
    labels={"team": "ml"},
    annotations={"note": "x"},
)


def test_substitutes_parameters_and_meta_and_sets_metadata() -> None:
    job = render_trial_job(JOB, PARAMS, {"learning_rate": "0.01", "optimizer": "adam"}, META)
    container = primary_container(job, "training")
    assert container["args"] == ["--lr=0.01", "--name", "exp-abc"]
    assert container["env"] == [{"name": "OPT", "value": "adam"}]
    assert job["metadata"] == {"name": "exp-abc", "namespace": "ns"}
    assert "${" not in str(job)
    assert JOB["spec"]["template"]["spec"]["containers"][0]["args"][0].startswith("--lr=${")


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("${trialSpec.Namespace}", "ns"),
        ("${trialSpec.Kind}", "Job"),
        ("${trialSpec.APIVersion}", "batch/v1"),
        ("${trialSpec.Labels[team]}", "ml"),
        ("${trialSpec.Annotations[note]}", "x"),
    ],
)
def test_meta_references(reference: str, expected: str) -> None:
    params = [*PARAMS[:2], {"name": "opt", "reference": reference}]
    job = render_trial_job(JOB, params, {"learning_rate": "1"}, META)
    assert primary_container(job, "training")["env"][0]["value"] == expected


def test_errors_name_the_placeholder() -> None:
    with pytest.raises(TemplateError, match=r"\$\{trialParameters.n\} is not defined"):
        render_trial_job(
            JOB, [PARAMS[0], PARAMS[2]], {"learning_rate": "1", "optimizer": "a"}, META
        )
    with pytest.raises(TemplateError, match="references 'optimizer'"):
        render_trial_job(JOB, PARAMS, {"learning_rate": "1"}, META)
    with pytest.raises(TemplateError, match="no such label"):
        render_trial_job(
            JOB,
            [*PARAMS[:2], {"name": "opt", "reference": "${trialSpec.Labels[x]}"}],
            {"learning_rate": "1"},
            META,
        )
    with pytest.raises(TemplateError, match="matches no container"):
        primary_container(JOB, "nope")


EVIL = [
    "; touch PWNED",
    "$(touch PWNED)",
    "`touch PWNED`",
    "a' ; touch PWNED; '",
    '" && touch PWNED "',
    "x\ntouch PWNED",
    "${HOME}",
]


@pytest.mark.parametrize("value", EVIL)
def test_values_in_shell_scripts_are_quoted_and_never_executed(tmp_path, value: str) -> None:
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "command": ["sh", "-c"],
                            "args": ["printf '%s' ${trialParameters.v} > out.txt"],
                        }
                    ]
                }
            }
        },
    }
    rendered = render_trial_job(job, [{"name": "v", "reference": "v"}], {"v": value}, META)
    container = primary_container(rendered, "c")
    subprocess.run([*container["command"], *container["args"]], cwd=tmp_path, check=True)
    assert not (tmp_path / "PWNED").exists()
    assert (tmp_path / "out.txt").read_text() == value


def _job(command: list[str], args: list[str] | None = None) -> dict:
    container: dict = {"name": "c", "command": command}
    if args is not None:
        container["args"] = args
    return {"spec": {"template": {"spec": {"containers": [{"name": "side"}, container]}}}}


def test_unsafe_placeholders_are_template_errors_and_script_problems() -> None:
    job = _job(["bash"], ["-o", "pipefail", "-c", "cat <<EOF\n${trialParameters.v}\nEOF"])
    with pytest.raises(TemplateError, match=r"'c' args\[3\]: .*inside a here-document"):
        render_trial_job(job, [{"name": "v", "reference": "v"}], {"v": "1"}, META)
    assert [loc for loc, _ in script_problems(job)] == [
        ("spec", "template", "spec", "containers", 1, "args", 3)
    ]
    opaque = _job(["timeout", "9", "sh", "-c", "prog ${trialParameters.v}"])
    ((loc, why),) = script_problems(opaque)
    assert loc[-2:] == ("command", 4) and "'timeout'" in why
    safe = _job(["sh", "-c", "cd /x && python y.py --a ${trialParameters.v}"])
    assert script_problems(safe) == []


def test_a_value_after_the_script_is_an_argument_not_code() -> None:
    job = _job(["sh", "-c", 'printf %s "$1"', "name", "${trialParameters.v}"])
    rendered = render_trial_job(job, [{"name": "v", "reference": "v"}], {"v": "$(x)"}, META)
    assert primary_container(rendered, "c")["command"][-1] == "$(x)"
