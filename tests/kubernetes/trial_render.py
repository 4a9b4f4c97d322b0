"""Render an example Experiment's first trial the way the operator does, for tests.

Used by ``test_manifests.py`` (the rendered jobs validate against the Kubernetes schema) and
``test_deploy_security.py`` (the rendered pods pass PodSecurity ``restricted`` where the
template does, and carry the labels the NetworkPolicies select). Talks to no API: the
:class:`KubernetesRunner` only builds the job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from controller.checkpoints import plan_for
from controller.reconcile import EXPERIMENT_LABEL
from controller.runners.base import TrialLaunch
from controller.runners.kubernetes import KubernetesRunner
from controller.sidecar import CollectorSettings
from controller.templating import TrialMeta, render_trial_job
from suggestion.algorithms.pbt import PARENT_LABEL
from tunery.experiment import load_experiment


def render_example(
    path: Path, namespace: str = "team-a", collector: CollectorSettings | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the defaulted Experiment spec, the trial job as the operator would create it) for the
    Experiment in ``path``, its first trial taking each parameter's first or lowest value."""
    experiment = load_experiment(yaml.safe_load(path.read_text())).to_document()
    spec = experiment["spec"]
    template = spec["trialTemplate"]
    assignment = {p["name"]: _value(p) for p in spec["parameters"]}
    name = f"{experiment['metadata']['name']}-abcd1234"
    parent = f"{experiment['metadata']['name']}-parent00"
    meta = TrialMeta(
        name=name,
        namespace=namespace,
        kind=template["trialSpec"]["kind"],
        api_version=template["trialSpec"]["apiVersion"],
        labels={EXPERIMENT_LABEL: experiment["metadata"]["name"]},
    )
    job = render_trial_job(
        template["trialSpec"], template.get("trialParameters") or [], assignment, meta
    )
    runner = KubernetesRunner(
        None,  # type: ignore[arg-type]  # build_job talks to no API
        namespace=namespace,
        spec=spec,
        collector=collector or CollectorSettings("tunery:test", db_manager_address="db:6789"),
    )
    launch = TrialLaunch(
        trial_name=name,
        experiment_name=experiment["metadata"]["name"],
        job=job,
        primary_container_name=template["primaryContainerName"],
        log_path=Path("unused.log"),
        base_dir=path.parent,
        env={"KATIB_TRIAL_NAME": name},
        success_condition=template["successCondition"],
        failure_condition=template["failureCondition"],
        # a pbt trial continuing a parent's checkpoint (None without suggestion_trial_dir)
        checkpoint=plan_for(spec, experiment["metadata"]["name"], name, {PARENT_LABEL: parent}),
    )
    return spec, runner.build_job(launch)


def _value(parameter: dict[str, Any]) -> str:
    space = parameter["feasibleSpace"]
    if parameter["parameterType"] in ("categorical", "discrete"):
        return str(space["list"][0])
    return str(space["min"])
