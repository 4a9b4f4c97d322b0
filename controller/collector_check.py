"""Metrics collector checks that need the collector's knowledge, at admission.

Called by :func:`controller.settings_check.load_checked` (``tunery validate``/``run``, the
SDK's local ``tune()``) and by the Kubernetes operator before it stores an Experiment, so a
name the collector could never match is refused at its field instead of failing every trial.
Today one check: with the PrometheusMetric collector every objective metric name must be a
Prometheus sample name, optionally with a label selector
(:class:`metrics_collector.prometheus.Selector`), e.g.
``spec.objective.additionalMetricNames[0]: metric name 'train/loss' is not a Prometheus
sample name ...``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

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
