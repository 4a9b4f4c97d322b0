"""Rendering a trial whose conditional parameter is inactive (issue 20 point 2): its argv
element and env entry are left out, anything else is refused, and a parameter that is simply
not in the experiment is still an error."""

from __future__ import annotations

import pytest

from controller.templating import TemplateError, TrialMeta, render_trial_job

PARAMETERS = {"opt", "momentum"}
TRIAL_PARAMETERS = [
    {"name": "opt", "reference": "opt"},
    {"name": "momentum", "reference": "momentum"},
]
META = TrialMeta(name="exp-abc")


def job(container: dict) -> dict:
    return {"spec": {"template": {"spec": {"containers": [{"name": "main", **container}]}}}}


def container_of(rendered: dict) -> dict:
    return rendered["spec"]["template"]["spec"]["containers"][0]  # type: ignore[no-any-return]


TEMPLATE = job(
    {
        "command": ["python", "train.py", "--momentum=${trialParameters.momentum}"],
        "args": ["--opt", "${trialParameters.opt}", "${trialParameters.momentum}"],
        "env": [
            {"name": "MOMENTUM", "value": "${trialParameters.momentum}"},
            {"name": "OPT", "value": "${trialParameters.opt}"},
        ],
    }
)


def test_an_active_parameter_renders_as_usual() -> None:
    rendered = render_trial_job(
        TEMPLATE, TRIAL_PARAMETERS, {"opt": "sgd", "momentum": "0.9"}, META, PARAMETERS
    )
    c = container_of(rendered)
    assert c["command"] == ["python", "train.py", "--momentum=0.9"]
    assert c["args"] == ["--opt", "sgd", "0.9"]
    assert [e["name"] for e in c["env"]] == ["MOMENTUM", "OPT"]


def test_an_inactive_parameter_drops_its_argv_elements_and_env_entries() -> None:
    rendered = render_trial_job(TEMPLATE, TRIAL_PARAMETERS, {"opt": "adam"}, META, PARAMETERS)
    c = container_of(rendered)
    assert c["command"] == ["python", "train.py"]
    assert c["args"] == ["--opt", "adam"]
    assert c["env"] == [{"name": "OPT", "value": "adam"}]


def test_an_inactive_parameter_elsewhere_is_an_error() -> None:
    template = job({"command": ["python"], "workingDir": "/runs/${trialParameters.momentum}"})
    with pytest.raises(TemplateError, match="inactive in this trial"):
        render_trial_job(template, TRIAL_PARAMETERS, {"opt": "adam"}, META, PARAMETERS)


def test_an_inactive_parameter_in_a_shell_script_is_an_error() -> None:
    template = job({"command": ["sh", "-c", "train --m ${trialParameters.momentum}"]})
    with pytest.raises(TemplateError, match="inactive in this trial"):
        render_trial_job(template, TRIAL_PARAMETERS, {"opt": "adam"}, META, PARAMETERS)


def test_a_reference_to_no_parameter_is_still_an_error() -> None:
    with pytest.raises(TemplateError, match="not a parameter of this trial"):
        render_trial_job(TEMPLATE, TRIAL_PARAMETERS, {"opt": "adam"}, META, {"opt"})
