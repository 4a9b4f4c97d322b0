"""What the CLI prints: tables, rounded numbers, typed JSON values, an experiment's summary.

Part of the CLI; used by ``run``/``resume`` (the closing summary) and the inspection commands.
Tables size their columns to the widest cell, so long names never break the alignment, and
print the same whether or not stdout is a terminal. Text rounds numbers
(:data:`SIGNIFICANT_DIGITS`); ``-o json`` and ``-o csv`` keep full precision, and JSON gives
numbers as numbers (the schema is in docs/cli.md).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import click

SIGNIFICANT_DIGITS = 4
"""Significant digits of the numbers in text tables and summaries."""

CONDITION_WORDS = {
    "Succeeded": "succeeded",
    "EarlyStopped": "early stopped",
    "Failed": "failed",
    "MetricsUnavailable": "metrics unavailable",
    "Killed": "killed",
    "Running": "running",
    "Created": "pending",
}
"""Every trial condition, in the order summaries count them."""


# -- numbers ----------------------------------------------------------------------------------


def number(value: Any) -> Any:
    """``value`` as a JSON number when it is numeric text ("0.25" -> 0.25, "3" -> 3); other
    text unchanged; NaN and infinities as None (JSON has no such numbers)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
        try:
            value = float(text)
        except ValueError:
            return value
    return value if math.isfinite(value) else None


def typed_parameter(value: str, parameter_type: str | None) -> Any:
    """A parameter's value typed by its spec: int and double as numbers, discrete as a number
    when it is one, categorical as text (a categorical "1" stays "1")."""
    if parameter_type == "categorical":
        return value
    converted = number(value)
    if parameter_type == "double" and isinstance(converted, int):
        return float(converted)
    return converted


def parameter_types(spec: Mapping[str, Any]) -> dict[str, str]:
    return {p["name"]: p.get("parameterType", "") for p in spec.get("parameters") or []}


def rounded(value: Any) -> str:
    """A number (or numeric text) rounded for a table; other text unchanged; None as "-"."""
    if value is None or value == "":
        return "-"
    converted = number(value)
    if isinstance(converted, float):
        return f"{converted:.{SIGNIFICANT_DIGITS}g}"
    return str(value)


def typed_metrics(metrics: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Katib's observation metrics (name, min, max, latest as text) with numbers."""
    return [{k: (v if k == "name" else number(v)) for k, v in m.items()} for m in metrics or []]


def typed_best(best: Mapping[str, Any], spec: Mapping[str, Any]) -> dict[str, Any]:
    """Katib's currentOptimalTrial with numeric values as numbers."""
    if not best:
        return {}
    types = parameter_types(spec)
    typed = dict(best)
    typed["parameterAssignments"] = [
        {**p, "value": typed_parameter(p["value"], types.get(p["name"]))}
        for p in best.get("parameterAssignments") or []
    ]
    observation = dict(best.get("observation") or {})
    observation["metrics"] = typed_metrics(observation.get("metrics") or [])
    typed["observation"] = observation
    return typed


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- tables -----------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns as wide as their widest cell, two spaces apart; ``right`` aligns columns to the
    right (numbers). The last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = []
    for row in [headers, *rows]:
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


# -- experiments ------------------------------------------------------------------------------


def trial_counts(trials: Sequence[Any]) -> dict[str, int]:
    """How many trials are in each condition (every condition, zeros included)."""
    counts = dict.fromkeys(CONDITION_WORDS, 0)
    for t in trials:
        counts[t.condition.value] = counts.get(t.condition.value, 0) + 1
    return counts


def counts_text(counts: Mapping[str, int]) -> str:
    """``"10 (5 succeeded, 5 early stopped)"``: the total and each condition that occurs."""
    total = sum(counts.values())
    parts = [f"{n} {CONDITION_WORDS.get(c, c)}" for c, n in counts.items() if n]
    return f"{total} ({', '.join(parts)})" if parts else str(total)


def experiment_summary(
    record: Any, trials: Sequence[Any] | None = None, *, counts: Mapping[str, int] | None = None
) -> dict[str, Any]:
    """The JSON summary of an experiment (``list``, ``run``/``resume``/``status -o json``
    shape documented in docs/cli.md). With ``trials`` or ``counts`` (per condition, e.g.
    from ``Store.count_trials``), the counts are exact; else the status' counters."""
    from controller import status as st

    current = st.shown_condition(record.status) or {}
    spec = record.spec["spec"]
    state = record.status
    counts = (
        dict(counts)
        if counts is not None
        else trial_counts(trials)
        if trials is not None
        else {
            "Succeeded": state.get("trialsSucceeded", 0),
            "EarlyStopped": state.get("trialsEarlyStopped", 0),
            "Failed": state.get("trialsFailed", 0),
            "MetricsUnavailable": state.get("trialMetricsUnavailable", 0),
            "Killed": state.get("trialsKilled", 0),
            "Running": state.get("trialsRunning", 0),
            "Created": state.get("trialsPending", 0),
        }
    )
    return {
        "name": record.name,
        "condition": current.get("type", "Created"),
        "reason": current.get("reason", ""),
        "message": current.get("message", ""),
        "trials": sum(counts.values()),
        "succeeded": counts["Succeeded"],
        "failed": counts["Failed"],
        "running": counts["Running"],
        "counts": counts,
        "algorithm": spec["algorithm"]["algorithmName"],
        "objective": spec["objective"]["objectiveMetricName"],
        "type": spec["objective"]["type"],
        "best": typed_best(state.get("currentOptimalTrial") or {}, spec),
        "created": record.created_at.isoformat(),
    }


def best_value(best: Mapping[str, Any], metric: str, strategy: str = "latest") -> Any:
    """The best trial's ``metric`` as ``strategy`` selects it (None if not reported)."""
    for m in (best.get("observation") or {}).get("metrics", []):
        if m["name"] == metric:
            return m.get(strategy)
    return None


def print_summary(store: Any, name: str, output: str) -> None:
    """The closing summary of ``run``/``resume`` and the text of ``status``: counts by one
    aggregate query, the best trial by one indexed query, never the whole trial list."""
    from controller.reconcile import objective_from_spec
    from tunery.trials import TrialCondition

    record = store.get_experiment(name)
    counts = dict.fromkeys(CONDITION_WORDS, 0)
    counts.update({c.value: n for c, n in store.count_trials(name).items()})
    summary = experiment_summary(record, counts=counts)
    best_trial = store.best_trial(name)
    if best_trial is not None:
        summary["best"] = typed_best(optimal_trial_document(best_trial), record.spec["spec"])
    if output == "json":
        echo_json(summary)
        return
    objective = objective_from_spec(record.spec["spec"])
    click.echo(
        f"experiment {name}: {summary['condition']} ({summary['reason']}) - {summary['message']}"
    )
    click.echo(f"trials: {counts_text(summary['counts'])}")
    best = summary["best"]
    if best.get("bestTrialName"):
        metrics = ", ".join(
            f"{m['name']}={rounded(m.get(objective.strategy(m['name'])))} "
            f"({objective.strategy(m['name'])})"
            for m in best["observation"]["metrics"]
        )
        params = ", ".join(
            f"{p['name']}={rounded(p['value'])}" for p in best["parameterAssignments"]
        )
        first = " by the first objective" if objective.is_multi else ""
        click.echo(f"best trial{first}: {best['bestTrialName']}: {metrics}")
        click.echo(f"  parameters: {params}")
        click.echo(
            "  (min/max/latest: each metric's strategy over the trial's reports, "
            "spec.objective.metricStrategies)"
        )
        if objective.is_multi:
            size = record.status.get("paretoFrontSize", 0)
            click.echo(
                f"Pareto front ({', '.join(objective.objective_metric_names)}): {size} trial(s)"
                f", listed by: tunery best {name}"
            )
    else:
        click.echo("best trial: none yet")
    unsuccessful = counts["Failed"] + counts["MetricsUnavailable"]
    if unsuccessful:
        wanted = (TrialCondition.FAILED, TrialCondition.METRICS_UNAVAILABLE)
        first = store.list_trials(name, wanted)[0]
        click.echo(f"first {first.condition.value} trial: {first.name}: {first.message}")
        if unsuccessful > 1:
            click.echo(
                f"  ({unsuccessful} in all: tunery trials {name} --condition Failed "
                "--condition MetricsUnavailable)"
            )


def optimal_trial_document(trial: Any) -> dict[str, Any]:
    """Katib's ``currentOptimalTrial`` of a trial record (what ``status`` holds)."""
    return {
        "bestTrialName": trial.name,
        "parameterAssignments": [{"name": k, "value": v} for k, v in trial.assignment.items()],
        "observation": {"metrics": list((trial.observation or {}).get("metrics", []))},
    }
