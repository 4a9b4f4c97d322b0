"""Metrics collector checks that need the collector's knowledge, at admission.

Called by :func:`controller.settings_check.load_checked` (``tunery validate``/``run``, the
SDK's local ``tune()``) and by the Kubernetes operator before it stores an Experiment, so a
name the collector could never match is refused at its field instead of failing every trial.
:func:`collector_problems`: with the PrometheusMetric collector every objective metric name
must be a Prometheus sample name, optionally with a label selector
(:class:`metrics_collector.prometheus.Selector`), e.g.
``spec.objective.additionalMetricNames[0]: metric name 'train/loss' is not a Prometheus
sample name ...``. :func:`kind_problems` (the operator only): early stopping where the
collector cannot stop the trial — a Tekton PipelineRun (a task's pod shares no process
namespace) or a trial whose primary container has no command (nothing wraps it; for StdOut
its log is followed through the API) — is refused at ``spec.earlyStopping``, naming the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from controller.pod_units import TektonTask
from controller.sidecar import SidecarError, collector_plan, follows_log, primary_pod_templates
from metrics_collector.errors import MetricsFormatError
from metrics_collector.prometheus import Selector
from tunery.experiment import FieldError


def collector_problems(document: Mapping[str, Any]) -> list[FieldError]:
    """Every metric name the experiment's collector cannot read; [] if none."""
    spec = document.get("spec") or {}
    kind = ((spec.get("metricsCollectorSpec") or {}).get("collector") or {}).get("kind")
    if kind != "PrometheusMetric":
        return []
    objective = spec.get("objective") or {}
    named = [("spec.objective.objectiveMetricName", objective.get("objectiveMetricName"))]
    named += [
        (f"spec.objective.additionalMetricNames[{i}]", name)
        for i, name in enumerate(objective.get("additionalMetricNames") or [])
    ]
    problems = []
    for where, name in named:
        try:
            Selector.parse(str(name))
        except MetricsFormatError as e:
            problems.append(FieldError(where, str(e)))
    return problems


def kind_problems(document: Mapping[str, Any]) -> list[FieldError]:
    """Early stopping the collector could not carry out for this trial kind; [] if none."""
    spec = document.get("spec") or {}
    template = spec.get("trialTemplate") or {}
    trial_spec = template.get("trialSpec")
    if not (spec.get("earlyStopping") or {}).get("algorithmName") or not isinstance(
        trial_spec, Mapping
    ):
        return []
    try:
        plan = collector_plan(spec)
    except SidecarError:
        return []  # reported where the collector is built
    if plan.kind in ("Push", "Custom"):
        return []
    kind = f"{trial_spec.get('apiVersion')} {trial_spec.get('kind')}"
    primary = template.get("primaryContainerName")
    for unit in primary_pod_templates(trial_spec, template.get("primaryPodLabels")):
        for name, container in unit.containers():
            if name != primary:
                continue
            if isinstance(unit, TektonTask):
                return [
                    FieldError(
                        "spec.earlyStopping",
                        f"trials of kind {kind} cannot be stopped early: Tekton gives a "
                        "task's pod no shared process namespace, so the metrics collector "
                        "cannot signal the step; remove earlyStopping or use another kind",
                    )
                ]
            if not container.get("command"):
                how = (
                    "the collector then reads its log through the Kubernetes API"
                    if follows_log(plan, container)
                    else "nothing wraps it (its image's entrypoint is unknown to the operator)"
                )
                return [
                    FieldError(
                        "spec.earlyStopping",
                        f"trials of kind {kind} cannot be stopped early when the primary "
                        f"container {primary!r} has no command: {how}, so the collector "
                        "cannot find and stop its process; set command (the image's "
                        "entrypoint) in the trialTemplate, or remove earlyStopping",
                    )
                ]
    return []
