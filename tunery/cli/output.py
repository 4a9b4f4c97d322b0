"""What the CLI prints about an experiment: its summary (text or JSON) and metric values.

Part of the CLI; used by ``run``/``resume`` (the closing summary) and the inspection commands.
"""

from __future__ import annotations

import json
from typing import Any

import click


def experiment_summary(record: Any) -> dict[str, Any]:
    from controller import status as st

    current = st.shown_condition(record.status) or {}
    return {
        "name": record.name,
        "condition": current.get("type", "Created"),
        "reason": current.get("reason", ""),
        "message": current.get("message", ""),
        "trials": record.status.get("trials", 0),
        "succeeded": record.status.get("trialsSucceeded", 0),
        "failed": record.status.get("trialsFailed", 0),
        "running": record.status.get("trialsRunning", 0),
        "algorithm": record.spec["spec"]["algorithm"]["algorithmName"],
        "objective": record.spec["spec"]["objective"]["objectiveMetricName"],
        "type": record.spec["spec"]["objective"]["type"],
        "best": record.status.get("currentOptimalTrial") or {},
        "created": record.created_at.isoformat(),
    }


def best_value(best: dict[str, Any], metric: str) -> str:
    for m in (best.get("observation") or {}).get("metrics", []):
        if m["name"] == metric:
            return m.get("latest", "")
    return ""


def print_summary(store: Any, name: str, output: str) -> None:
    record = store.get_experiment(name)
    summary = experiment_summary(record)
    if output == "json":
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(
        f"experiment {name}: {summary['condition']} ({summary['reason']}) - {summary['message']}"
    )
    click.echo(
        f"trials: {summary['trials']} ({summary['succeeded']} succeeded, "
        f"{summary['failed']} failed)"
    )
    best = summary["best"]
    if best.get("bestTrialName"):
        params = ", ".join(f"{p['name']}={p['value']}" for p in best["parameterAssignments"])
        metrics = ", ".join(
            f"{m['name']}={_select(m, record, m['name'])}" for m in best["observation"]["metrics"]
        )
        click.echo(f"best trial: {best['bestTrialName']}: {metrics}")
        click.echo(f"  parameters: {params}")
    else:
        click.echo("best trial: none yet")


def _select(metric: dict[str, str], record: Any, name: str) -> str:
    from controller.reconcile import objective_from_spec
    from tunery.trials import MetricSummary

    objective = objective_from_spec(record.spec["spec"])
    summary = MetricSummary(metric["name"], metric["min"], metric["max"], metric["latest"])
    return summary.select(objective.strategy(name))
