"""``tunery list``, ``status``, ``trials``, ``best``, ``logs`` and ``delete``.

Part of the CLI; registers its commands on :data:`tunery.cli.app.main`. Reads the store and
prints tables (or JSON with ``-o json``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from tunery.cli.app import (
    CliError,
    _db_option,
    _errors,
    _open_store,
    _output_option,
    main,
)
from tunery.cli.output import best_value, experiment_summary, print_summary

# -- inspection -------------------------------------------------------------------------------


@main.command("list")
@_db_option
@_output_option
def list_(db_url: str | None, output: str) -> None:
    """List experiments."""
    with _errors():
        records = _open_store(db_url).list_experiments()
    rows = [experiment_summary(r) for r in records]
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no experiments")
        return
    click.echo(f"{'NAME':30} {'STATUS':10} {'TRIALS':>6} {'ALGORITHM':20} BEST")
    for r in rows:
        best = best_value(r["best"], r["objective"])
        shown = f"{r['objective']}={best}" if best else "-"
        click.echo(
            f"{r['name']:30} {r['condition']:10} {r['trials']:>6} {r['algorithm']:20} {shown}"
        )


@main.command("status")
@click.argument("name")
@_db_option
@_output_option
def status_(name: str, db_url: str | None, output: str) -> None:
    """Show an experiment's status (Katib's status fields with -o json)."""
    with _errors():
        store = _open_store(db_url)
        if output == "json":
            click.echo(json.dumps(store.get_experiment(name).status, indent=2, default=str))
            return
        print_summary(store, name, output)


def _trial_rows(store: Any, name: str, objective: Any) -> list[dict[str, Any]]:
    from controller.status import trial_objective_value

    return [
        {
            "name": t.name,
            "condition": t.condition.value,
            "reason": t.reason,
            "message": t.message,
            "parameters": dict(t.assignment),
            "objective": trial_objective_value(t, objective),
            "metrics": (t.observation or {}).get("metrics", []),
            "start_time": t.start_time.isoformat() if t.start_time else None,
            "completion_time": t.completion_time.isoformat() if t.completion_time else None,
        }
        for t in store.list_trials(name)
    ]


@main.command()
@click.argument("name")
@_db_option
@_output_option
def trials(name: str, db_url: str | None, output: str) -> None:
    """List the trials of experiment NAME."""
    from controller.reconcile import objective_from_spec

    with _errors():
        store = _open_store(db_url)
        objective = objective_from_spec(store.get_experiment(name).spec["spec"])
        rows = _trial_rows(store, name, objective)
    if output == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'TRIAL':32} {'STATUS':18} {objective.metric_name.upper():>12}  PARAMETERS")
    for r in rows:
        value = "-" if r["objective"] is None else f"{r['objective']:.6g}"
        params = " ".join(f"{k}={v}" for k, v in r["parameters"].items())
        click.echo(f"{r['name']:32} {r['condition']:18} {value:>12}  {params}")
        if r["condition"] not in ("Succeeded", "Running", "Created"):
            click.echo(
                f"{'':32} {r['reason']}: {r['message'].splitlines()[0] if r['message'] else ''}"
            )


@main.command()
@click.argument("name")
@_db_option
@_output_option
def best(name: str, db_url: str | None, output: str) -> None:
    """Print the best trial's parameters and metrics."""
    with _errors():
        record = _open_store(db_url).get_experiment(name)
    best_trial = record.status.get("currentOptimalTrial") or {}
    if not best_trial.get("bestTrialName"):
        raise CliError(f"experiment {name!r} has no trial with the objective metric yet")
    if output == "json":
        click.echo(json.dumps(best_trial, indent=2))
        return
    click.echo(best_trial["bestTrialName"])
    for p in best_trial["parameterAssignments"]:
        click.echo(f"  {p['name']} = {p['value']}")
    for m in best_trial["observation"]["metrics"]:
        click.echo(f"  {m['name']}: min={m['min']} max={m['max']} latest={m['latest']}")


@main.command()
@click.argument("trial")
@_db_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing while the trial runs.")
def logs(trial: str, db_url: str | None, follow: bool) -> None:
    """Print a trial's output."""
    from controller.local_backend import LocalBackend

    with _errors():
        backend = LocalBackend(db_url)
        record = backend.store.get_trial(trial)
        path = record.runner_handle.get("log")
        if not path or not Path(path).exists():
            raise CliError(f"trial {trial!r} has no log yet ({record.condition.value})")
        for line in backend.log_lines(trial, follow, timeout=float("inf")):
            click.echo(line)


@main.command()
@click.argument("name")
@_db_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
def delete(name: str, db_url: str | None, yes: bool) -> None:
    """Delete experiment NAME, its trials and their metrics."""
    from controller.local_backend import LocalBackend

    with _errors():
        backend = LocalBackend(db_url)
        backend.record(name)
        if not yes and sys.stdin.isatty():
            click.confirm(f"delete experiment {name!r} and all its trials?", abort=True)
        backend.delete_experiment(name)
    click.echo(f"deleted {name}")
