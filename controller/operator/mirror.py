"""What the operator writes to the custom resources: Trial and Suggestion documents and the
status blocks of Experiment, Trial and Suggestion, built from the store's records.

Pure functions, called by ``controller.operator.core`` on every pass. The store is the source
of truth; these documents are its Katib-shaped mirror (``kubectl get experiments,trials``,
Katib's SDK and UI read them). Condition lists follow Katib: each condition type appears once,
the current one is True and last, and a terminal trial condition turns ``Running`` False.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from controller import status as experiment_status
from controller.sidecar import EXPERIMENT_LABEL
from tunery.store.base import ExperimentRecord, TrialRecord
from tunery.trials import Objective, TrialCondition

API_VERSION = "kubeflow.org/v1beta1"
GROUP, VERSION = "kubeflow.org", "v1beta1"
_INTERNAL_STATUS_KEYS = frozenset({"suggestionEndReached", "localBaseDir"})
TRIAL_LIST_LIMIT = 500
"""At most this many names per trial list of an Experiment's status (the newest); the counts
(``trialsSucceeded``, ...) stay exact and the store keeps every trial. etcd refuses objects
over 1.5 MiB, so a mirrored status must not grow with the experiment."""
SUGGESTION_LIMIT = 100
"""At most this many entries in ``Suggestion.status.suggestions``: the newest, plus any trial
still active; ``suggestionCount`` stays the total."""


def rfc3339(value: dt.datetime | str | None) -> str | None:
    """Kubernetes' time format (``2006-01-02T15:04:05Z``), from a datetime or an ISO string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _k8s_conditions(conditions: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Conditions with Kubernetes timestamps, the current True one moved last."""
    out = []
    for c in conditions:
        item = dict(c)
        for key in ("lastUpdateTime", "lastTransitionTime"):
            if item.get(key):
                item[key] = rfc3339(item[key])
        out.append(item)
    current = experiment_status.current_condition({"conditions": conditions})
    if current is not None:
        index = next(i for i, c in enumerate(conditions) if c is current)
        out.append(out.pop(index))
    return out


def objective_value(observation: Mapping[str, Any], objective: Objective) -> str | None:
    """The objective's value by its metric strategy, as reported (None when unavailable)."""
    from tunery.trials import MetricSummary

    for metric in (observation or {}).get("metrics", []):
        if metric.get("name") == objective.metric_name:
            summary = MetricSummary(
                metric["name"], metric.get("min", ""), metric.get("max", ""), metric["latest"]
            )
            value = summary.select(objective.strategy(objective.metric_name))
            return None if value == "unavailable" else value
    return None


def experiment_status_document(record: ExperimentRecord, objective: Objective) -> dict[str, Any]:
    """Katib's Experiment ``status`` from the stored status (plus ``bestObjectiveValue``)."""
    stored = {k: v for k, v in record.status.items() if k not in _INTERNAL_STATUS_KEYS}
    out: dict[str, Any] = dict(stored)
    for key in ("startTime", "completionTime", "lastReconcileTime"):
        if out.get(key):
            out[key] = rfc3339(out[key])
    out["conditions"] = _k8s_conditions(stored.get("conditions", []))
    for key, value in stored.items():
        if key.endswith("TrialList") and isinstance(value, list):
            out[key] = value[-TRIAL_LIST_LIMIT:]
    optimal = stored.get("currentOptimalTrial") or {}
    best = objective_value(optimal.get("observation") or {}, objective)
    out["bestObjectiveValue"] = best
    return out


def trial_conditions(
    previous: Sequence[Mapping[str, Any]], trial: TrialRecord, now: dt.datetime
) -> list[dict[str, Any]]:
    """The Trial CR's condition list after moving it to the stored condition."""
    stamp = rfc3339(now)
    out = [dict(c) for c in previous]

    def put(type_: str, value: bool, reason: str, message: str) -> None:
        text = "True" if value else "False"
        for c in out:
            if c["type"] == type_:
                if c.get("status") != text:
                    c["lastTransitionTime"] = stamp
                if c.get("status") != text or c.get("reason") != reason:
                    c["lastUpdateTime"] = stamp
                c.update(status=text, reason=reason, message=message)
                return
        out.append(
            {
                "type": type_,
                "status": text,
                "reason": reason,
                "message": message,
                "lastUpdateTime": stamp,
                "lastTransitionTime": stamp,
            }
        )

    if not any(c["type"] == "Created" for c in out):
        put("Created", True, "TrialCreated", "Trial is created")
    condition = trial.condition
    if condition is TrialCondition.RUNNING:
        put("Running", True, trial.reason or "TrialRunning", trial.message or "Trial is running")
    elif condition.is_terminal:
        if any(c["type"] == "Running" for c in out):
            put("Running", False, "TrialRunning", "Trial is not running")
        put(condition.value, True, trial.reason, trial.message)
    current = next((c for c in out if c["type"] == condition.value), None)
    if current is not None and condition is not TrialCondition.CREATED:
        out.remove(current)
        out.append(current)
    return out


def trial_status_document(
    trial: TrialRecord,
    previous: Mapping[str, Any],
    objective: Objective,
    now: dt.datetime,
) -> dict[str, Any]:
    """Katib's Trial ``status`` (plus ``objectiveValue``), keeping unchanged condition times."""
    out: dict[str, Any] = {
        "conditions": trial_conditions(previous.get("conditions") or [], trial, now),
    }
    if trial.start_time is not None:
        out["startTime"] = rfc3339(trial.start_time)
    if trial.completion_time is not None:
        out["completionTime"] = rfc3339(trial.completion_time)
    if trial.observation:
        out["observation"] = {"metrics": list(trial.observation.get("metrics", []))}
    out["objectiveValue"] = objective_value(trial.observation or {}, objective)
    return out


def trial_document(
    trial: TrialRecord,
    experiment: Mapping[str, Any],
    owner: Mapping[str, Any] | None,
    run_spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The Trial custom resource for a stored trial (Katib's getTrialInstance fields)."""
    spec = experiment["spec"]
    template = spec.get("trialTemplate") or {}
    meta = experiment.get("metadata") or {}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Trial",
        "metadata": {
            "name": trial.name,
            "namespace": meta.get("namespace") or "default",
            "labels": {**dict(trial.labels), EXPERIMENT_LABEL: trial.experiment_name},
        },
        "spec": {
            "objective": spec["objective"],
            "parameterAssignments": [{"name": k, "value": v} for k, v in trial.assignment.items()],
            "earlyStoppingRules": list(trial.early_stopping_rules or []),
            "retainRun": bool(template.get("retain", False)),
            "metricsCollector": spec.get("metricsCollectorSpec")
            or {"collector": {"kind": "StdOut"}},
            "primaryContainerName": template.get("primaryContainerName", ""),
            "successCondition": template.get("successCondition", ""),
            "failureCondition": template.get("failureCondition", ""),
        },
    }
    if template.get("primaryPodLabels"):
        body["spec"]["primaryPodLabels"] = dict(template["primaryPodLabels"])
    if run_spec is not None:
        body["spec"]["runSpec"] = dict(run_spec)
    if owner is not None:
        body["metadata"]["ownerReferences"] = [dict(owner)]
    return body


def suggestion_document(
    experiment: Mapping[str, Any], owner: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The Suggestion custom resource Katib keeps per experiment (same name)."""
    spec = experiment["spec"]
    meta = experiment.get("metadata") or {}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Suggestion",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace") or "default",
            "labels": {EXPERIMENT_LABEL: meta["name"]},
        },
        "spec": {
            "algorithm": spec["algorithm"],
            "requests": 0,
            "resumePolicy": spec.get("resumePolicy") or "Never",
        },
    }
    if spec.get("earlyStopping"):
        body["spec"]["earlyStopping"] = spec["earlyStopping"]
    if owner is not None:
        body["metadata"]["ownerReferences"] = [dict(owner)]
    return body


def suggestion_status_document(
    trials: Sequence[TrialRecord],
    experiment_status_doc: Mapping[str, Any],
    previous: Mapping[str, Any],
    now: dt.datetime,
    *,
    active: Sequence[TrialRecord] | None = None,
) -> dict[str, Any]:
    """The Suggestion's status: the count of suggestions made so far, the newest
    :data:`SUGGESTION_LIMIT` of them (and every active one), and whether it still runs.

    ``active``: the experiment's active trials, where the caller has them at hand (then the
    older trials are not scanned for them: the cost does not grow with the history)."""
    current = experiment_status.current_condition(experiment_status_doc) or {}
    done = current.get("type") in ("Succeeded", "Failed")
    conditions = experiment_status.set_condition(
        previous.get("conditions") or [],
        "Succeeded" if done else "Running",
        "Suggestion is succeeded" if done else "SuggestionRunning",
        "Suggestion is succeeded" if done else "Suggestion is running",
        now=now,
    )
    return {
        "suggestionCount": len(trials),
        "suggestions": [
            {
                "name": t.name,
                "parameterAssignments": [{"name": k, "value": v} for k, v in t.assignment.items()],
                "earlyStoppingRules": list(t.early_stopping_rules or []),
                "labels": dict(t.labels),
            }
            for t in _newest(trials, SUGGESTION_LIMIT, active)
        ],
        "conditions": _k8s_conditions(conditions),
    }


def _newest(
    trials: Sequence[TrialRecord], limit: int, active: Sequence[TrialRecord] | None = None
) -> list[TrialRecord]:
    """The last ``limit`` trials (creation order), with any older one still active kept
    (taken from ``active``, in creation order, when given)."""
    recent = list(trials[-limit:]) if limit > 0 else []
    if active is None:
        older = [t for t in trials[: max(0, len(trials) - limit)] if t.condition.is_active]
    else:
        names = {t.name for t in recent}
        older = [t for t in active if t.name not in names]
    return [*older, *recent]
